"""Build ROS 2 interface packages (default: interfaces/vision_msgs, interfaces/savi_ros_interfaces) into the
running venv.

Run with the venv's python (``make setup`` does). Only needed off a ROS 2 install: a package that
already imports (e.g. the distribution's vision_msgs) is left alone. The build goes into the venv
prefix because the ROS wheels' bootstrapper puts ``<venv>/lib`` on the library path at interpreter
start, so the generated libraries are found without exporting LD_LIBRARY_PATH.

Exit status: 0 ready, 1 build failed, 2 missing tools (one clear line on stderr).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from setup_venv import SetupError  # noqa: E402  (same folder: one user-fixable error for the setup scripts)

DEFAULT_PACKAGES = [ROOT / "interfaces" / "vision_msgs", ROOT / "interfaces" / "savi_ros_interfaces"]
STAMP_NAME = ".savi_source_sha256"
INSTALL_HINT = "sudo apt-get install cmake g++ make python3-dev"

# The ROS wheels are built in manylinux containers; their exported CMake targets name that
# machine's Python and numpy include dirs, which makes `find_package` of any message package fail
# ("Imported target ... includes non-existent path").
BUILD_MACHINE_PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILD_MACHINE_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"
)


@dataclass(frozen=True)
class InterfacePackage:
    name: str
    source: Path

    @classmethod
    def read(cls, source: Path) -> "InterfacePackage":
        manifest = source / "package.xml"
        if not manifest.is_file():
            raise SetupError(f"{source}: no package.xml, not an interface package")
        name = ET.parse(manifest).getroot().findtext("name")
        if not name:
            raise SetupError(f"{manifest}: missing <name>")
        return cls(name.strip(), source)

    def source_hash(self) -> str:
        """Hash of what the build reads (not e.g. COLCON_IGNORE), to spot a stale install."""
        digest = hashlib.sha256()
        inputs = [self.source / "package.xml", self.source / "CMakeLists.txt"]
        for kind in ("msg", "srv", "action"):
            inputs += (self.source / kind).glob(f"*.{kind}")
        for path in sorted(p for p in inputs if p.is_file()):
            digest.update(str(path.relative_to(self.source)).encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def probe_code(self) -> str:
        """Python that imports one generated type and loads its C type support (needs the .so files)."""
        for kind in ("msg", "srv", "action"):
            files = sorted((self.source / kind).glob(f"*.{kind}"))
            if files:
                return f"from {self.name}.{kind} import {files[0].stem} as T; T.__class__.__import_type_support__()"
        raise SetupError(f"{self.source}: no msg/, srv/ or action/ files")


def missing_tools() -> list[str]:
    """What a CMake build of an interface package needs and this machine lacks."""
    missing = []
    if not shutil.which("cmake"):
        missing.append("cmake")
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        missing.append("a C compiler (gcc)")
    if not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        missing.append("a C++ compiler (g++)")
    if not shutil.which("make") and not shutil.which("ninja"):
        missing.append("make")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        missing.append(f"the Python {sys.version_info.major}.{sys.version_info.minor} headers (python3-dev)")
    return missing


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise SetupError(
            f"cannot build ROS interface packages: missing {', '.join(missing)}. "
            f"Install what is missing, e.g. `{INSTALL_HINT}`, then re-run `make setup`.",
            exit_code=2,
        )


def fix_exported_include_dirs(prefix: Path) -> int:
    """Point the wheels' exported CMake include dirs at this interpreter's and numpy's; returns files changed."""
    import numpy  # the venv's numpy; only needed when something is built

    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        if "/opt/python/" not in text:
            continue
        fixed = BUILD_MACHINE_NUMPY_INCLUDE.sub(numpy_include, text)
        fixed = BUILD_MACHINE_PYTHON_INCLUDE.sub(python_include, fixed)
        if fixed != text:
            path.write_text(fixed)
            changed += 1
    return changed


def importable(package: InterfacePackage, env: dict[str, str]) -> bool:
    # A fresh interpreter, so libraries installed a moment ago are on the bootstrapped library path;
    # cwd=/ so a source folder named like the package can't shadow the installed one.
    result = subprocess.run(
        [sys.executable, "-c", package.probe_code()],
        cwd="/",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return result.returncode == 0


def child_env(prefix: Path) -> dict[str, str]:
    env = dict(os.environ)
    ament = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p and p != str(prefix)]
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), *ament])
    return env


STATE_MEANING = {
    "ours": "up to date, built from this source",
    "external": "provided by an installed distribution, not built here",
    "stale": "built from an older version of this source",
    "missing": "does not import",
}


def state(package: InterfacePackage, prefix: Path, env: dict[str, str]) -> str:
    """'ours' (built from this source), 'external' (e.g. a distro package), 'stale' or 'missing'."""
    stamp = prefix / "share" / package.name / STAMP_NAME
    if not importable(package, env):
        return "missing"
    if not stamp.is_file():
        return "external"
    return "ours" if stamp.read_text().strip() == package.source_hash() else "stale"


def run_logged(cmd: list[str], log: Path, env: dict[str, str], step: str) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SetupError(f"{step} failed (exit {result.returncode}). Last lines of {log}:\n{tail}")


def build(package: InterfacePackage, prefix: Path, env: dict[str, str]) -> float:
    require_tools()
    print(f"{package.name}: building into {prefix} ...", flush=True)
    fix_exported_include_dirs(prefix)
    work = prefix / ".build" / package.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work.parent / f"{package.name}.log"
    log.write_text("")
    start = time.monotonic()
    run_logged(
        [
            "cmake",
            "-S",
            str(package.source),
            "-B",
            str(work),
            f"-DCMAKE_PREFIX_PATH={prefix}",
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        log,
        env,
        f"cmake configure of {package.name}",
    )
    run_logged(
        ["cmake", "--build", str(work), "--parallel", str(os.cpu_count() or 1)], log, env, f"build of {package.name}"
    )
    run_logged(["cmake", "--install", str(work)], log, env, f"install of {package.name}")
    (prefix / "share" / package.name / STAMP_NAME).write_text(package.source_hash() + "\n")
    if not importable(package, env):
        raise SetupError(f"{package.name} was built and installed into {prefix} but does not import; see {log}")
    shutil.rmtree(work, ignore_errors=True)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "packages",
        nargs="*",
        type=Path,
        default=DEFAULT_PACKAGES,
        help="interface package source folders (default: interfaces/vision_msgs, interfaces/savi_ros_interfaces)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check-tools", action="store_true", help="only check cmake / compilers / headers")
    mode.add_argument("--status", action="store_true", help="report each package's state, build nothing")
    args = parser.parse_args(argv)
    prefix = Path(sys.prefix)
    try:
        if args.check_tools:
            require_tools()
            print("build tools: ok")
            return 0
        env = child_env(prefix)
        for source in args.packages:
            package = InterfacePackage.read(source.resolve())
            current = state(package, prefix, env)
            print(f"{package.name}: {current} ({STATE_MEANING[current]})", flush=True)
            if args.status or current in ("ours", "external"):
                continue
            seconds = build(package, prefix, env)
            print(f"{package.name}: built in {seconds:.0f} s")
    except SetupError as error:
        print(f"make setup: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
