"""Recorded robot bags (rosbag2 sqlite3/MCAP, ROS 1), trained on with estimated flow: the ``bag`` kind.

Each bag is one video: the frames of one image topic (raw ``sensor_msgs/Image`` or
``CompressedImage``, decoded by `savi_core.tracking.messages` exactly as the tracker node decodes them), with
backward flow estimated at the camera's resolution and cached like the ``videos`` kind. When a
detections topic is given, an image whose stamp matches a ``Detection2DArray`` within
``sync_tolerance`` (the node's rule) carries those boxes, and a training window starting on such an
image is conditioned on them; other windows come unconditioned. There is no segmentation.

``data.root`` is a bag (a rosbag2 folder, an ``.mcap``/``.db3``/``.bag`` file) or a folder of bags.
Message definitions come from the bag itself (rosbag2 since Iron and MCAP store them), so no ROS
install is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from savi_core.tracking import messages
from training.datasets.common import BackwardFlow
from training.datasets.videos import CACHE_VERSION, VideoFolderDataset, _Clip, _fingerprint, _Source

BAG_FILES = (".mcap", ".db3", ".bag")
IMAGE_TYPES = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/Image",
    "sensor_msgs/CompressedImage",
)


def _is_rosbag2_folder(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").exists()


def discover_bags(root: Path) -> list[_Source]:
    """The bags at ``root``: itself if it is one, else the bags directly inside it (sorted by name)."""
    if not root.exists():
        raise FileNotFoundError(f"bag path {root} does not exist")
    if _is_rosbag2_folder(root) or (root.is_file() and root.suffix in BAG_FILES):
        candidates = [root]
    else:
        candidates = [
            p
            for p in sorted(root.iterdir())
            if not p.name.startswith(".") and (_is_rosbag2_folder(p) or (p.is_file() and p.suffix in BAG_FILES))
        ]
    if not candidates:
        raise FileNotFoundError(
            f"no bags in {root} (rosbag2 folders with metadata.yaml, or {', '.join(BAG_FILES)} files)"
        )
    sources = []
    for path in candidates:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        sources.append(_Source(path.stem if path.is_file() else path.name, path, files))
    return sources


class BagDataset(VideoFolderDataset):
    """Items per docs/ARCHITECTURE.md from bags (see the module docstring).

    Args (besides VideoFolderDataset's, without ``boxes_json``):
        image_topic: the camera topic; ``<image_topic>/compressed`` is used when only that was recorded.
        detections_topic: optional Detection2DArray topic whose boxes condition windows.
        sync_tolerance: seconds within which a detections stamp matches an image stamp.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_topic: str,
        detections_topic: str | None = None,
        sync_tolerance: float = 0.01,
        **kwargs,
    ) -> None:
        if not image_topic:
            raise ValueError("image_topic: required (the camera topic recorded in the bags)")
        if sync_tolerance < 0:
            raise ValueError(f"sync_tolerance: must be >= 0 seconds, got {sync_tolerance}")
        if "boxes_json" in kwargs:
            raise ValueError("boxes_json: not for bags; boxes come from detections_topic")
        self.image_topic, self.detections_topic = image_topic, detections_topic
        self.sync_tolerance = float(sync_tolerance)
        super().__init__(root, **kwargs)

    def _discover(self) -> list[_Source]:
        return discover_bags(self.root)

    def _cache_stem(self, source: _Source) -> str:
        key = json.dumps(
            [
                CACHE_VERSION,
                _fingerprint(source),
                self.resolution,
                self.frame_stride,
                self.max_frames,
                self.max_instances,
                self.image_topic,
                self.detections_topic,
                self.sync_tolerance,
            ]
        )
        return f"{source.name}_{hashlib.sha1(key.encode()).hexdigest()[:16]}"

    def _read(self, source: _Source, with_flow: bool) -> _Clip:
        h, w = self.resolution
        store = get_typestore(Stores.ROS2_KILTED)
        try:
            reader = AnyReader([source.path], default_typestore=store)
            reader.open()
        except Exception as exc:  # rosbags raises several types for "not a bag" / unreadable
            raise ValueError(f"bag {source.path}: not readable ({type(exc).__name__}: {exc})") from None
        try:
            image_conns = [c for c in reader.connections if c.topic == self.image_topic] or [
                c for c in reader.connections if c.topic == f"{self.image_topic.rstrip('/')}/compressed"
            ]
            if not image_conns or image_conns[0].msgtype not in IMAGE_TYPES:
                topics = ", ".join(sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections}))
                raise ValueError(f"bag {source.path}: no image topic {self.image_topic!r}; its topics: {topics}")
            det_conns = []
            if self.detections_topic:
                det_conns = [c for c in reader.connections if c.topic == self.detections_topic]
                if not det_conns:
                    raise ValueError(f"bag {source.path}: no detections topic {self.detections_topic!r}")
            detections: dict[int, np.ndarray] = {}
            for conn, _, raw in reader.messages(connections=det_conns) if det_conns else ():
                msg = reader.deserialize(raw, conn.msgtype)
                boxes, _rejected = messages.detections_from_msg(msg)
                stamp = messages.stamp_ns(msg.header.stamp)
                detections[stamp] = np.array([d.box_xyxy for d in boxes], np.float64).reshape(-1, 4)
            frames, flows, boxes_per_frame, original = [], [], [], None
            estimator = BackwardFlow((h, w)) if with_flow else None
            index = 0
            for conn, _, raw in reader.messages(connections=image_conns):
                msg = reader.deserialize(raw, conn.msgtype)
                if self.max_frames is not None and len(frames) >= self.max_frames:
                    break
                keep = index % self.frame_stride == 0
                index += 1
                if not keep:
                    continue
                try:
                    rgb = messages.compressed_to_rgb8(msg) if hasattr(msg, "format") else messages.image_to_rgb8(msg)
                except ValueError as exc:
                    raise ValueError(f"bag {source.path}: image {index - 1} on {conn.topic}: {exc}") from None
                if original is None:
                    original = rgb.shape[:2]
                elif rgb.shape[:2] != original:
                    raise ValueError(
                        f"bag {source.path}: image {index - 1} is {rgb.shape[1]}x{rgb.shape[0]}, "
                        f"the first was {original[1]}x{original[0]}"
                    )
                if estimator is not None:
                    flows.append(estimator(rgb))
                interp = cv2.INTER_AREA if (h <= rgb.shape[0] and w <= rgb.shape[1]) else cv2.INTER_LINEAR
                frames.append(cv2.resize(rgb, (w, h), interpolation=interp))
                boxes_per_frame.append(self._boxes_at(msg, detections, original))
        finally:
            reader.close()
        if not frames:
            raise ValueError(f"bag {source.path}: no messages on {image_conns[0].topic}")
        return _Clip(
            np.stack(frames), (int(original[0]), int(original[1])), np.stack(flows) if flows else None, boxes_per_frame
        )

    def _boxes_at(self, msg, detections: dict[int, np.ndarray], size: tuple[int, int]) -> list | None:
        """Normalised yxyx boxes of the detections matching this image's stamp (None: no match)."""
        stamp = messages.stamp_ns(msg.header.stamp)
        tolerance = int(round(self.sync_tolerance * 1e9))
        near = [s for s in detections if abs(s - stamp) <= tolerance]
        if not near:
            return None
        xyxy = detections[min(near, key=lambda s: abs(s - stamp))][: self.max_instances]
        oh, ow = size
        yxyx = np.stack([xyxy[:, 1] / oh, xyxy[:, 0] / ow, xyxy[:, 3] / oh, xyxy[:, 2] / ow], -1)
        return np.clip(yxyx, 0.0, 1.0).round(6).tolist()

    def _cond_boxes(self, video_index: int, clip: _Clip, start: int) -> np.ndarray | None:
        """The boxes of the window's first image, or None (unconditioned) when it has no detections."""
        if not clip.boxes or clip.boxes[start] is None or not clip.boxes[start]:
            return None
        return np.asarray(clip.boxes[start], np.float32).reshape(-1, 4)
