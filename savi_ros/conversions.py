"""The tracker's outputs as rclpy messages: `savi_ros.outputs` bound to the ROS 2 message classes.

Reading inputs needs no ROS and lives in `savi_core.tracking.messages`.
"""

from __future__ import annotations

import array
from types import SimpleNamespace
from typing import Iterable, Mapping, Optional

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose, VisionClass

from savi_core.tracking.datatypes import Track
from savi_ros import outputs


def _uint8_array(data: np.ndarray) -> array.array:
    """rclpy's fast path for ``uint8[]``: an ``array.array("B")``, filled with one copy."""
    out = array.array("B")
    out.frombytes(data)
    return out


def _image(data: array.array, **fields) -> Image:
    """An Image that keeps ``data`` as given: rclpy's constructor copies an array twice and its setter
    once, except with ``check_fields`` (which then only checks the fields' types, cheaply)."""
    msg = Image(check_fields=True, **fields)
    msg.data = data
    return msg


ROS_TYPES = SimpleNamespace(
    Image=_image,
    Detection2D=Detection2D,
    Detection2DArray=Detection2DArray,
    ObjectHypothesisWithPose=ObjectHypothesisWithPose,
    LabelInfo=LabelInfo,
    VisionClass=VisionClass,
    uint8_array=_uint8_array,
)


def numpy_to_image(arr: np.ndarray, encoding: str, header: Optional[Header] = None) -> Image:
    return outputs.image_msg(ROS_TYPES, arr, encoding, Header() if header is None else header)


def label_map_to_image(label_map: np.ndarray, header: Header) -> Image:
    return outputs.label_map_msg(ROS_TYPES, label_map, header)


def tracks_to_msg(tracks: Iterable[Track], header: Header) -> Detection2DArray:
    return outputs.tracks_msg(ROS_TYPES, tracks, header)


def label_info_msg(live_tracks: Mapping[int, str], header: Header, threshold: float) -> LabelInfo:
    return outputs.label_info_msg(ROS_TYPES, live_tracks, header, threshold)


def detection_msg(box_xyxy: Iterable[float], det_id: str, class_id: str, score: float) -> Detection2D:
    """A Detection2D of a box (x0, y0, x1, y1) in pixels, as the demo camera and detector send them."""
    return outputs.detection_msg(ROS_TYPES, box_xyxy, det_id, class_id, score)
