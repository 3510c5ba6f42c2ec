"""Datasets and batches for training and evaluation, built from a run config's ``data`` section.

Exact resume needs the data order to be a pure function of (seed, epoch, rank): every epoch is a
permutation drawn from a generator seeded by (seed, epoch), each DDP rank takes its own stride of
it, and a run restarts mid-epoch by skipping whole batches in the sampler (nothing is loaded for
them). Window starts inside videos are likewise a function of (seed, index, epoch) in the datasets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from training.config import DataConfig

EVAL_SEED_OFFSET = 1_000_003  # synthetic evaluation videos never coincide with training videos


def build_dataset(cfg: DataConfig, split: str) -> Dataset:
    """The dataset of ``split`` ("train" -> training windows, "eval" -> full videos)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    training = split == "train"
    window = cfg.window + cfg.burn_in if training else None
    common: dict[str, Any] = dict(
        resolution=tuple(cfg.resolution), max_instances=cfg.max_instances, window=window, seed=cfg.seed
    )
    target = pixel_target(cfg.target)
    try:
        if cfg.kind == "synthetic":
            return _synthetic(cfg, training, window)
        if cfg.kind == "movi":
            from training.datasets.movi import MoviDataset

            return MoviDataset(
                cfg.root,
                split=cfg.train_split if training else cfg.eval_split,
                target=target,
                **common,
                **cfg.options,
            )
        if cfg.kind == "sketchy":
            from training.datasets.sketchy import SketchyDataset

            if target != "rgb":
                raise ValueError("Sketchy has no ground-truth flow: use data.target = rgb")
            return SketchyDataset(cfg.root, **common, **cfg.options)
        if cfg.kind == "videos":
            from training.datasets.videos import VideoFolderDataset

            return VideoFolderDataset(cfg.root, target=target, **common, **cfg.options)
        if cfg.kind == "bag":
            from training.datasets.bags import BagDataset

            return BagDataset(cfg.root, target=target, **common, **cfg.options)
    except TypeError as exc:  # an unknown entry in data.options
        raise ValueError(f"data.options for kind {cfg.kind!r}: {exc}") from exc
    raise ValueError(f"data.kind: unknown dataset kind {cfg.kind!r}")


def pixel_target(kind: str) -> str:
    """The items' ``target`` tensor: a feature-target run keeps RGB there (its targets come from the backbone)."""
    return "rgb" if kind == "features" else kind


#: data.options keys of the synthetic kind that are not SceneConfig fields.
SYNTHETIC_OPTIONS = ("physics", "physics_share", "cache_dir")


def _synthetic(cfg: DataConfig, training: bool, window: int | None) -> Dataset:
    """Generated scenes. ``data.options`` holds extra SceneConfig fields (size_range, camera_pan, the
    2D families ...), and optionally ``physics`` (PhysicsSceneConfig fields of the 3D family),
    ``physics_share`` (the share of videos from the 3D family, 0..1) and ``cache_dir``."""
    from savi_scenes import PhysicsSceneConfig, SceneConfig
    from training.datasets.synthetic import SyntheticDataset

    fixed = dict(
        height=cfg.resolution[0],
        width=cfg.resolution[1],
        num_frames=cfg.num_frames,
        min_objects=cfg.min_objects,
        max_objects=cfg.max_objects,
    )
    clash = sorted(set(fixed) & (set(cfg.options) | set(cfg.options.get("physics") or {})))
    if clash:
        raise ValueError(
            f"data.options must not set {clash}: use data.resolution / num_frames / min_objects / max_objects"
        )
    scene_options = {k: v for k, v in cfg.options.items() if k not in SYNTHETIC_OPTIONS}
    scene = SceneConfig.from_dict({**fixed, **scene_options})
    share = float(cfg.options.get("physics_share", 0.0))
    physics = None
    if share > 0 or "physics" in cfg.options:
        physics = PhysicsSceneConfig.from_dict({**fixed, **(cfg.options.get("physics") or {})})
    return SyntheticDataset(
        num_videos=cfg.num_videos if training else cfg.eval_num_videos,
        seed_offset=cfg.seed if training else cfg.seed + EVAL_SEED_OFFSET,
        scene_config=scene,
        max_instances=cfg.max_instances,
        window=window,
        target=pixel_target(cfg.target),
        physics_config=physics,
        physics_share=share,
        cache_dir=cfg.options.get("cache_dir"),
    )


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    mixed = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, 0x5A71]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(mixed))


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's batches of one epoch, starting at batch ``start``.

    The epoch's permutation is cut to a multiple of the global batch (``batch_size * world_size``)
    so every rank runs the same number of steps; rank r takes every ``world_size``-th index.
    """

    def __init__(
        self, num_items: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.start = start
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"the dataset has {num_items} videos, fewer than one global batch "
                f"({batch_size} x {world_size} processes)"
            )
        if not 0 <= start < self.batches_per_epoch:
            raise ValueError(f"start batch {start} outside [0, {self.batches_per_epoch})")

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.num_items, generator=_epoch_generator(self.seed, self.epoch))
        used = order[: self.batches_per_epoch * self.batch_size * self.world_size]
        mine = used[self.rank :: self.world_size].tolist()
        for b in range(self.start, self.batches_per_epoch):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def next_epoch(self) -> EpochBatchSampler:
        """This rank's batches of the following epoch, from its first batch."""
        return EpochBatchSampler(self.num_items, self.batch_size, self.seed, self.epoch + 1, self.rank, self.world_size)


def _seed_worker(worker_id: int) -> None:
    """numpy / random in a loader worker follow torch's per-worker seed (itself from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    del worker_id


def training_batches(
    dataset: Dataset, sampler: EpochBatchSampler, num_workers: int, pin_memory: bool = False
) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
    """Endless ``(epoch, batch index, batch)`` from the sampler's (epoch, start) on, epoch after epoch."""
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(sampler.epoch)  # before the loader forks its workers, so they see it
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            worker_init_fn=_seed_worker if num_workers else None,
            generator=_epoch_generator(sampler.seed + 1, sampler.epoch),
        )
        for offset, batch in enumerate(loader):
            yield sampler.epoch, sampler.start + offset, batch
        sampler = sampler.next_epoch()


def next_position(epoch: int, batch_index: int, batches_per_epoch: int) -> tuple[int, int]:
    """Data position after consuming batch ``batch_index`` of ``epoch``."""
    if batch_index + 1 >= batches_per_epoch:
        return epoch + 1, 0
    return epoch, batch_index + 1
