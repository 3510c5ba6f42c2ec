"""The node's parameters (docs/INTERFACE.md): names, types, defaults, descriptions and validation.

Each parameter is defined once: the Tracker's in ``savi_core.tracking.tracker_config.TrackerConfig``, the
node-level ones (checkpoint, device, QoS, sync, ...) in ``NodeOnlyParams`` below. ``NodeParams`` is
both together; the node declares it, and ``config/tracker.yaml`` and the parameter table of
``docs/INTERFACE.md`` are rendered from it (``python -m savi_ros.params --write`` rewrites both; a test
checks they agree). Every error message starts with the parameter's name.

rclpy is imported only by the functions that talk to a node, so the offline bag tracker reads and
validates the same parameters on a machine without ROS.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import yaml

from savi_core.device import resolve_device
from savi_core.tracking.tracker_config import TrackerConfig, parameter

if TYPE_CHECKING:
    from rclpy.node import Node
    from rclpy.parameter import Parameter

IMAGE_QOS_CHOICES = ("sensor_data", "reliable")
IMAGE_TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class NodeOnlyParams:
    """The node's own parameters; the Tracker's come from ``TrackerConfig``."""

    checkpoint: str = parameter(
        "default", "'default' (the model shipped in the package) or a checkpoint directory / config.json path"
    )
    device: str = parameter("auto", "auto | cpu | cuda | cuda:N (auto = cuda when available, else cpu)")
    sync_tolerance: float = parameter(0.01, "seconds within which a detections stamp matches an image stamp", live=True)
    image_qos: str = parameter(
        "sensor_data", "sensor_data (best effort, keep last 1) | reliable (reliable, keep last 1)", IMAGE_QOS_CHOICES
    )
    image_transport: str = parameter(
        "raw",
        "raw (sensor_msgs/Image on image) | compressed (sensor_msgs/CompressedImage "
        "on <image>/compressed, jpeg/png decoded with OpenCV)",
        IMAGE_TRANSPORTS,
    )
    time_jump_reset: float = parameter(
        1.0,
        "seconds: a jump back in time larger than this ends all tracks and "
        "starts over; an image is a poison stamp only when this far ahead of the "
        "newest one and future_tolerance ahead of the node's clock",
        live=True,
    )
    future_tolerance: float = parameter(
        5.0,
        "seconds: an image this far ahead of the node's clock (ROS time; "
        "beyond the camera's usual lead) and time_jump_reset ahead of the newest "
        "image is a poison stamp, dropped while tracks are live",
        live=True,
    )
    max_image_pixels: int = parameter(
        4096 * 4096, "images with more pixels than this are dropped with a warning", live=True
    )
    publish_debug_image: bool = parameter(
        False, "always build debug_image (otherwise only while someone subscribes)", live=True
    )
    autostart: bool = parameter(True, "configure and activate the lifecycle node at start-up")


def _field_spec(f: dataclasses.Field) -> tuple[str, Any, dataclasses.Field]:
    return f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata)


def _tracker_config(self: Any) -> TrackerConfig:
    """The Tracker's share of the parameters (raises ValueError naming the bad one)."""
    return TrackerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrackerConfig)})


_NODE_FIELDS = dataclasses.fields(NodeOnlyParams)
#: Every parameter the node declares: its own first (checkpoint, device), the Tracker's, then the rest.
NodeParams = dataclasses.make_dataclass(
    "NodeParams",
    [_field_spec(f) for f in _NODE_FIELDS[:2]]
    + [_field_spec(f) for f in dataclasses.fields(TrackerConfig)]
    + [_field_spec(f) for f in _NODE_FIELDS[2:]],
    frozen=True,
    namespace={"tracker_config": _tracker_config, "__module__": __name__},
)

DESCRIPTIONS: dict[str, str] = {f.name: f.metadata["description"] for f in dataclasses.fields(NodeParams)}

#: Applied while the node runs (``parameter(live=True)``); the others take effect on the next configure transition.
LIVE = frozenset(f.name for f in dataclasses.fields(NodeParams) if f.metadata["live"])


