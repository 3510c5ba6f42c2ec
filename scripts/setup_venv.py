#!/usr/bin/env python3
"""`make setup`: create .venv with torch, the ROS 2 wheels and the project, and build vision_msgs.

Runs under any CPython 3.11 (stdlib only). Safe to re-run: the pip step is skipped while a stamp
in the venv matches setup.py (where every dependency is listed) and this script; the interface
build is skipped while vision_msgs imports. Errors are one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP_NAME = ".savi_setup_sha256"
EXTRAS = "torch,python,ros-wheels,test"
# The ROS wheels on PyPI are cp311 builds.
REQUIRED_PYTHON = (3, 11)
BOOTSTRAP_GUARD = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"
# Puts the venv on AMENT_PREFIX_PATH at interpreter start, as sourcing a ROS setup file would:
# ament_index lookups (packages, launch files, ros2 CLI verbs) need it. Appended, so a sourced
# workspace (e.g. a colcon install/) keeps precedence over the venv.
AMENT_PTH = (
    "import os, sys; os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(dict.fromkeys("
    "[p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]))\n"
)


class SetupError(Exception):
    """A problem the user can fix; reported as one message, never a traceback (the setup scripts share it),
    and ``exit_code`` as the script's exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def setup_constant(name: str) -> object:
    """A module-level constant of setup.py (a string or a list of strings), read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                break
    raise SetupError(f"setup.py: no module-level literal `{name} = ...`")


def torch_requirement() -> str:
    """The TORCH pin from setup.py."""
    pin = setup_constant("TORCH")
    if not isinstance(pin, str):
        raise SetupError('setup.py: `TORCH` must be a string like "torch==2.13.0"')
    return pin


def without_deps_requirements() -> list[str]:
    """WITHOUT_DEPS from setup.py: requirements pip installs with --no-deps after the project."""
    names = setup_constant("WITHOUT_DEPS")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise SetupError("setup.py: `WITHOUT_DEPS` must be a non-empty list of requirement strings")
    return names


def clean_env() -> dict[str, str]:
    """Environment for the venv's python, free of another venv's ROS bootstrap.

    The wheels' bootstrapper re-executes python with LD_LIBRARY_PATH set and a guard variable; a
    guard inherited from a different venv would make this venv skip its own bootstrap.
    """
    env = dict(os.environ)
    if env.pop(BOOTSTRAP_GUARD, None) is not None:
        kept = [
            p
            for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
            if p
            and not (Path(p).name.endswith(".libs") and Path(p).parent.name == "site-packages")
            and not (Path(p).name == "lib" and (Path(p).parent / "pyvenv.cfg").is_file())
        ]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(kept)
    env.pop("VIRTUAL_ENV", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(cmd: list[str], env: dict[str, str], what: str) -> str:
    """Run quietly; on failure show the end of the output, which is where pip and venv say why."""
    result = subprocess.run(cmd, env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise SetupError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def create_venv(venv: Path) -> None:
    if (venv / "bin" / "python").exists():
        return
    if sys.version_info[:2] != REQUIRED_PYTHON:
        raise SetupError(
            f"need CPython {REQUIRED_PYTHON[0]}.{REQUIRED_PYTHON[1]} (the ROS 2 wheels are built for it), "
            f"this is {sys.version.split()[0]} at {sys.executable}; run `make setup PYTHON=python3.11`"
        )
    try:
        import venv as venv_module  # noqa: F401  (Debian splits it out as python3-venv)
        import ensurepip  # noqa: F401
    except ImportError:
        raise SetupError(
            "this python cannot create virtual environments; `sudo apt-get install python3-venv`"
        ) from None
    print(f"creating {venv} ...", flush=True)
    run([sys.executable, "-m", "venv", str(venv)], dict(os.environ), "python -m venv")


def setup_stamp() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "setup.py", ROOT / "setup.cfg", Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install_python_packages(venv: Path, env: dict[str, str]) -> None:
    stamp = venv / STAMP_NAME
    wanted = setup_stamp()
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    torch = torch_requirement()
    without_deps = without_deps_requirements()
    start = time.monotonic()
    print(f"installing {torch} ...", flush=True)
    run(pip + [torch], env, f"pip install {torch}")
    print("installing the ROS 2 wheels, Python dependencies and the project (editable) ...", flush=True)
    run(pip + ["--editable", f".[{EXTRAS}]", torch], env, "pip install of the project")
    run(pip + ["--no-deps", *without_deps], env, f"pip install --no-deps {' '.join(without_deps)}")
    site = Path(
        run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env,
            "locating site-packages",
        )
        .strip()
        .splitlines()[-1]
    )
    (site / "savi_ament_prefix.pth").write_text(AMENT_PTH)
    stamp.write_text(wanted + "\n")
    print(f"python packages installed in {time.monotonic() - start:.0f} s", flush=True)


def build_interfaces(venv: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "scripts" / "build_interfaces.py")], env=env, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(result.returncode)  # build_interfaces.py already said why


SUMMARY_CODE = """
import json, importlib.metadata as md, sys
def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "missing"
import vision_msgs
print(json.dumps({"python": sys.version.split()[0], "torch": version("torch"), "rclpy": version("ros-rclpy"),
                  "numpy": version("numpy"), "opencv": version("opencv-contrib-python-headless"),
                  "vision_msgs": vision_msgs.__file__, "project": version("savi_ros")}))
"""


def summary(venv: Path, env: dict[str, str], seconds: float) -> str:
    info = json.loads(
        run([str(venv / "bin" / "python"), "-c", SUMMARY_CODE], env, "checking the venv").strip().splitlines()[-1]
    )
    rel = os.path.relpath(venv, Path.cwd())
    return "\n".join(
        [
            f"make setup: ready in {seconds:.0f} s  ({rel}, activation not needed: use {rel}/bin/python)",
            f"  python       {info['python']}",
            f"  torch        {info['torch']}",
            f"  rclpy        {info['rclpy']} (ROS 2 Kilted wheels, Fast DDS)",
            f"  numpy/opencv {info['numpy']} / {info['opencv']}",
            f"  vision_msgs  {Path(info['vision_msgs']).parent}",
            f"  savi_ros     {info['project']} (editable install of {ROOT})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    args = parser.parse_args(argv)
    venv = args.venv.resolve()
    start = time.monotonic()
    try:
        create_venv(venv)
        env = clean_env()
        install_python_packages(venv, env)
        build_interfaces(venv, env)
        print(summary(venv, env, time.monotonic() - start))
    except SetupError as error:
        print(f"make setup: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
