"""Node parameters: declaration (types, empty list), validation messages, and config/tracker.yaml."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from savi_ros import params  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "config" / "tracker.yaml"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "INTERFACE.md"


@pytest.fixture
def make_node():
    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = []

    def make(*cli_args: str):
        node = rclpy.create_node(
            "savi_tracker", context=context, cli_args=["--ros-args", *cli_args] if cli_args else None
        )
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    context.try_shutdown()


def test_defaults_are_valid_and_match_the_tracker_fields():
    cfg = params.validate(params.NodeParams())
    assert cfg.score_threshold == 0.3 and cfg.class_ids == () and cfg.mask_source == "attention"
    assert set(params.DESCRIPTIONS) == {f.name for f in dataclasses.fields(params.NodeParams)}


@pytest.mark.parametrize(
    "name,value",
    [
        ("device", "tpu"),
        ("device", "cuda:x"),
        ("mask_source", "foo"),
        ("precision", "fp8"),
        ("score_threshold", -0.1),
        ("new_object_iou", 1.5),
        ("mask_threshold", float("nan")),
        ("max_tracks", 0),
        ("min_mask_area", -1),
        ("lost_after_frames", 0),
        ("reinit", "never"),
        ("sync_tolerance", -0.01),
        ("image_qos", "best"),
        ("checkpoint", " "),
        ("class_ids", ("person", "")),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(name, value):
    with pytest.raises(params.ParamError, match=rf"^{name}: "):
        params.validate(dataclasses.replace(params.NodeParams(), **{name: value}))


def test_fp16_needs_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed here")
    with pytest.raises(params.ParamError, match="^precision: .*CUDA"):
        params.validate(dataclasses.replace(params.NodeParams(), precision="fp16"))


def test_declare_defaults_and_empty_class_ids(make_node):
    node = make_node()
    assert params.declare(node) == params.NodeParams()
    assert node.get_parameter("class_ids").type_ == Parameter.Type.STRING_ARRAY
    assert node.get_parameter("class_ids").value == []
    assert node.describe_parameter("score_threshold").description == params.DESCRIPTIONS["score_threshold"]


def test_declare_reads_overrides_and_the_shipped_yaml(make_node):
    node = make_node("--params-file", str(CONFIG), "-p", "class_ids:=[person, car]", "-p", "max_tracks:=4")
    got = params.declare(node)
    assert got == dataclasses.replace(params.NodeParams(), class_ids=("person", "car"), max_tracks=4)


def test_declare_refuses_a_wrong_type_with_a_hint(make_node):
    node = make_node("-p", "score_threshold:=1")
    with pytest.raises(params.ParamError, match=r"^score_threshold: .*1\.0"):
        params.declare(node)


def test_declare_on_a_context_shut_down_by_ctrl_c_is_a_stop_not_a_bad_value(make_node):
    """A Ctrl-C storm landed while the node declared its parameters: the error is rclpy's own, which the entry
    point takes as a clean stop, never "invalid parameter" (exit 1)."""
    node = make_node()
    node.context.try_shutdown()
    with pytest.raises(Exception) as raised:
        params.declare(node)
    assert not isinstance(raised.value, params.ParamError)


def test_with_changes_applies_ours_and_ignores_others():
    current = params.NodeParams()
    changed = params.with_changes(
        current,
        [Parameter("max_tracks", value=3), Parameter("class_ids", value=["a"]), Parameter("use_sim_time", value=True)],
    )
    assert changed == dataclasses.replace(current, max_tracks=3, class_ids=("a",))
    with pytest.raises(params.ParamError, match="^device: cannot be unset"):
        params.with_changes(current, [Parameter("device")])


def test_config_yaml_lists_every_parameter_with_its_default_and_a_comment():
    data = yaml.safe_load(CONFIG.read_text())
    values = data["/**"]["ros__parameters"]
    defaults = {f.name: getattr(params.NodeParams(), f.name) for f in dataclasses.fields(params.NodeParams)}
    assert set(values) == set(defaults)
    for name, default in defaults.items():
        got = tuple(values[name]) if isinstance(default, tuple) else values[name]
        assert got == default and type(got) is type(default), name
    for line in CONFIG.read_text().splitlines():
        match = re.match(r"\s+(\w+):\s*\S.*#\s*(.*)$", line)
        if match and match.group(1) in defaults:
            assert match.group(2) == params.DESCRIPTIONS[match.group(1)], line


def test_one_definition_everywhere():
    """TrackerConfig, the node's parameters, config/tracker.yaml and docs/INTERFACE.md agree: the file and
    the docs table are exactly what the definitions render (`python -m savi_ros.params --write`)."""
    from savi_core.tracking.tracker_config import TrackerConfig
    from savi_ros.demo.options import DemoOptions

    tracker_defaults = dataclasses.asdict(TrackerConfig())
    node = params.NodeParams()
    assert {k: getattr(node, k) for k in tracker_defaults} == tracker_defaults
    assert dataclasses.asdict(node.tracker_config()) == tracker_defaults
    assert CONFIG.read_text() == params.render_yaml(), (
        "config/tracker.yaml is stale: run python -m savi_ros.params --write"
    )
    docs = DOCS.read_text()
    assert docs == params.rendered_docs(docs), "docs/INTERFACE.md is stale: run python -m savi_ros.params --write"
    for f in dataclasses.fields(params.NodeParams):
        assert f"| `{f.name}` |" in docs and f.metadata["description"] in docs
    assert DemoOptions().mask_source == node.mask_source and DemoOptions().device == node.device


def test_assignments_from_a_command_line_are_typed_like_ros_does():
    from savi_ros.params import ParamError, from_assignments

    p = from_assignments(
        [
            "sync_tolerance:=1e-3",
            "score_threshold:=1",
            "class_ids:=[cup, ball]",
            "checkpoint:=/tmp/x",
            "publish_debug_image=true",
            "max_tracks:=4",
        ]
    )
    assert (p.sync_tolerance, p.score_threshold, p.class_ids) == (0.001, 1.0, ("cup", "ball"))
    assert (p.checkpoint, p.publish_debug_image, p.max_tracks) == ("/tmp/x", True, 4)
    for bad, message in (
        ("max_tracks:=2.5", "max_tracks: expected int"),
        ("nope:=1", "nope: not a parameter"),
        ("score_threshold:=high", "score_threshold: expected float"),
        ("class_ids:=cup", "class_ids: expected a list"),
        ("max_tracks", "expected NAME:=VALUE"),
    ):
        with pytest.raises(ParamError, match=message):
            from_assignments([bad])