def _param_type(name: str) -> "Parameter.Type":
    from rclpy.parameter import Parameter

    default = getattr(NodeParams(), name)
    if isinstance(default, tuple):
        return Parameter.Type.STRING_ARRAY
    return {
        str: Parameter.Type.STRING,
        float: Parameter.Type.DOUBLE,
        int: Parameter.Type.INTEGER,
        bool: Parameter.Type.BOOL,
    }[type(default)]


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
        raise ParamError(
            f"precision: 'fp16' needs a CUDA device, but device {params.device!r} "
            f"is {device.type}; use 'fp32' or 'bf16'"
        )
    for f in _NODE_FIELDS:
        if f.metadata["choices"] and getattr(params, f.name) not in f.metadata["choices"]:
            raise ParamError(f"{f.name}: must be one of {f.metadata['choices']}, got {getattr(params, f.name)!r}")
    if not (math.isfinite(params.sync_tolerance) and 0.0 <= params.sync_tolerance <= 1.0):
        raise ParamError(f"sync_tolerance: must be in [0, 1] seconds, got {params.sync_tolerance!r}")
    if not (math.isfinite(params.time_jump_reset) and params.time_jump_reset > 0.0):
        raise ParamError(f"time_jump_reset: must be a positive number of seconds, got {params.time_jump_reset!r}")
    if not (math.isfinite(params.future_tolerance) and params.future_tolerance >= 0.0):
        raise ParamError(f"future_tolerance: must be a number of seconds >= 0, got {params.future_tolerance!r}")
    if params.max_image_pixels < 1:
        raise ParamError(f"max_image_pixels: must be at least 1, got {params.max_image_pixels!r}")
    if any(not c for c in params.class_ids):
        raise ParamError(f"class_ids: entries must be non-empty strings, got {list(params.class_ids)!r}")
    try:
        return params.tracker_config()
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def declare(node: "Node") -> NodeParams:
    """Declare every parameter on `node` (typed, described) and return the values it was given.

    Raises ParamError for a value of the wrong type (e.g. `score_threshold:=1` instead of `1.0`).
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.parameter import Parameter

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
            if not node.context.ok():
                raise  # Ctrl-C shut the context down meanwhile: a stop, not a bad value
            raise ParamError(f"{f.name}: {_type_hint(ptype)} ({exc})") from None
    return read(node)


def _type_hint(ptype: "Parameter.Type") -> str:
    from rclpy.parameter import Parameter

    return {
        Parameter.Type.DOUBLE: "expected a floating-point number (write 1.0, not 1)",
        Parameter.Type.INTEGER: "expected an integer",
        Parameter.Type.BOOL: "expected true or false",
        Parameter.Type.STRING: "expected a string",
        Parameter.Type.STRING_ARRAY: "expected a list of strings, e.g. [person, car]",
    }.get(ptype, "invalid value")


def read(node: "Node") -> NodeParams:
    return NodeParams(**{f.name: _value(node.get_parameter(f.name)) for f in dataclasses.fields(NodeParams)})


def _value(param: "Parameter") -> Any:
    from rclpy.parameter import Parameter

    if param.type_ == Parameter.Type.STRING_ARRAY:
        return tuple(param.value)
    return param.value


def with_changes(current: NodeParams, changes: Iterable["Parameter"]) -> NodeParams:
    """`current` with the requested changes applied; other parameters (e.g. `use_sim_time`) are
    not ours and pass through. rclpy has type-checked the changes already."""
    from rclpy.parameter import Parameter

    ours = {f.name for f in dataclasses.fields(NodeParams)}
    values = {}
    for p in changes:
        if p.name not in ours:
            continue
        if p.type_ == Parameter.Type.NOT_SET:
            raise ParamError(f"{p.name}: cannot be unset")
        values[p.name] = _value(p) if p.name != "class_ids" else tuple(p.value or ())
    return dataclasses.replace(current, **values)


def from_assignments(assignments: Iterable[str], base: NodeParams | None = None) -> NodeParams:
    """``NAME:=VALUE`` strings (as after ``ros2 run ... -p``; ``NAME=VALUE`` too) -> NodeParams, each value
    read as a YAML scalar like ROS does and type-checked against the parameter's default. ParamError
    names the parameter."""
    params = NodeParams() if base is None else base
    fields = {f.name: f for f in dataclasses.fields(NodeParams)}
    values: dict[str, Any] = {}
    for text in assignments:
        name, sep, raw = text.partition(":=") if ":=" in text else text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"{text!r}: expected NAME:=VALUE")
        if name not in fields:
            raise ParamError(f"{name}: not a parameter of the tracker (see docs/INTERFACE.md)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ParamError(f"{name}: cannot read {raw!r} ({exc})") from None
        default = fields[name].default
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ParamError(f"{name}: expected a list of strings, e.g. [person, car]")
            value = tuple(value)
        elif isinstance(default, str):
            value = raw if not isinstance(value, str) else value
        elif isinstance(default, float) and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                raise ParamError(f"{name}: expected float, got {raw!r}") from None
        elif type(value) is not type(default) and not (type(default) is float and type(value) is int):
            raise ParamError(f"{name}: expected {type(default).__name__}, got {raw!r}")
        values[name] = float(value) if type(default) is float else value
    return dataclasses.replace(params, **values)


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return str(value)


def render_yaml() -> str:
    """``config/tracker.yaml``: every parameter with its default, its description as the comment."""
    lines = [
        "# savi_tracker parameters (docs/INTERFACE.md); generated by `python -m savi_ros.params --write`.",
        "# `/**` applies them under any namespace / node name.",
        "/**:",
        "  ros__parameters:",
    ]
    for f in dataclasses.fields(NodeParams):
        entry = f"    {f.name}: {_yaml_value(f.default)}"
        lines.append(f"{entry:<34}# {f.metadata['description']}")
    return "\n".join(lines) + "\n"


TABLE_BEGIN = "<!-- parameters: generated by `python -m savi_ros.params --write` -->"
TABLE_END = "<!-- end of parameters -->"


def render_table() -> str:
    """The parameter table of docs/INTERFACE.md."""
    rows = [
        TABLE_BEGIN,
        "",
        "| parameter | type | default | applied | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in dataclasses.fields(NodeParams):
        kind = {str: "string", float: "double", int: "integer", bool: "bool"}.get(type(f.default), "string[]")
        applied = "live" if f.name in LIVE else "on configure"
        rows.append(f"| `{f.name}` | {kind} | `{_yaml_value(f.default)}` | {applied} | {f.metadata['description']} |")
    return "\n".join(rows + ["", TABLE_END])


def rendered_docs(text: str) -> str:
    """``text`` (docs/INTERFACE.md) with its parameter table replaced by the rendered one."""
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    return text[:start] + render_table() + text[end:]


ROOT = Path(__file__).resolve().parent.parent
YAML_PATH = ROOT / "config" / "tracker.yaml"
DOCS_PATH = ROOT / "docs" / "INTERFACE.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m savi_ros.params",
        description="print or rewrite the parameter file and docs table from the parameter definitions",
    )
    parser.add_argument("--write", action="store_true", help=f"rewrite {YAML_PATH.name} and {DOCS_PATH.name}")
    args = parser.parse_args(argv)
    if not args.write:
        print(render_yaml(), end="")
        return 0
    YAML_PATH.write_text(render_yaml(), encoding="utf-8")
    DOCS_PATH.write_text(rendered_docs(DOCS_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
