"""sensor_msgs/Image, CompressedImage and vision_msgs/Detection2DArray -> numpy and Tracker detections:
how the tracker reads its inputs.

Duck-typed, with no ROS import: a message from rclpy or from rosbags' typestore works alike (only fields
are read), so the live node, the offline bag tracker and the `bag` training dataset decode identically.
Written with numpy/OpenCV rather than cv_bridge, which a plain machine lacks and which would make the two
paths differ.
"""

from __future__ import annotations

import cv2
import numpy as np

from savi_core.tracking.datatypes import Detection, Prompt

# encoding -> (dtype, channels) understood by the numpy path
LAYOUTS: dict[str, tuple[np.dtype, int]] = {
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
#: encodings of a mask prompt (a label image: each non-zero value one object)
MASK_ENCODINGS = frozenset({"mono8", "16UC1"})
MAX_MASK_OBJECTS = 255


def stamp_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class UnsupportedEncoding(ValueError):
    """The image's encoding is not one the tracker can use."""


def image_to_numpy(msg) -> np.ndarray:
    """Image -> array `[H,W]` or `[H,W,C]` in native byte order, honouring `step` padding and
    `is_bigendian`."""
    if msg.encoding not in LAYOUTS:
        raise UnsupportedEncoding(f"unsupported image encoding '{msg.encoding}'")
    dtype, channels = LAYOUTS[msg.encoding]
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


def compressed_to_rgb8(msg) -> np.ndarray:
    """A CompressedImage (jpeg, png, anything OpenCV decodes) -> contiguous uint8 `[H,W,3]` RGB.

    ValueError for a payload OpenCV cannot decode (the node drops such a frame with a warning)."""
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.size == 0:
        raise ValueError(f"cannot decode the compressed image (format {msg.format!r}, {data.size} bytes)")
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def image_to_rgb8(msg) -> np.ndarray:
    """Any accepted input encoding -> contiguous uint8 `[H,W,3]` RGB (what the Tracker takes)."""
    if msg.encoding not in INPUT_ENCODINGS:
        raise UnsupportedEncoding(
            f"unsupported image encoding '{msg.encoding}' (accepted: {', '.join(sorted(INPUT_ENCODINGS))})"
        )
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


def detections_from_msg(msg) -> tuple[list[Detection], list[str]]:
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
            rejected.append(
                f"detection {index} (id {det.id!r}): box centre ({cx}, {cy}) size ({sx}, {sy}) "
                "is not a finite, non-empty box"
            )
            continue
        class_id, score = "", 1.0
        if det.results:
            class_id = det.results[0].hypothesis.class_id
            score = float(det.results[0].hypothesis.score)
        if not np.isfinite(score):
            rejected.append(f"detection {index} (id {det.id!r}): score {score} is not finite")
            continue
        out.append(Detection(box_xyxy=tuple(float(v) for v in corners), class_id=class_id, score=score, det_id=det.id))
    return out, rejected


def point_from_msg(msg) -> tuple[float, float]:
    """``geometry_msgs/Point`` or ``PointStamped`` -> ``(x, y)`` in pixels (z ignored); ValueError when
    not finite."""
    point = getattr(msg, "point", msg)
    x, y = float(point.x), float(point.y)
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"point ({x}, {y}) is not finite")
    return x, y


def prompts_from_mask_msg(msg) -> list[Prompt]:
    """A ``mono8``/``16UC1`` label image -> one mask prompt per non-zero id, asking for that id as its
    track id. ValueError for another encoding, a short buffer, no object or too many ids."""
    if msg.encoding not in MASK_ENCODINGS:
        raise ValueError(f"mask encoding '{msg.encoding}' is not a label image ({', '.join(sorted(MASK_ENCODINGS))})")
    labels = image_to_numpy(msg)
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if not len(ids):
        raise ValueError("the mask has no non-zero pixel: no object")
    if len(ids) > MAX_MASK_OBJECTS:
        raise ValueError(f"the mask has {len(ids)} ids, more than {MAX_MASK_OBJECTS}")
    return [Prompt(mask=labels == value, track_id=str(int(value))) for value in ids]
