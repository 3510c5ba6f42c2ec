"""Datasets yielding the item dict of docs/ARCHITECTURE.md (see ``common.build_item``)."""

from training.datasets.common import ITEM_KEYS, build_item
from training.datasets.synthetic import SyntheticDataset
from training.datasets.videos import VideoFolderDataset

__all__ = ["ITEM_KEYS", "SyntheticDataset", "VideoFolderDataset", "build_item"]
