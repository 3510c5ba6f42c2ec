"""vision_msgs must be wire-compatible with upstream vision_msgs 4.1: same messages, field names,
types and order. The table is written from the upstream definitions, independently of
interfaces/vision_msgs/msg, and checked against both the importable package (ours or a ROS
distribution's) and our .msg sources (so an edit not yet rebuilt is caught too).
"""

import importlib
import re
from pathlib import Path

import pytest

HEADER = "std_msgs/Header"

# message -> [(field, type)] in declaration order; types as rosidl Python reports them.
UPSTREAM_4_1 = {
    "BoundingBox2D": [("center", "vision_msgs/Pose2D"), ("size_x", "double"), ("size_y", "double")],
    "BoundingBox2DArray": [("header", HEADER), ("boxes", "sequence<vision_msgs/BoundingBox2D>")],
    "BoundingBox3D": [("center", "geometry_msgs/Pose"), ("size", "geometry_msgs/Vector3")],
    "BoundingBox3DArray": [("header", HEADER), ("boxes", "sequence<vision_msgs/BoundingBox3D>")],
    "Classification": [("header", HEADER), ("results", "sequence<vision_msgs/ObjectHypothesis>")],
    "Detection2D": [
        ("header", HEADER),
        ("results", "sequence<vision_msgs/ObjectHypothesisWithPose>"),
        ("bbox", "vision_msgs/BoundingBox2D"),
        ("id", "string"),
    ],
    "Detection2DArray": [("header", HEADER), ("detections", "sequence<vision_msgs/Detection2D>")],
    "Detection3D": [
        ("header", HEADER),
        ("results", "sequence<vision_msgs/ObjectHypothesisWithPose>"),
        ("bbox", "vision_msgs/BoundingBox3D"),
        ("id", "string"),
    ],
    "Detection3DArray": [("header", HEADER), ("detections", "sequence<vision_msgs/Detection3D>")],
    "LabelInfo": [("header", HEADER), ("class_map", "sequence<vision_msgs/VisionClass>"), ("threshold", "float")],
    "ObjectHypothesis": [("class_id", "string"), ("score", "double")],
    "ObjectHypothesisWithPose": [
        ("hypothesis", "vision_msgs/ObjectHypothesis"),
        ("pose", "geometry_msgs/PoseWithCovariance"),
    ],
    "Point2D": [("x", "double"), ("y", "double")],
    "Pose2D": [("position", "vision_msgs/Point2D"), ("theta", "double")],
    "VisionClass": [("class_id", "uint16"), ("class_name", "string")],
    "VisionInfo": [
        ("header", HEADER),
        ("method", "string"),
        ("database_location", "string"),
        ("database_version", "int32"),
    ],
}

MSG_DIR = Path(__file__).resolve().parents[2] / "interfaces" / "vision_msgs" / "msg"
# .msg primitive names -> the names rosidl Python reports.
MSG_TO_IDL = {"float64": "double", "float32": "float"}


def _message_classes(module) -> list[str]:
    """Names of the message classes a generated ``<pkg>.msg`` module exports (rosidl's metaclass marks them)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and hasattr(value, "get_fields_and_field_types")
    )


def test_table_lists_all_sixteen_messages():
    """The table, the package CMake builds and the importable package all hold the same sixteen messages."""
    built = re.findall(r"^\s*msg/(\w+)\.msg$", (MSG_DIR.parent / "CMakeLists.txt").read_text(), re.MULTILINE)
    installed = _message_classes(importlib.import_module("vision_msgs.msg"))
    assert len(UPSTREAM_4_1) == 16
    assert sorted(built) == sorted(UPSTREAM_4_1), "interfaces/vision_msgs/CMakeLists.txt generates other messages"
    assert installed == sorted(UPSTREAM_4_1), "the importable vision_msgs.msg holds other messages"


@pytest.mark.parametrize("name", sorted(UPSTREAM_4_1))
def test_installed_message_fields_match_upstream(name):
    msg_class = getattr(importlib.import_module("vision_msgs.msg"), name)
    assert list(msg_class.get_fields_and_field_types().items()) == UPSTREAM_4_1[name]


def _idl_type(field) -> str:
    base = field.type.pkg_name + "/" + field.type.type if field.type.pkg_name else field.type.type
    base = MSG_TO_IDL.get(base, base)
    assert not field.type.array_size, f"{field.name}: fixed-size / bounded arrays are not in vision_msgs"
    return f"sequence<{base}>" if field.type.is_array else base


def test_source_defines_exactly_the_upstream_messages():
    assert sorted(p.stem for p in MSG_DIR.glob("*.msg")) == sorted(UPSTREAM_4_1)


@pytest.mark.parametrize("name", sorted(UPSTREAM_4_1))
def test_source_message_fields_match_upstream(name):
    from rosidl_adapter.parser import parse_message_file

    spec = parse_message_file("vision_msgs", str(MSG_DIR / f"{name}.msg"))
    assert [(f.name, _idl_type(f)) for f in spec.fields] == UPSTREAM_4_1[name]
    assert spec.constants == []
