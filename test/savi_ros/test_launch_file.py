"""launch/tracker.launch.py: valid Python with the contract's arguments and actions.

`launch`/`launch_ros` are not in the plain venv, so the structure is checked on the syntax tree;
when they are importable the description is also built and the node's overrides evaluated.
"""

import ast
from pathlib import Path

import pytest

from test.scripts import load_script

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "tracker.launch.py"
CONFIG = LAUNCH_FILE.parents[1] / "config" / "tracker.yaml"
TREE = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def calls(name: str, tree: ast.AST = TREE) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)
    ]


def kw(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


def launch_config(node: ast.expr) -> str | None:
    """'x' for LaunchConfiguration("x"), else None."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "LaunchConfiguration":
        return ast.literal_eval(node.args[0])
    if isinstance(node, ast.Name):  # a local bound to LaunchConfiguration("x")
        for assign in (n for n in ast.walk(TREE) if isinstance(n, ast.Assign)):
            if [getattr(t, "id", None) for t in assign.targets] == [node.id]:
                return launch_config(assign.value)
    return None


def test_declares_the_arguments_with_their_defaults():
    declared = {}
    for call in calls("DeclareLaunchArgument"):
        name = ast.literal_eval(call.args[0])
        default = kw(call)["default_value"]
        declared[name] = ast.literal_eval(default) if isinstance(default, ast.Constant) else default
        assert isinstance(kw(call).get("description"), (ast.Constant, ast.BinOp)), f"{name}: no description"
    assert set(declared) == {
        "namespace",
        "image",
        "detections",
        "click_topic",
        "params_file",
        "checkpoint",
        "device",
        "use_sim_time",
        "respawn",
        "respawn_delay",
        "demo",
        "demo_params",
    }
    assert {k: v for k, v in declared.items() if k != "params_file"} == {
        "namespace": "savi",
        "image": "image",
        "detections": "detections",
        "click_topic": "debug_image_mouse_left",
        "checkpoint": "",
        "device": "",
        "use_sim_time": "false",
        "respawn": "false",
        "respawn_delay": "2.0",
        "demo": "false",
        "demo_params": "",
    }
    params_default = ast.unparse(declared["params_file"])
    assert params_default == "PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'tracker.yaml'])"
    assert any(isinstance(n, ast.Assign) and ast.unparse(n) == "PACKAGE = 'savi_ros'" for n in TREE.body)


def _function(name: str) -> ast.FunctionDef:
    return next(n for n in TREE.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _tracker_node_call() -> dict[str, ast.expr]:
    [call] = calls("Node", _function("_tracker_node"))
    return kw(call)


def _demo_node_calls() -> dict[str, tuple[str, str, ast.expr]]:
    """executable -> (the topic it remaps, the Node's keywords, its parameters) of each `_demo_node` call."""
    [node] = calls("Node", _function("_demo_node"))
    return {
        ast.literal_eval(c.args[0]): (ast.literal_eval(c.args[1]), kw(node), c.args[2])
        for c in calls("_demo_node", _function("_demo_nodes"))
    }


def test_tracker_node_action():
    node = _tracker_node_call()
    assert ast.unparse(node["package"]) == "PACKAGE"
    assert ast.literal_eval(node["executable"]) == "savi_tracker"
    assert ast.literal_eval(node["name"]) == "savi_tracker"
    assert launch_config(node["namespace"]) == "namespace"
    remaps = {ast.literal_eval(t.elts[0]): launch_config(t.elts[1]) for t in node["remappings"].elts}
    assert remaps == {"image": "image", "detections": "detections", "points_click": "click_topic"}
    params = node["parameters"].elts
    assert launch_config(params[0]) == "params_file" and ast.unparse(params[1]) == "overrides"


def test_respawn_arguments_reach_the_tracker_node_only():
    """Off by default (declared above); `respawn` and `respawn_delay` are read from their arguments and given
    to the tracker's Node action, not to the demo nodes."""
    func = next(n for n in TREE.body if isinstance(n, ast.FunctionDef) and n.name == "_tracker_node")
    assigned = {ast.unparse(n.targets[0]): ast.unparse(n.value) for n in ast.walk(func) if isinstance(n, ast.Assign)}
    assert assigned["(respawn, respawn_delay)"] == "(_flag(context, 'respawn'), _respawn_delay(context))"
    node = _tracker_node_call()
    assert ast.unparse(node["respawn"]) == "respawn" and ast.unparse(node["respawn_delay"]) == "respawn_delay"
    delay = next(n for n in TREE.body if isinstance(n, ast.FunctionDef) and n.name == "_respawn_delay")
    assert "LaunchConfiguration('respawn_delay')" in ast.unparse(delay)
    flag = next(n for n in TREE.body if isinstance(n, ast.FunctionDef) and n.name == "_flag")
    assert "LaunchConfiguration(name)" in ast.unparse(flag)
    for _, demo_node, _ in _demo_node_calls().values():
        assert "respawn" not in demo_node


def test_checkpoint_and_device_override_only_when_given():
    func = next(n for n in TREE.body if isinstance(n, ast.FunctionDef) and n.name == "_tracker_node")
    loop = next(n for n in ast.walk(func) if isinstance(n, ast.For))
    assert ast.literal_eval(loop.iter) == ("checkpoint", "device")
    guard = next(n for n in loop.body if isinstance(n, ast.If))
    assert ast.unparse(guard.test) == "value"
    assert ast.unparse(guard.body[0]) == "overrides[name] = value"
    assert "use_sim_time" in ast.unparse(func)
    assert any(
        ast.unparse(c.func) == "OpaqueFunction" and ast.unparse(kw(c)["function"]) == "_tracker_node"
        for c in calls("OpaqueFunction")
    )


def test_demo_nodes_only_with_demo_true_in_the_same_namespace():
    group = calls("GroupAction")
    assert len(group) == 1
    cond = kw(group[0])["condition"]
    assert ast.unparse(cond.func) == "IfCondition" and launch_config(cond.args[0]) == "demo"
    assert [ast.unparse(kw(c)["function"]) for c in calls("OpaqueFunction", group[0])] == ["_demo_nodes"]
    in_group = _demo_node_calls()
    assert {name: topic for name, (topic, _, _) in in_group.items()} == {
        "demo_camera": "image",
        "demo_detector": "detections",
    }
    node = in_group["demo_camera"][1]
    assert ast.unparse(node["package"]) == "PACKAGE"
    assert ast.unparse(node["executable"]) == ast.unparse(node["name"]) == "name"
    assert launch_config(node["namespace"]) == "namespace"
    assert ast.unparse(node["remappings"]) == "[(topic, LaunchConfiguration(topic))]"
    assert ast.unparse(node["parameters"]) == "parameters"
    # the camera waits for its two listeners; both take the demo_params file when given
    assert ast.unparse(in_group["demo_camera"][2]) == "[listened, *files]"
    assert ast.unparse(in_group["demo_detector"][2]) == "files"


def test_generate_launch_description_entry_point():
    func = [n for n in TREE.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"]
    assert len(func) == 1 and not func[0].args.args
    ret = [n for n in ast.walk(func[0]) if isinstance(n, ast.Return)][-1]
    assert ast.unparse(ret.value.func) == "LaunchDescription"
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")


def test_with_real_launch_ros_when_available():
    pytest.importorskip("launch_ros", reason="launch_ros not installed in this venv (plain machine)")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch_ros.utilities import evaluate_parameters

    module = load_script(LAUNCH_FILE)
    description = module.generate_launch_description()
    names = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert "checkpoint" in names and "demo" in names
    for given, expected in [
        ({}, {"use_sim_time": False}),
        (
            {"checkpoint": "/m", "device": "cpu", "use_sim_time": "true"},
            {"use_sim_time": True, "checkpoint": "/m", "device": "cpu"},
        ),
    ]:
        context = LaunchContext()
        context.launch_configurations.update(
            {
                "checkpoint": "",
                "device": "",
                "use_sim_time": "false",
                "respawn": "false",
                "respawn_delay": "2.0",
                "params_file": str(CONFIG),
                **given,
            }
        )
        [node] = module._tracker_node(context)
        # launch_ros keeps the normalised parameters only privately; evaluate them as it would
        evaluated = evaluate_parameters(context, node._Node__parameters)
        assert evaluated[1] == expected
        assert (node._ExecuteLocal__respawn, node._ExecuteLocal__respawn_delay) == (False, 2.0)
    for respawn, delay, expected in (("true", "0.5", (True, 0.5)), ("false", "-1", None), ("true", "soon", None)):
        context = LaunchContext()
        context.launch_configurations.update(
            {
                "checkpoint": "",
                "device": "",
                "use_sim_time": "false",
                "params_file": str(CONFIG),
                "respawn": respawn,
                "respawn_delay": delay,
            }
        )
        if expected is None:
            with pytest.raises(ValueError, match="respawn_delay: expected seconds >= 0"):
                module._tracker_node(context)
            continue
        [node] = module._tracker_node(context)
        assert (node._ExecuteLocal__respawn, node._ExecuteLocal__respawn_delay) == expected
    for demo_params, files in (("", []), ("/tmp/demo.yaml", ["/tmp/demo.yaml"])):
        context = LaunchContext()
        context.launch_configurations.update(
            {"namespace": "savi", "image": "image", "detections": "detections", "demo_params": demo_params}
        )
        camera, detector = module._demo_nodes(context)
        camera_params = [str(p) for p in evaluate_parameters(context, camera._Node__parameters)[1:]]
        detector_params = [str(p) for p in evaluate_parameters(context, detector._Node__parameters)]
        assert camera_params == files and detector_params == files
