"""Synthetic MOVi-like videos from ``savi_scenes``, generated on the fly or cached to disk.

Video ``i`` is scene seed ``seed_offset + i``, so a dataset is fully defined by its arguments; the
training window of an item is a pure function of (seed_offset, index, epoch) so resuming a run
replays exactly the same windows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from savi_scenes import PhysicsSceneConfig, SceneConfig, generate_physics_scene, generate_scene
from training.datasets.common import TARGET_KINDS, build_item, make_target, window_slice, window_start

# Bump when the generator's output for a given (seed, config) changes, to invalidate caches.
GENERATOR_VERSION = 2
_CACHED_FIELDS = ("video", "segmentations", "backward_flow", "boxes", "visible")


class SyntheticDataset(Dataset):
    """Items per docs/ARCHITECTURE.md from generated scenes.

    Args:
        num_videos: dataset length.
        seed_offset: scene seed of item 0 (use disjoint ranges for train / eval splits).
        scene_config: what the scenes look like.
        max_instances: N of the item dict; must cover ``scene_config.max_objects``.
        window: frames per item (random start per epoch) or None for the full video.
        target: "flow" (flow-RGB of the backward flow) or "rgb".
        cache_dir: where to keep generated scenes as .npz (None = regenerate every time).
        physics_config: the 3D family's config; ``physics_share`` of the videos (chosen by seed) come
            from it, the others from ``scene_config``.
    """

    def __init__(
        self,
        num_videos: int,
        seed_offset: int = 0,
        scene_config: SceneConfig | None = None,
        max_instances: int = 6,
        window: int | None = 6,
        target: str = "flow",
        cache_dir: str | os.PathLike | None = None,
        physics_config: PhysicsSceneConfig | None = None,
        physics_share: float = 0.0,
    ) -> None:
        self.scene_config = scene_config if scene_config is not None else SceneConfig()
        if not 0.0 <= physics_share <= 1.0:
            raise ValueError(f"physics_share must be in [0, 1], got {physics_share}")
        if physics_share > 0 and physics_config is None:
            raise ValueError("physics_share > 0 needs a physics_config")
        self.physics_config = physics_config
        self.physics_share = float(physics_share)
        most = max(self.scene_config.max_objects, physics_config.max_objects if physics_share > 0 else 0)
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        if seed_offset < 0:
            raise ValueError(f"seed_offset must be >= 0, got {seed_offset}")
        if max_instances < most:
            raise ValueError(
                f"max_instances={max_instances} is smaller than the scenes' max_objects="
                f"{most}: objects would have no slot"
            )
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        if target not in TARGET_KINDS:
            raise ValueError(f"target must be one of {TARGET_KINDS}, got {target!r}")
        self.num_videos = int(num_videos)
        self.seed_offset = int(seed_offset)
        self.max_instances = int(max_instances)
        self.window = window
        self.target = target
        self.epoch = 0
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            physics = dataclasses.asdict(physics_config) if physics_share > 0 else None
            cfg = json.dumps([dataclasses.asdict(self.scene_config), physics, self.physics_share], sort_keys=True)
            self._cache_key = hashlib.sha1(f"{GENERATOR_VERSION}:{cfg}".encode()).hexdigest()[:16]

    def set_epoch(self, epoch: int) -> None:
        """Choose the windows of this epoch (call before iterating, like DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_videos

    def is_physics(self, index: int) -> bool:
        """Whether item ``index`` comes from the 3D family (a pure function of its seed)."""
        if self.physics_share <= 0:
            return False
        draw = np.random.default_rng([self.seed_offset + index, 0x3D]).random()
        return bool(draw < self.physics_share)

    def _generate(self, index: int):
        seed = self.seed_offset + index
        if self.is_physics(index):
            return generate_physics_scene(seed, self.physics_config)
        return generate_scene(seed, self.scene_config)

    def scene_arrays(self, index: int) -> dict[str, np.ndarray]:
        """The ground truth of item ``index`` needed for items (from the cache when there is one)."""
        seed = self.seed_offset + index
        if self.cache_dir is None:
            scene = self._generate(index)
            return {k: getattr(scene, k) for k in _CACHED_FIELDS}
        path = self.cache_dir / f"scene_{self._cache_key}_{seed}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in _CACHED_FIELDS}
        scene = self._generate(index)
        arrays = {k: getattr(scene, k) for k in _CACHED_FIELDS}
        # Write to a temporary name then rename, so parallel workers never read half a file.
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return arrays

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        scene = self.scene_arrays(index)
        num_frames = scene["video"].shape[0]
        start = window_start(num_frames, self.window, self.seed_offset, index, self.epoch)
        sl = window_slice(num_frames, self.window, start)
        video = scene["video"][sl]
        flow = scene["backward_flow"][sl] if self.target == "flow" else None
        return build_item(
            video=video,
            target=make_target(self.target, video, flow),
            max_instances=self.max_instances,
            segmentations=scene["segmentations"][sl],
            boxes=scene["boxes"][sl],
            visible=scene["visible"][sl],
            pad_frames_to=self.window,
        )
