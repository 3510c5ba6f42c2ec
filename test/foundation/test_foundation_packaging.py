"""The package metadata a ROS 2 user's `rosdep install` + `colcon build` rely on, and the venv's
editable install of it."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPTS = {
    "savi_tracker": "savi_ros.launcher:tracker",
    "demo_camera": "savi_ros.launcher:demo_camera",
    "demo_detector": "savi_ros.launcher:demo_detector",
}

# What colcon's ament_python build reads; torch is made unimportable to prove setup.py needs none.
READ_SETUP = """
import json, sys
sys.modules["torch"] = None
from distutils.core import run_setup
d = run_setup("setup.py", stop_after="init")
print(json.dumps({"name": d.get_name(), "version": d.get_version(), "packages": d.packages,
                  "install_requires": d.install_requires, "extras": d.extras_require,
                  "data_files": d.data_files, "entry_points": d.entry_points,
                  "tests_require": getattr(d, "tests_require", None)}))
"""


def read_setup() -> dict:
    result = subprocess.run([sys.executable, "-c", READ_SETUP], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_package_xml_is_format_3_ament_python_with_runtime_deps():
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert (package.name, package.package_format) == ("savi_ros", 3)
    assert package.get_build_type() == "ament_python"
    deps = {d.name for d in package.exec_depends}
    assert {
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "std_srvs",
        "vision_msgs",
        "cv_bridge",
        "python3-numpy",
        "python3-opencv",
    } <= deps
    assert not any("torch" in d for d in deps), "torch comes from pip (README), not rosdep"


def test_setup_py_follows_ament_python_conventions():
    setup = read_setup()
    package = parse_package(str(ROOT / "package.xml"))
    assert (setup["name"], setup["version"]) == (package.name, package.version)
    assert {"savi_ros", "savi_core", "training", "savi_scenes"} <= set(setup["packages"])
    data_files = {target: files for target, files in setup["data_files"]}
    assert data_files["share/ament_index/resource_index/packages"] == ["resource/savi_ros"]
    assert data_files["share/savi_ros"] == ["package.xml"]
    assert {"share/savi_ros/launch", "share/savi_ros/config"} <= set(data_files)
    assert (ROOT / "resource" / "savi_ros").is_file()
    scripts = dict(re.split(r"\s*=\s*", s, maxsplit=1) for s in setup["entry_points"]["console_scripts"])
    assert scripts == CONSOLE_SCRIPTS
    assert setup["tests_require"] in (None, [])
    assert "pytest" in setup["extras"]["test"]


def test_install_requires_leaves_torch_and_ros_to_their_installers():
    setup = read_setup()
    assert not [r for r in setup["install_requires"] if r.startswith(("torch", "ros-"))]
    assert setup["extras"]["torch"] == ["torch==2.13.0"]


def test_venv_has_the_editable_project_with_its_console_scripts():
    dist = importlib.metadata.distribution("savi_ros")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == CONSOLE_SCRIPTS
    assert importlib.metadata.version("torch").startswith("2.13.0")


def test_interface_package_lists_every_message_it_ships():
    source = ROOT / "interfaces" / "vision_msgs"
    package = parse_package(str(source / "package.xml"))
    package.validate()
    assert (package.name, package.package_format, package.get_build_type()) == ("vision_msgs", 3, "ament_cmake")
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}
    listed = re.findall(r"msg/(\w+)\.msg", (source / "CMakeLists.txt").read_text())
    assert sorted(listed) == sorted(p.stem for p in (source / "msg").glob("*.msg"))
    assert len(listed) == 16


def test_readme_starts_with_the_two_newcomer_commands():
    lines = (ROOT / "README.md").read_text().splitlines()[:15]
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("make ")]
    assert commands[:2] == ["make demo", "make test"]
    assert "ros2 launch savi_ros tracker.launch.py" in (ROOT / "README.md").read_text()


def test_colcon_and_rosdep_see_only_savi_ros():
    # interfaces/vision_msgs carries COLCON_IGNORE: `rosdep install --from-paths src --ignore-src`
    # must install the distribution's vision_msgs rather than treat ours as the source for it.
    from catkin_pkg.packages import find_packages

    assert [p.name for p in find_packages(str(ROOT)).values()] == ["savi_ros"]
