"""`make setup` / `make test` behaviour: clear errors for missing build tools, an idempotent
second run, and pytest's "no tests collected" turned into a failure."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_INTERFACES = ROOT / "scripts" / "build_interfaces.py"
SETUP_VENV = ROOT / "scripts" / "setup_venv.py"
RUN_TESTS = ROOT / "scripts" / "run_tests.sh"


def _path_with_only(tmp_path: Path, tools: list[str]) -> str:
    """A PATH holding links to just these tools (those this machine has)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _check_tools(path: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
    env["PATH"] = path
    return subprocess.run(
        [sys.executable, str(BUILD_INTERFACES), "--check-tools"], env=env, capture_output=True, text=True, timeout=60
    )


def _assert_one_clear_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "apt-get install cmake g++" in lines[0]
    return lines[0]


def test_missing_cmake_is_one_clear_line(tmp_path):
    message = _assert_one_clear_line(_check_tools(_path_with_only(tmp_path, ["cc", "gcc", "c++", "g++", "make"])))
    assert "missing cmake" in message


def test_missing_compilers_are_named(tmp_path):
    message = _assert_one_clear_line(_check_tools(_path_with_only(tmp_path, ["cmake", "make"])))
    assert "a C compiler" in message and "a C++ compiler" in message
    assert "missing cmake" not in message


@pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("c++")), reason="no build tools on this machine")
def test_tool_check_passes_with_the_tools_present():
    result = _check_tools(os.environ["PATH"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "build tools: ok"


def test_vision_msgs_is_ready_and_not_due_for_a_rebuild():
    result = subprocess.run(
        [sys.executable, str(BUILD_INTERFACES), "--status"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(("vision_msgs: ours", "vision_msgs: external")), result.stdout


def test_second_setup_run_installs_and_builds_nothing():
    def run_setup() -> str:
        result = subprocess.run([sys.executable, str(SETUP_VENV)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run_setup()  # brings the venv up to date if setup.py changed since the last `make setup`
    output = run_setup()
    assert "installing" not in output and "building" not in output, output
    assert "make setup: ready" in output


@pytest.mark.parametrize(
    "test_body, expected_rc",
    [
        (None, 1),  # no tests: pytest says 5, make test must fail
        ("def test_ok():\n    assert True\n", 0),
        ("def test_bad():\n    assert False\n", 1),
    ],
)
def test_run_tests_fails_when_nothing_is_collected(tmp_path, test_body, expected_rc):
    if test_body is not None:
        (tmp_path / "test_sample.py").write_text(test_body)
    result = subprocess.run(
        [str(RUN_TESTS), "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == expected_rc, result.stdout + result.stderr
    assert ("collected no tests" in result.stderr) == (test_body is None)


def test_ci_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert "set -euo pipefail" in script
    assert [line for line in script.splitlines() if line and not line.startswith("#")][-1] == "make test"
