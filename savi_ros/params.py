"""The node's parameters (INTERFACE.md): names, types, defaults, descriptions and validation.

Tracker behaviour is validated by `savi_core.tracker.TrackerConfig` so its rules live in one place;
only node-level parameters (checkpoint, device, QoS, sync, ...) are checked here. Every error
message starts with the parameter's name.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from savi_core.tracker import TrackerConfig, resolve_device

IMAGE_QOS_CHOICES = ("sensor_data", "reliable")


@dataclass(frozen=True)
class NodeParams:
    """Parameter values as plain Python; defaults mirror config/tracker.yaml."""

    checkpoint: str = "default"
    device: str = "auto"
    precision: str = "fp32"
    mask_source: str = "attention"
    score_threshold: float = 0.3
    class_ids: tuple[str, ...] = ()
    max_tracks: int = 10
    reinit: str = "add_new"
    new_object_iou: float = 0.3
    min_mask_area: int = 20
    lost_after_frames: int = 10
    sync_tolerance: float = 0.01
    image_qos: str = "sensor_data"
    publish_debug_image: bool = False
    mask_threshold: float = 0.5
    autostart: bool = True

    def tracker_config(self) -> TrackerConfig:
        """The Tracker's share of the parameters (raises ValueError naming the bad one)."""
        return TrackerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrackerConfig)})


DESCRIPTIONS: dict[str, str] = {
    "checkpoint": "'default' (the model shipped in the package) or a checkpoint directory / config.json path",
    "device": "auto | cpu | cuda | cuda:N",
    "precision": "fp32 | fp16 (CUDA only) | bf16",
    "mask_source": "attention (corrector attention: faster, and the better masks of the default model) | decoder (decoder alpha masks, as in the paper)",
    "score_threshold": "detections scoring below this are ignored, in [0, 1]",
    "class_ids": "allow-list of detection class ids; empty = all classes",
    "max_tracks": "most tracks alive at once (also capped by the model's object slots)",
    "reinit": "add_new (later detections start new tracks) | first (only the first detections)",
    "new_object_iou": "a detection overlapping a live track at least this much (IoU) starts nothing",
    "min_mask_area": "a track whose mask is smaller than this (pixels) counts as lost for that frame",
    "lost_after_frames": "a track ends after this many consecutive lost frames",
    "sync_tolerance": "seconds within which a detections stamp matches an image stamp",
    "image_qos": "sensor_data (best effort, keep last 1) | reliable (reliable, keep last 1)",
    "publish_debug_image": "always build debug_image (otherwise only while someone subscribes)",
    "mask_threshold": "a pixel belongs to a track only if its slot probability is at least this",
    "autostart": "configure and activate the lifecycle node at start-up",
}

#: Applied while the node runs; the others take effect on the next configure transition.
LIVE = frozenset({"mask_source", "score_threshold", "class_ids", "reinit", "new_object_iou",
                  "min_mask_area", "lost_after_frames", "sync_tolerance", "publish_debug_image",
                  "mask_threshold"})

_TYPES = {
    str: Parameter.Type.STRING,
    float: Parameter.Type.DOUBLE,
    int: Parameter.Type.INTEGER,
    bool: Parameter.Type.BOOL,
}


def _param_type(name: str) -> Parameter.Type:
    if name == "class_ids":
        return Parameter.Type.STRING_ARRAY
    return _TYPES[type(getattr(NodeParams(), name))]


class ParamError(ValueError):
    """A parameter value is refused; the message starts with the parameter's name."""


def validate(params: NodeParams) -> TrackerConfig:
    """Check every parameter; returns the TrackerConfig. Raises ParamError naming the parameter."""
    if not params.checkpoint.strip():
        raise ParamError("checkpoint: must not be empty ('default' or a path)")
    try:
        device = resolve_device(params.device)
    except ValueError as exc:
        raise ParamError(str(exc)) from None
    if params.precision == "fp16" and device.type != "cuda":
        raise ParamError(f"precision: 'fp16' needs a CUDA device, but device {params.device!r} "
                         f"is {device.type}; use 'fp32' or 'bf16'")
    if params.image_qos not in IMAGE_QOS_CHOICES:
        raise ParamError(f"image_qos: must be one of {IMAGE_QOS_CHOICES}, got {params.image_qos!r}")
    if not (math.isfinite(params.sync_tolerance) and 0.0 <= params.sync_tolerance <= 1.0):
        raise ParamError(f"sync_tolerance: must be in [0, 1] seconds, got {params.sync_tolerance!r}")
    if any(not c for c in params.class_ids):
        raise ParamError(f"class_ids: entries must be non-empty strings, got {list(params.class_ids)!r}")
    try:
        return params.tracker_config()
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def declare(node: Node) -> NodeParams:
    """Declare every parameter on `node` (typed, described) and return the values it was given.

    Raises ParamError for a value of the wrong type (e.g. `score_threshold:=1` instead of `1.0`).
    """
    for f in dataclasses.fields(NodeParams):
        ptype = _param_type(f.name)
        descriptor = ParameterDescriptor(description=DESCRIPTIONS[f.name])
        try:
            if ptype == Parameter.Type.STRING_ARRAY:
                # An empty list has no type of its own: declare by type, then default it.
                declared = node.declare_parameter(f.name, ptype, descriptor)
                if declared.type_ == Parameter.Type.NOT_SET:
                    node.set_parameters([Parameter(f.name, ptype, list(f.default))])
            else:
                node.declare_parameter(f.name, f.default, descriptor)
        except Exception as exc:  # rclpy raises several types; all mean "bad value for this name"
            raise ParamError(f"{f.name}: {_type_hint(ptype)} ({exc})") from None
    return read(node)


def _type_hint(ptype: Parameter.Type) -> str:
    return {
        Parameter.Type.DOUBLE: "expected a floating-point number (write 1.0, not 1)",
        Parameter.Type.INTEGER: "expected an integer",
        Parameter.Type.BOOL: "expected true or false",
        Parameter.Type.STRING: "expected a string",
        Parameter.Type.STRING_ARRAY: "expected a list of strings, e.g. [person, car]",
    }.get(ptype, "invalid value")


def read(node: Node) -> NodeParams:
    return NodeParams(**{f.name: _value(node.get_parameter(f.name)) for f in dataclasses.fields(NodeParams)})


def _value(param: Parameter) -> Any:
    if param.type_ == Parameter.Type.STRING_ARRAY:
        return tuple(param.value)
    return param.value


def with_changes(current: NodeParams, changes: Iterable[Parameter]) -> NodeParams:
    """`current` with the requested changes applied; other parameters (e.g. `use_sim_time`) are
    not ours and pass through. rclpy has type-checked the changes already."""
    ours = {f.name for f in dataclasses.fields(NodeParams)}
    values = {}
    for p in changes:
        if p.name not in ours:
            continue
        if p.type_ == Parameter.Type.NOT_SET:
            raise ParamError(f"{p.name}: cannot be unset")
        values[p.name] = _value(p) if p.name != "class_ids" else tuple(p.value or ())
    return dataclasses.replace(current, **values)
