"""The message types of bags, without ROS: rosbags' ROS 2 store plus the project's vision_msgs, and a
message factory over it that `savi_ros.outputs` builds the node's messages with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

IMAGE_TYPES = {
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/Image",
    "sensor_msgs/CompressedImage",
}
DETECTIONS_TYPES = {"vision_msgs/msg/Detection2DArray", "vision_msgs/Detection2DArray"}
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag cannot be tracked; the message names the file and, where it matters, the topic."""


def _vision_msgs_dirs() -> list[Path]:
    """Where the project's vision_msgs .msg files are: the repository's own copy, else a ROS install's."""
    dirs = [Path(__file__).resolve().parent.parent / "interfaces" / "vision_msgs" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "vision_msgs" / "msg")
    return dirs


def typestore():
    """ROS 2 Kilted's message types plus vision_msgs (not in rosbags' stores), from .msg files."""
    store = get_typestore(Stores.ROS2_KILTED)
    for folder in _vision_msgs_dirs():
        files = sorted(folder.glob("*.msg"))
        if files:
            types: dict = {}
            for path in files:
                types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
            store.register(types)
            return store
    raise BagError(
        "cannot find vision_msgs' .msg files (looked in " + ", ".join(str(d) for d in _vision_msgs_dirs()) + ")"
    )


class RosbagsTypes:
    """`savi_ros.outputs`' message factory over a rosbags typestore: classes that take some fields as
    keywords and default the rest, as rclpy's do (rosbags' dataclasses want every field)."""

    _SHORT = {
        "Image": "sensor_msgs/msg/Image",
        "Detection2D": "vision_msgs/msg/Detection2D",
        "Detection2DArray": "vision_msgs/msg/Detection2DArray",
        "ObjectHypothesisWithPose": "vision_msgs/msg/ObjectHypothesisWithPose",
        "LabelInfo": "vision_msgs/msg/LabelInfo",
        "VisionClass": "vision_msgs/msg/VisionClass",
    }
    _NUMPY = {
        "bool": np.bool_,
        "int8": np.int8,
        "uint8": np.uint8,
        "byte": np.uint8,
        "char": np.uint8,
        "int16": np.int16,
        "uint16": np.uint16,
        "int32": np.int32,
        "uint32": np.uint32,
        "int64": np.int64,
        "uint64": np.uint64,
        "float32": np.float32,
        "float64": np.float64,
    }

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name: str):
        if name not in self._SHORT:
            raise AttributeError(name)
        typename = self._SHORT[name]
        return lambda **fields: self.make(typename, **fields)

    @staticmethod
    def uint8_array(data: np.ndarray) -> np.ndarray:
        return np.array(data, dtype=np.uint8)

    def make(self, typename: str, **fields: Any) -> Any:
        _, defs = self.store.fielddefs[typename]
        values = {name: fields[name] if name in fields else self._default(spec) for name, spec in defs}
        return self.store.types[typename](**values)

    def _default(self, spec: tuple) -> Any:
        kind, detail = spec
        if kind == Nodetype.NAME:
            return self.make(detail)
        if kind == Nodetype.BASE:
            base = detail[0]
            return (
                ""
                if base in ("string", "wstring")
                else False
                if base == "bool"
                else 0.0
                if base.startswith("float")
                else 0
            )
        (inner_kind, inner), length = detail
        if inner_kind == Nodetype.BASE and inner[0] in self._NUMPY:
            return np.zeros(length if kind == Nodetype.ARRAY else 0, self._NUMPY[inner[0]])
        return [self._default((inner_kind, inner)) for _ in range(length if kind == Nodetype.ARRAY else 0)]


def ros2_name(msgtype: str) -> str:
    """ROS 1 names a type ``pkg/Type``; ROS 2 ``pkg/msg/Type``."""
    return msgtype if "/msg/" in msgtype else msgtype.replace("/", "/msg/", 1)
