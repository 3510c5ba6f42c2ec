"""Feature cache: the frozen backbone's taps computed once per frame and kept on disk (fp16).

``python -m training.feature_cache --config RUN.yaml`` fills the cache of a run up front (the
feature-extraction phase); training with ``data.feature_cache`` set reads from it and computes
only what is missing.

Every frame is keyed by its content (sha1 of its 8-bit pixels and size) under a folder named by the
backbone's weight sha256, so the same frame of any dataset kind (synthetic, MOVi, Sketchy, videos,
bags) and any training window hits the same entry, a frame changed by an augmentation is a miss
(recomputed, never served stale), and other weights never read these features. Pixel augmentations
applied after loading (``train.camera_resample``) would not match the cached features: the run
config refuses them together with the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from savi_core.model.backbone import BackboneFeatures, EfficientNetLite0
from savi_core.model.checkpoint import atomic_write

TAP_KEYS = ("s4", "s8", "s16")


def frame_key(frame: torch.Tensor) -> str:
    """Content key of one float frame ``[3, H, W]`` in [0, 1] (as the 8-bit image it came from)."""
    pixels = frame.detach().mul(255.0).round().clamp(0, 255).to(torch.uint8).cpu().contiguous()
    digest = hashlib.sha1(f"{tuple(pixels.shape)}".encode())
    digest.update(pixels.numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Backbone taps per frame under ``directory/<backbone sha256[:16]>/<key[:2]>/<key>.safetensors``."""

    def __init__(self, directory: str | os.PathLike, backbone: EfficientNetLite0) -> None:
        if backbone.sha256 is None:
            raise ValueError("the feature cache needs a backbone with loaded pretrained weights")
        self.backbone = backbone
        self.root = Path(directory) / backbone.sha256[:16]
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def _read(self, path: Path) -> dict[str, torch.Tensor] | None:
        try:
            tensors = load_file(str(path))
        except (FileNotFoundError, SafetensorError, OSError):
            return None  # absent, or a partial file from a killed writer: recompute
        return tensors if set(tensors) == set(TAP_KEYS) else None

    def _write(self, path: Path, tensors: dict[str, torch.Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp))

    def features(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames [T, 3, H, W]`` in [0, 1] -> ``{s4, s8, s16}`` fp16 tensors with a leading time axis."""
        keys = [frame_key(f) for f in frames]
        found: list[dict[str, torch.Tensor] | None] = [self._read(self._path(k)) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            with torch.no_grad():
                taps = self.backbone(frames[missing].float())
            for j, i in enumerate(missing):
                entry = {name: tap[j].half() for name, tap in zip(TAP_KEYS, taps.as_tuple())}
                self._write(self._path(keys[i]), entry)
                found[i] = entry
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return {name: torch.stack([f[name] for f in found]) for name in TAP_KEYS}


class CachedFeatureDataset(Dataset):
    """A dataset's items plus the backbone taps of their frames (``s4``, ``s8``, ``s16``, time first)."""

    def __init__(self, dataset: Dataset, cache: FeatureCache) -> None:
        self.dataset = dataset
        self.cache = cache

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.dataset[index]
        item.update(self.cache.features(item["video"]))
        return item


def batch_features(batch: dict[str, torch.Tensor]) -> BackboneFeatures | None:
    """The cached taps of a batch (``[B, T, ...]``, as float), or None when it carries none."""
    if "s4" not in batch:
        return None
    return BackboneFeatures(*(batch[k].float() for k in TAP_KEYS))


def main(argv: Sequence[str] | None = None) -> int:
    from savi_core.model.config import ConfigError
    from training.config import load_config
    from training.data import build_dataset

    p = argparse.ArgumentParser(prog="python -m training.feature_cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="run config YAML with data.feature_cache set")
    p.add_argument("--limit", type=int, help="only the first N training items")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if not cfg.data.feature_cache:
            raise ConfigError("data.feature_cache: not set in this run config")
    except (ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    backbone = EfficientNetLite0()
    backbone.load_pretrained(expected_sha256=cfg.model.encoder.backbone_sha256)
    cache = FeatureCache(cfg.data.feature_cache, backbone)
    source = build_dataset(cfg.data, "train")
    source = source.dataset if isinstance(source, CachedFeatureDataset) else source
    if hasattr(source, "window"):
        source.window = None  # whole videos: every frame any epoch's window can start on
    dataset = CachedFeatureDataset(source, cache)
    count = min(len(dataset), args.limit or len(dataset))
    tick = time.perf_counter()
    for index in range(count):
        dataset[index]
        if (index + 1) % 50 == 0 or index + 1 == count:
            seconds = time.perf_counter() - tick
            print(
                f"{index + 1}/{count} items, {cache.misses} frames computed, {cache.hits} cached, {seconds:.0f} s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
