"""ROS message <-> numpy conversions for the tracker node.

`cv_bridge` is used when importable (a ROS install), otherwise a numpy implementation that
honours `step` padding and `is_bigendian`; both give the same arrays (tested against each
other where both exist).
"""
from __future__ import annotations

import array
from typing import Iterable, Mapping, Optional

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import (Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose,
                             VisionClass)

from savi_core.tracker import Detection, Track
from savi_ros.overlay import draw_overlay

try:  # pragma: no cover - depends on the machine
    from cv_bridge import CvBridge
    _BRIDGE: Optional["CvBridge"] = CvBridge()
except ImportError:
    _BRIDGE = None

# encoding -> (dtype, channels) understood by the numpy path
_LAYOUTS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
}

#: encodings the tracker accepts as input (docs/INTERFACE.md)
INPUT_ENCODINGS = frozenset({"rgb8", "bgr8", "rgba8", "bgra8", "mono8"})

UNKNOWN_CLASS = "object"


class UnsupportedEncoding(ValueError):
    """The image's encoding is not one the tracker can use."""


def have_cv_bridge() -> bool:
    return _BRIDGE is not None


def image_to_numpy_fallback(msg: Image) -> np.ndarray:
    """Image -> array `[H,W]` or `[H,W,C]` in native byte order, without cv_bridge."""
    if msg.encoding not in _LAYOUTS:
        raise UnsupportedEncoding(f"unsupported image encoding '{msg.encoding}'")
    dtype, channels = _LAYOUTS[msg.encoding]
    h, w = int(msg.height), int(msg.width)
    row_bytes = w * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise ValueError(f"image step {msg.step} is smaller than width*pixel size {row_bytes}")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < msg.step * h:
        raise ValueError(f"image data has {buf.size} bytes, expected step*height = {msg.step * h}")
    rows = buf[: msg.step * h].reshape(h, msg.step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    out = np.ascontiguousarray(rows).view(wire).reshape((h, w, channels) if channels > 1 else (h, w))
    return out.astype(dtype, copy=False)


def image_to_numpy(msg: Image) -> np.ndarray:
    """Image -> array in native byte order (cv_bridge when available)."""
    if _BRIDGE is not None and msg.encoding in _LAYOUTS:  # pragma: no cover - needs cv_bridge
        return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
    return image_to_numpy_fallback(msg)


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """A CompressedImage (jpeg, png, anything OpenCV decodes) -> contiguous uint8 `[H,W,3]` RGB.

    ValueError for a payload OpenCV cannot decode (the node drops such a frame with a warning)."""
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.size == 0:
        raise ValueError(f"cannot decode the compressed image (format {msg.format!r}, {data.size} bytes)")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Any accepted input encoding -> contiguous uint8 `[H,W,3]` RGB (what the Tracker takes)."""
    if msg.encoding not in INPUT_ENCODINGS:
        raise UnsupportedEncoding(f"unsupported image encoding '{msg.encoding}' "
                                  f"(accepted: {', '.join(sorted(INPUT_ENCODINGS))})")
    img = image_to_numpy(msg)
    if img.size == 0:
        raise ValueError(f"empty image ({msg.height}x{msg.width})")
    if msg.encoding == "rgb8":
        return np.ascontiguousarray(img)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(img[..., ::-1])
    if msg.encoding == "rgba8":
        return np.ascontiguousarray(img[..., :3])
    if msg.encoding == "bgra8":
        return np.ascontiguousarray(img[..., 2::-1])
    return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))  # mono8


def numpy_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    """Array -> Image with a tight `step`, little-endian (native on every ROS platform)."""
    if encoding not in _LAYOUTS:
        raise UnsupportedEncoding(f"unsupported image encoding '{encoding}'")
    dtype, channels = _LAYOUTS[encoding]
    shape_ok = arr.ndim == 2 if channels == 1 else (arr.ndim == 3 and arr.shape[2] == channels)
    if not shape_ok or arr.dtype != dtype:
        raise ValueError(f"array {arr.dtype}{list(arr.shape)} does not fit encoding '{encoding}'")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = array.array("B", np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<")).tobytes())
    return msg


def label_map_to_image(label_map: np.ndarray, header: Header) -> Image:
    """uint16 track-id map -> `16UC1` Image."""
    return numpy_to_image(np.asarray(label_map, dtype=np.uint16), "16UC1", header)


def detections_from_msg(msg: Detection2DArray) -> tuple[list[Detection], list[str]]:
    """Detection2DArray -> (Tracker detections (pixel xyxy boxes, class, score, id), why each rejected
    detection was rejected).

    A detection without `results` has class "" and score 1.0, so the Tracker's score/class filtering
    keeps it. A detection is rejected on its own, never with the rest of its message, when its box has a
    non-positive or non-finite size or a corner that is not finite (a finite centre and size can still
    overflow), or when its score is not finite.
    """
    out, rejected = [], []
    for index, det in enumerate(msg.detections):
        cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
        sx, sy = det.bbox.size_x, det.bbox.size_y
        with np.errstate(over="ignore", invalid="ignore"):
            corners = np.array([cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2], dtype=np.float64)
        if not (np.isfinite([cx, cy, sx, sy]).all() and sx > 0 and sy > 0 and np.isfinite(corners).all()):
            rejected.append(f"detection {index} (id {det.id!r}): box centre ({cx}, {cy}) size ({sx}, {sy}) "
                            "is not a finite, non-empty box")
            continue
        class_id, score = "", 1.0
        if det.results:
            class_id = det.results[0].hypothesis.class_id
            score = float(det.results[0].hypothesis.score)
        if not np.isfinite(score):
            rejected.append(f"detection {index} (id {det.id!r}): score {score} is not finite")
            continue
        out.append(Detection(box_xyxy=tuple(float(v) for v in corners), class_id=class_id, score=score,
                             det_id=det.id))
    return out, rejected


def tracks_to_msg(tracks: Iterable[Track], header: Header) -> Detection2DArray:
    """Live tracks -> Detection2DArray (`id` = decimal track id, bbox of the mask in pixels)."""
    msg = Detection2DArray(header=header)
    for tr in tracks:
        x0, y0, x1, y1 = (float(v) for v in tr.box_xyxy)
        det = Detection2D(header=header, id=str(int(tr.track_id)))
        det.bbox.center.position.x = (x0 + x1) / 2.0
        det.bbox.center.position.y = (y0 + y1) / 2.0
        det.bbox.size_x = x1 - x0
        det.bbox.size_y = y1 - y0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = tr.class_id or UNKNOWN_CLASS
        hyp.hypothesis.score = float(tr.score)
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


def label_info_msg(live_tracks: Mapping[int, str], header: Header, threshold: float) -> LabelInfo:
    """One VisionClass per live track (`{track id: class}`): class_id = id, class_name = class."""
    msg = LabelInfo(header=header, threshold=float(threshold))
    for track_id, class_id in sorted(live_tracks.items()):
        msg.class_map.append(VisionClass(class_id=int(track_id), class_name=class_id or UNKNOWN_CLASS))
    return msg


def debug_overlay(rgb: np.ndarray, label_map: np.ndarray, tracks: Iterable[Track]) -> np.ndarray:
    """The node's ``debug_image``: the same drawing as the demo (``savi_ros.overlay``) for one Tracker result."""
    tracks = list(tracks)
    return draw_overlay(rgb, label_map, boxes={t.track_id: t.box_xyxy for t in tracks},
                        captions={t.track_id: f"{t.track_id} {t.class_id}".strip() for t in tracks})
