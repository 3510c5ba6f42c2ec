"""Dependencies point one way: savi_core imports no ROS, training or savi_scenes; training imports no ROS."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROS = {
    "rclpy",
    "rcl_interfaces",
    "sensor_msgs",
    "std_msgs",
    "std_srvs",
    "vision_msgs",
    "geometry_msgs",
    "diagnostic_msgs",
    "lifecycle_msgs",
    "builtin_interfaces",
    "launch",
    "launch_ros",
    "savi_ros",
}
FORBIDDEN = {"savi_core": ROS | {"training", "savi_scenes"}, "training": ROS}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offending = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & FORBIDDEN[package]) for f in files}
    assert {f: names for f, names in offending.items() if names} == {}
