"""Dependencies point one way: savi_core imports no ROS, training or savi_scenes; training imports no ROS;
inside savi_core, tracking may import the model but the model never imports tracking."""

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
# Folder (relative to the repository root) -> modules no file under it may import (a name covers its submodules).
FORBIDDEN = {
    "savi_core": ROS | {"training", "savi_scenes"},
    "savi_core/model": {"savi_core.tracking"},
    "training": ROS,
}


def imported_modules(source: str, package: list[str]) -> set[str]:
    """Every module ``source`` (a file of ``package``) imports, as a full dotted name; ``from a import b``
    counts as ``a`` and ``a.b``; relative imports are resolved."""
    tree = ast.parse(source)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def forbidden(modules: set[str], names: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def forbidden_imports(path: Path, names: set[str]) -> list[str]:
    package = list(path.relative_to(ROOT).parts[:-1])
    return forbidden(imported_modules(path.read_text(), package), names)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_package_imports_point_one_way(folder):
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    offending = {str(f.relative_to(ROOT)): forbidden_imports(f, FORBIDDEN[folder]) for f in files}
    assert {f: names for f, names in offending.items() if names} == {}


def test_tracking_builds_on_the_model():
    """The rule above has something to hold: tracking does import the model (the allowed direction)."""
    files = sorted((ROOT / "savi_core" / "tracking").rglob("*.py"))
    assert any(forbidden_imports(f, {"savi_core.model"}) for f in files)


def test_a_reversed_import_is_caught():
    """The checker sees model -> tracking in each spelling: absolute, from-package and relative."""
    for source in (
        "from savi_core.tracking.tracker import Tracker\n",
        "import savi_core.tracking.geometry\n",
        "from savi_core import tracking\n",
        "from ..tracking import tracker\n",
    ):
        modules = imported_modules(source, ["savi_core", "model"])
        assert forbidden(modules, FORBIDDEN["savi_core/model"]), source
    assert not forbidden(imported_modules("from . import config\n", ["savi_core", "model"]), {"savi_core.tracking"})
