"""What the tracker publishes, built for any message library: rclpy's classes on the live node
(`savi_ros.conversions`), rosbags' typestore in the offline bag tracker (`savi_ros.bag`).

One definition of every output field, so a bag written offline carries the very messages the node
would have published. `types` is any object with the message classes as attributes (Image,
Detection2D, Detection2DArray, ObjectHypothesisWithPose, LabelInfo, VisionClass), constructible
with keyword arguments for some fields (the others at their defaults), and `uint8_array(array)`,
the library's own value for a `uint8[]` field, copied from a 1-D contiguous uint8 numpy array (a message
must not share memory the tracker may reuse).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from savi_core.tracking.datatypes import Track
from savi_core.tracking.messages import LAYOUTS, UnsupportedEncoding
from savi_ros.overlay import draw_overlay

UNKNOWN_CLASS = "object"


def image_msg(types: Any, arr: np.ndarray, encoding: str, header: Any) -> Any:
    """Array (any strides) -> Image with a tight `step`, little-endian (native on every ROS platform).
    The pixels are copied once, straight into the message's buffer."""
    if encoding not in LAYOUTS:
        raise UnsupportedEncoding(f"unsupported image encoding '{encoding}'")
    dtype, channels = LAYOUTS[encoding]
    shape_ok = arr.ndim == 2 if channels == 1 else (arr.ndim == 3 and arr.shape[2] == channels)
    if not shape_ok or arr.dtype != dtype:
        raise ValueError(f"array {arr.dtype}{list(arr.shape)} does not fit encoding '{encoding}'")
    height, width = int(arr.shape[0]), int(arr.shape[1])
    wire = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<"))  # a view when already tight little-endian
    return types.Image(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * dtype.itemsize,
        data=types.uint8_array(wire.reshape(-1).view(np.uint8)),
    )


def label_map_msg(types: Any, label_map: np.ndarray, header: Any) -> Any:
    """uint16 track-id map -> `16UC1` Image."""
    return image_msg(types, np.asarray(label_map, dtype=np.uint16), "16UC1", header)


def detection_msg(
    types: Any, box_xyxy: Iterable[float], det_id: str, class_id: str, score: float, header: Any = None
) -> Any:
    """One Detection2D: the box (x0, y0, x1, y1) in pixels as centre and size, one class hypothesis."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    det = types.Detection2D(id=det_id) if header is None else types.Detection2D(header=header, id=det_id)
    det.bbox.center.position.x = (x0 + x1) / 2.0
    det.bbox.center.position.y = (y0 + y1) / 2.0
    det.bbox.size_x = x1 - x0
    det.bbox.size_y = y1 - y0
    hyp = types.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = class_id
    hyp.hypothesis.score = float(score)
    det.results.append(hyp)
    return det


def tracks_msg(types: Any, tracks: Iterable[Track], header: Any) -> Any:
    """Live tracks -> Detection2DArray (`id` = decimal track id, bbox of the mask in pixels)."""
    msg = types.Detection2DArray(header=header)
    for tr in tracks:
        msg.detections.append(
            detection_msg(types, tr.box_xyxy, str(int(tr.track_id)), tr.class_id or UNKNOWN_CLASS, tr.score, header)
        )
    return msg


def label_info_msg(types: Any, live_tracks: Mapping[int, str], header: Any, threshold: float) -> Any:
    """One VisionClass per live track (`{track id: class}`): class_id = id, class_name = class."""
    msg = types.LabelInfo(header=header, threshold=float(threshold))
    for track_id, class_id in sorted(live_tracks.items()):
        msg.class_map.append(types.VisionClass(class_id=int(track_id), class_name=class_id or UNKNOWN_CLASS))
    return msg


def debug_overlay(rgb: np.ndarray, label_map: np.ndarray, tracks: Iterable[Track]) -> np.ndarray:
    """The node's ``debug_image``: the same drawing as the demo (``savi_ros.overlay``) for one Tracker result."""
    tracks = list(tracks)
    return draw_overlay(
        rgb,
        label_map,
        boxes={t.track_id: t.box_xyxy for t in tracks},
        captions={t.track_id: f"{t.track_id} {t.class_id}".strip() for t in tracks},
    )
