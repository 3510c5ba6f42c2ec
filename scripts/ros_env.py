#!/usr/bin/env python3
"""`make ros-env`: a ROS 2 environment with `ros2 launch`, `ros2 run` and `colcon` for this project.

On a machine with a ROS 2 install (`/opt/ros/<distro>/setup.bash` whose `ros2` runs) that install is
used and only colcon is checked. Otherwise the project's `.venv` (from `make setup`) gets what the
PyPI ROS wheels lack: the launch tooling sources that sit beside the repository in
`../shared/ros2_launch/` (launch, launch_ros, ros2launch, ros2cli and its verbs, rosidl_runtime_py),
installed from a temporary extraction (`--no-deps`: PyPI's `launch` is an unrelated package), the
`composition_interfaces` service types (built with cmake into the venv by `build_interfaces.py`,
as vision_msgs is), a few wheels they import, and `colcon-common-extensions`. Nothing is copied
into the repository. A stamp in the venv (hash of the sources archive and this script) makes a
re-run a quick check.

Runs under any Python 3 (stdlib only). Exit status: 0 ready; 1 a step failed; 3 neither a ROS 2
install nor the launch tooling sources exist (with `--if-available`: a note and 0, so
`make test` goes on and the launch test says it is skipped).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from setup_venv import SetupError, clean_env  # noqa: E402  (same folder; the foundation's venv environment rules)

LAUNCH_SOURCES = ROOT.parent / "shared" / "ros2_launch" / "ros2_launch_src.tar.gz"
STAMP_NAME = ".savi_ros_env_sha256"
ROS_SETUP_GLOB = "/opt/ros/*/setup.bash"
NOT_AVAILABLE = 3

# Imported by launch / launch_ros / ros2cli but not pulled in by the rclpy wheels. `wheel`: pip's
# --no-build-isolation builds need bdist_wheel. lark-parser 0.12 (from rosidl) already provides
# the `lark` module launch uses; `lark` 1.x would overwrite it, so it is not named here.
WHEELS = [
    "colcon-common-extensions",
    "osrf-pycommon",
    "importlib-metadata",
    "argcomplete",
    "psutil",
    "packaging",
    "wheel",
    "ros-ament-index-python",
    "ros-rcl-interfaces",
    "ros-python-cmake-module",
]
# Python packages inside the archive, installed in this order (dependencies first).
PYTHON_SOURCES = [
    "rosidl_runtime_py/rosidl_runtime_py",
    "launch/launch",
    "launch/launch_xml",
    "launch/launch_yaml",
    "ros2cli/ros2cli",
    "launch_ros/launch_ros",
    "launch_ros/ros2launch",
    "ros2cli/ros2pkg",
    "ros2cli/ros2run",
    "ros2cli/ros2node",
    "ros2cli/ros2param",
    "ros2cli/ros2topic",
    "ros2cli/ros2service",
    "ros2cli/ros2lifecycle",
    "ros2cli/ros2interface",
]
INTERFACE_SOURCES = ["rcl_interfaces/composition_interfaces"]
# Run by the venv's python: every piece imports and the venv is an ament prefix.
PROBE = """
import os, sys
import launch, launch_ros, launch_xml, launch_yaml, ros2launch, ros2cli, rosidl_runtime_py
from composition_interfaces.srv import LoadNode
LoadNode.__class__.__import_type_support__()
from ament_index_python.packages import get_package_prefix
assert get_package_prefix('composition_interfaces') == sys.prefix, 'venv not on AMENT_PREFIX_PATH'
"""


@dataclass(frozen=True)
class RosEnv:
    """How to get a shell with `ros2` and `colcon`: source `setup` (if any) and put `bin` first on PATH."""

    kind: str  # "system" (a ROS 2 install) or "venv" (.venv + launch sources)
    setup: Path | None  # script to source first (a system install's setup.bash)
    bin: Path | None  # folder to prepend to PATH (the venv's bin)
    description: str

    def shell_prefix(self) -> str:
        """Bash lines that make this environment current."""
        lines = []
        if self.setup is not None:
            lines.append(f'source "{self.setup}"')
        if self.bin is not None:
            lines.append(f'export PATH="{self.bin}:$PATH"')
        return "\n".join(lines)


def system_ros() -> Path | None:
    """The setup.bash of a ROS 2 install whose `ros2` runs, newest distro first."""
    for setup in sorted(glob.glob(ROS_SETUP_GLOB), reverse=True):
        result = subprocess.run(
            ["bash", "-c", f'source "{setup}" && ros2 --help'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if result.returncode == 0:
            return Path(setup)
    return None


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def sources_hash(archive: Path) -> str:
    digest = hashlib.sha256(archive.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def venv_ready(venv: Path, env: dict[str, str]) -> bool:
    """True when the venv holds everything (checked by importing it, not by trusting the stamp)."""
    if not all((venv / "bin" / tool).exists() for tool in ("ros2", "colcon")):
        return False
    result = subprocess.run(
        [str(venv_python(venv)), "-c", PROBE], env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return result.returncode == 0


def current(venv: Path = ROOT / ".venv", archive: Path = LAUNCH_SOURCES) -> RosEnv | None:
    """The environment `make ros-env` prepared, or None when it is not ready (nothing is changed)."""
    setup = system_ros()
    if setup is not None:
        return RosEnv("system", setup, None, f"ROS 2 install {setup.parent}")
    stamp = venv / STAMP_NAME
    if archive.is_file() and stamp.is_file() and venv_ready(venv, clean_env()):
        return RosEnv("venv", None, venv / "bin", f"{venv} with the launch tooling from {archive.parent}")
    return None


def run(cmd: list[str], env: dict[str, str], what: str, cwd: Path | str = ROOT) -> None:
    result = subprocess.run(cmd, env=env, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise SetupError(f"{what} failed (exit {result.returncode}):\n{tail}")


def prepare_system(setup: Path) -> RosEnv:
    result = subprocess.run(
        ["bash", "-c", f'source "{setup}" && colcon --help'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise SetupError(
            f"ROS 2 install {setup.parent} found, but `colcon` does not run there: "
            "`sudo apt-get install python3-colcon-common-extensions`, then re-run `make ros-env`."
        )
    return RosEnv("system", setup, None, f"ROS 2 install {setup.parent} (its ros2 and colcon)")


def prepare_venv(venv: Path, archive: Path) -> RosEnv:
    if not venv_python(venv).exists():
        raise SetupError(f"no {venv}: run `make setup` first (`make ros-env` does).")
    env = clean_env()
    stamp = venv / STAMP_NAME
    wanted = sources_hash(archive)
    ready = RosEnv("venv", None, venv / "bin", f"{venv} with the launch tooling from {archive.parent}")
    if stamp.is_file() and stamp.read_text().strip() == wanted and venv_ready(venv, env):
        return ready
    python = str(venv_python(venv))
    pip = [python, "-m", "pip", "install", "--quiet"]
    print("make ros-env: installing colcon and the wheels the launch tooling imports ...", flush=True)
    run(pip + WHEELS, env, "pip install of colcon and the ROS wheels")
    with tempfile.TemporaryDirectory(prefix="savi_ros2_launch_") as tmp:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses links and paths leaving the folder (Python >= 3.11.4).
            tar.extractall(tmp, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        top = Path(tmp) / "ros2_launch_src"
        missing = [p for p in PYTHON_SOURCES + INTERFACE_SOURCES if not (top / p).is_dir()]
        if missing:
            raise SetupError(f"{archive}: expected ros2_launch_src/{missing[0]} inside (and {len(missing) - 1} more)")
        print(f"make ros-env: installing launch, launch_ros, ros2cli from {archive.name} ...", flush=True)
        run(
            pip + ["--no-deps", "--no-build-isolation"] + [str(top / p) for p in PYTHON_SOURCES],
            env,
            "pip install of the launch tooling sources",
            cwd=tmp,
        )
        result = subprocess.run(
            [python, str(ROOT / "scripts" / "build_interfaces.py")] + [str(top / p) for p in INTERFACE_SOURCES],
            env=env,
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise SetupError("building composition_interfaces failed (see above)", result.returncode)
    if not venv_ready(venv, env):
        probe = subprocess.run(
            [python, "-c", PROBE], env=env, cwd="/", text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        raise SetupError(f"installed, but the venv does not pass its check:\n{probe.stdout[-2000:]}")
    stamp.write_text(wanted + "\n")
    return ready


def prepare(venv: Path, archive: Path) -> RosEnv:
    setup = system_ros()
    if setup is not None:
        return prepare_system(setup)
    if not archive.is_file():
        raise SetupError(
            f"no ROS 2 install (no {ROS_SETUP_GLOB} whose `ros2` runs) and no launch tooling sources "
            f"({archive} is missing; it lives in the shared/ folder beside the repository). "
            "Install ROS 2 (docs.ros.org) or provide that archive; until then `ros2 launch` cannot run here "
            "and the launch test is skipped.",
            NOT_AVAILABLE,
        )
    return prepare_venv(venv, archive)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--sources", type=Path, default=LAUNCH_SOURCES, help="ros2_launch_src.tar.gz")
    parser.add_argument(
        "--if-available",
        action="store_true",
        help="exit 0 (with a note) when neither a ROS 2 install nor the sources exist",
    )
    parser.add_argument("--json", action="store_true", help="print the prepared environment as JSON")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        ros = prepare(args.venv.resolve(), args.sources.resolve())
    except SetupError as error:
        if error.exit_code == NOT_AVAILABLE and args.if_available:
            print(f"make ros-env: skipped: {error}")
            return 0
        print(f"make ros-env: {error}", file=sys.stderr)
        return error.exit_code
    if args.json:
        print(json.dumps({"kind": ros.kind, "setup": str(ros.setup or ""), "bin": str(ros.bin or "")}))
    else:
        print(f"make ros-env: ready in {time.monotonic() - start:.0f} s: {ros.description}")
        print(f"  use it in bash:  {ros.shell_prefix().replace(chr(10), '; ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
