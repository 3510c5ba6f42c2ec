"""Launch the `savi_tracker` node; with `demo:=true` also the demo camera and detector.

Thin on purpose: all behaviour lives in the node. Parameters come from `params_file` (default:
the installed config/tracker.yaml); `checkpoint` and `device` override it only when given.

    ros2 launch savi_ros tracker.launch.py image:=/camera/image_raw detections:=/detector/detections
    ros2 launch savi_ros tracker.launch.py demo:=true
    rqt_image_view /savi/debug_image   # tick "publish click location": a click starts a track
    ros2 launch savi_ros tracker.launch.py demo:=true demo_params:=demo_out/demo_params.yaml  # as `make demo` does
    ros2 launch savi_ros tracker.launch.py respawn:=true respawn_delay:=2.0   # supervised: back after a crash
"""

import math

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "savi_ros"


def _flag(context, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ("true", "1", "yes", "on")


def _respawn_delay(context) -> float:
    """Seconds before a respawn (launch wants a number, not a substitution); a bad value names the argument."""
    text = LaunchConfiguration("respawn_delay").perform(context).strip()
    try:
        delay = float(text)
    except ValueError:
        delay = math.nan
    if not (math.isfinite(delay) and delay >= 0.0):
        raise ValueError(f"respawn_delay: expected seconds >= 0, got {text!r}")
    return delay


def _tracker_node(context):
    """The node, with overrides only for the arguments that were given (empty = keep params_file); with
    `respawn:=true` launch starts it again whenever it exits (a crash, a kill) until launch itself stops."""
    overrides = {"use_sim_time": _flag(context, "use_sim_time")}
    for name in ("checkpoint", "device"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value
    respawn, respawn_delay = _flag(context, "respawn"), _respawn_delay(context)
    return [
        Node(
            package=PACKAGE,
            executable="savi_tracker",
            name="savi_tracker",
            namespace=LaunchConfiguration("namespace"),
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("detections", LaunchConfiguration("detections")),
                ("points_click", LaunchConfiguration("click_topic")),
            ],
            parameters=[LaunchConfiguration("params_file"), overrides],
            output="screen",
            respawn=respawn,
            respawn_delay=respawn_delay,
        )
    ]


def _demo_node(name: str, topic: str, parameters: list) -> Node:
    """A demo node in the tracker's namespace, its one topic remapped by the launch argument of that name."""
    return Node(
        package=PACKAGE,
        executable=name,
        name=name,
        namespace=LaunchConfiguration("namespace"),
        remappings=[(topic, LaunchConfiguration(topic))],
        output="screen",
        parameters=parameters,
    )


def _demo_nodes(context):
    """The demo camera and detector; `demo_params` (a parameter file) overrides their defaults when given."""
    extra = LaunchConfiguration("demo_params").perform(context).strip()
    files = [extra] if extra else []
    # the camera plays only once the tracker (image) and the detector (ground truth) listen
    listened = {"min_image_subscribers": 1, "min_ground_truth_subscribers": 1}
    return [_demo_node("demo_camera", "image", [listened, *files]), _demo_node("demo_detector", "detections", files)]


def generate_launch_description() -> LaunchDescription:
    demo = GroupAction(
        condition=IfCondition(LaunchConfiguration("demo")), actions=[OpaqueFunction(function=_demo_nodes)]
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "namespace", default_value="savi", description="namespace of the node and its topics"
            ),
            DeclareLaunchArgument(
                "image", default_value="image", description="image topic to subscribe (remap of 'image')"
            ),
            DeclareLaunchArgument(
                "detections",
                default_value="detections",
                description="detections topic to subscribe (remap of 'detections')",
            ),
            DeclareLaunchArgument(
                "click_topic",
                default_value="debug_image_mouse_left",
                description="clicks that start tracks (remap of 'points_click'): by default what "
                "rqt_image_view publishes when it shows this node's debug_image",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "tracker.yaml"]),
                description="parameter file (default: the installed config/tracker.yaml)",
            ),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="override the 'checkpoint' parameter ('default' or a path); empty = from params_file",
            ),
            DeclareLaunchArgument(
                "device",
                default_value="",
                description="override the 'device' parameter (auto|cpu|cuda|cuda:N); empty = from params_file",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="use /clock (true when playing a recording)"
            ),
            DeclareLaunchArgument(
                "respawn",
                default_value="false",
                description="start the tracker node again whenever it exits (supervised)",
            ),
            DeclareLaunchArgument(
                "respawn_delay",
                default_value="2.0",
                description="seconds to wait before a respawn (keeps a node that cannot start "
                "from restarting in a tight loop)",
            ),
            DeclareLaunchArgument("demo", default_value="false", description="also start the demo camera and detector"),
            DeclareLaunchArgument(
                "demo_params",
                default_value="",
                description="parameter file for the demo camera and detector (empty = defaults)",
            ),
            OpaqueFunction(function=_tracker_node),
            demo,
        ]
    )
