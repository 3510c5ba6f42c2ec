"""Sketchy (DeepMind robot manipulation) read without TensorFlow.

On disk: ``metadata.sqlite`` (tables ``Episodes(EpisodeId, TaskId, DataPath, Timestamp, EpisodeType)``,
``EpisodeTags(EpisodeId, Tag)``, ``Tags(Name)``, ``ArchiveFiles(EpisodeId, ArchiveFile)``,
``RewardSequences``) and one extension-less episode file per episode: an uncompressed TFRecord
with one ``tf.train.Example`` per 10 Hz timestep, in time order, images as JPEG bytes under
``pixels/<camera>``. SAVi learns it unconditionally with an RGB reconstruction target, so items
carry no segmentation or boxes (zeros, nothing conditioned).
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from training.datasets.common import ClipDataset, build_item, check_choice, make_target, resize_video
from training.datasets.example_proto import ExampleFeatures
from training.datasets.tfrecord import DatasetFormatError, RecordLocation, read_record, scan_records

EPISODE_TYPES = ("EPISODE_ROBOT_AGENT", "EPISODE_ROBOT_TELEOPERATION", "EPISODE_ROBOT_DAGGER")
CAMERAS = (
    "pixels/basket_front_left",
    "pixels/basket_back_left",
    "pixels/basket_front_right",
    "pixels/usbcam0",
    "pixels/usbcam1",
    "pixels/royale_camera_driver_gray",
)


class SketchyEpisode:
    """One episode row of the metadata and where its file was found."""

    def __init__(self, episode_id: str, data_path: str, episode_type: str, archive: str | None) -> None:
        self.episode_id = episode_id
        self.data_path = data_path
        self.episode_type = episode_type
        self.archive = archive
        self.file: Path | None = None

    def candidates(self, root: Path, subset_tag: str | None) -> list[Path]:
        """Places an extracted episode file may be: the loader's ``DataPath`` relative to the download
        folder, or inside a folder named after the subset or the archive it came from."""
        folders = [root]
        if subset_tag:
            folders.append(root / subset_tag)
        if self.archive:
            folders.append(root / self.archive.removesuffix(".tar.bz2"))
        names = [self.data_path, self.episode_id]
        return [folder / name for folder in folders for name in names if name]


def query_episodes(
    metadata: str | os.PathLike, subset_tag: str | None, episode_types: Sequence[str] | None
) -> list[SketchyEpisode]:
    """Episodes carrying ``subset_tag`` (None = all) of the given types (None = all), by EpisodeId."""
    metadata = Path(metadata)
    if not metadata.is_file():
        raise FileNotFoundError(f"Sketchy metadata not found: {metadata}")
    sql = (
        "SELECT e.EpisodeId, e.DataPath, e.EpisodeType, a.ArchiveFile FROM Episodes AS e "
        "LEFT JOIN ArchiveFiles AS a ON a.EpisodeId = e.EpisodeId"
    )
    where, params = [], []
    if subset_tag is not None:
        where.append("e.EpisodeId IN (SELECT EpisodeId FROM EpisodeTags WHERE Tag = ?)")
        params.append(subset_tag)
    if episode_types:
        where.append(f"e.EpisodeType IN ({', '.join('?' * len(episode_types))})")
        params.extend(episode_types)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY e.EpisodeId"
    try:
        with sqlite3.connect(f"{metadata.resolve().as_uri()}?mode=ro", uri=True) as db:
            rows = db.execute(sql, params).fetchall()
    except sqlite3.DatabaseError as e:
        raise DatasetFormatError(f"{metadata}: not a Sketchy metadata database ({e})") from e
    return [SketchyEpisode(str(eid), str(path or ""), str(etype or ""), archive) for eid, path, etype, archive in rows]


def decode_jpeg(data: bytes, source: str) -> np.ndarray:
    """JPEG bytes -> uint8 RGB [H,W,3] (grey images are expanded to 3 channels)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetFormatError(f"{source}: not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_camera_frames(
    path: str | os.PathLike, locations: list[RecordLocation], camera: str, frames: slice | None = None
) -> np.ndarray:
    """uint8 RGB ``[T,H,W,3]`` of ``camera`` in an episode file whose records are at ``locations``, for the
    timesteps in ``frames`` (all by default); a timestep without exactly one image of it, or one of
    another size, is a `DatasetFormatError` naming the record."""
    chosen = range(len(locations))[frames if frames is not None else slice(None)]
    images = []
    for t in chosen:
        source = f"{path}: record {t} at byte {locations[t].offset}"
        features = ExampleFeatures(read_record(path, locations[t].offset, t), source)
        encoded = features.bytes(camera)
        if len(encoded) != 1:
            raise DatasetFormatError(f"{source}: '{camera}' holds {len(encoded)} images, expected 1")
        image = decode_jpeg(encoded[0], f"{source}: '{camera}'")
        if images and image.shape != images[0].shape:
            raise DatasetFormatError(
                f"{source}: '{camera}' frame has shape {image.shape}, earlier frames {images[0].shape}"
            )
        images.append(image)
    if not images:
        raise ValueError(f"frames {frames} select no timesteps of {len(locations)}")
    return np.stack(images)


class SketchyDataset(ClipDataset):
    """Sketchy episodes as unconditional RGB-reconstruction items.

    Args:
        root: download folder holding ``metadata.sqlite`` and the extracted episode files.
        subset_tag: EpisodeTags tag selecting the episodes (e.g. ``"rgb30__all"``); None = every episode.
        episode_type: one or more ``Episodes.EpisodeType`` values to keep; None = all.
        camera: image feature to read.
        resolution: (H, W) to resize to; None keeps the camera's size.
        max_instances: N, the number of slots the item describes (all unconditioned).
        window: frames per item, sampled deterministically from (seed, index, epoch); None = full episode.
        missing: ``"error"`` if an episode's file is not found, or ``"skip"`` it (warns with the count).
        metadata: path of the metadata database (default ``root/metadata.sqlite``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        subset_tag: str | None = "rgb30__all",
        episode_type: str | Sequence[str] | None = None,
        camera: str = "pixels/basket_front_left",
        resolution: tuple[int, int] | None = None,
        max_instances: int = 11,
        window: int | None = 6,
        seed: int = 0,
        missing: Literal["error", "skip"] = "error",
        metadata: str | os.PathLike | None = None,
    ) -> None:
        types = [episode_type] if isinstance(episode_type, str) else list(episode_type or [])
        unknown = [t for t in types if t not in EPISODE_TYPES]
        if unknown:
            raise ValueError(f"unknown episode_type {unknown}; expected values among {EPISODE_TYPES}")
        if not camera.startswith("pixels/"):
            raise ValueError(f"camera must be an image feature 'pixels/...', e.g. {CAMERAS}, got {camera!r}")
        check_choice("missing", missing, ("error", "skip"))
        super().__init__(root, resolution, max_instances, window, seed)
        self.camera = camera
        self._offsets: dict[int, list[RecordLocation]] = {}

        episodes = query_episodes(metadata or self.root / "metadata.sqlite", subset_tag, types)
        if not episodes:
            raise DatasetFormatError(
                f"no Sketchy episodes with tag {subset_tag!r} and type {types or 'any'} "
                f"in {metadata or self.root / 'metadata.sqlite'}"
            )
        absent = []
        for episode in episodes:
            episode.file = next((p for p in episode.candidates(self.root, subset_tag) if p.is_file()), None)
            if episode.file is None:
                absent.append(episode)
        if absent and missing == "error":
            tried = ", ".join(str(p) for p in absent[0].candidates(self.root, subset_tag))
            raise FileNotFoundError(
                f"{len(absent)} of {len(episodes)} Sketchy episode files not found, e.g. "
                f"episode {absent[0].episode_id} (tried {tried}); extract the archives "
                "or pass missing='skip'"
            )
        if absent:
            warnings.warn(
                f"skipping {len(absent)} of {len(episodes)} Sketchy episodes whose files are missing", stacklevel=2
            )
        self.episodes = [e for e in episodes if e.file is not None]
        if not self.episodes:
            raise FileNotFoundError(f"none of the {len(episodes)} Sketchy episode files exist under {self.root}")

    def __len__(self) -> int:
        return len(self.episodes)

    def timesteps(self, index: int) -> list[RecordLocation]:
        """Record locations of episode ``index`` (its framing is walked once, then cached)."""
        if index not in self._offsets:
            locations = scan_records(self.episodes[index].file)
            if not locations:
                raise DatasetFormatError(f"{self.episodes[index].file}: episode file holds no timesteps")
            self._offsets[index] = locations
        return self._offsets[index]

    def read_frames(self, index: int, frames: slice | None = None) -> np.ndarray:
        """uint8 RGB ``[T,H,W,3]`` of the camera for the timesteps in ``frames`` (all by default)."""
        return read_camera_frames(self.episodes[index].file, self.timesteps(index), self.camera, frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} episodes")
        num_frames = len(self.timesteps(index))
        video = self.read_frames(index, self.window_of(index, num_frames))
        if self.resolution is not None:
            video = resize_video(video, self.resolution)
        t = video.shape[0]
        return build_item(
            video,
            make_target("rgb", video, None),
            self.max_instances,
            boxes=np.zeros((t, 0, 4), np.float32),
            visible=np.zeros((t, 0), bool),
            pad_frames_to=self.window,
        )
