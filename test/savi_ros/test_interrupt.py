"""Ctrl-C from a terminal running `ros2 launch` reaches each node twice (the terminal's SIGINT to the
process group, then launch's own): every node executable must still exit 0, however late the
second one lands (during shutdown or interpreter exit)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from vision_msgs.msg import Detection2DArray

from savi_ros.interrupt import RCLError, construct, spin_until_shutdown
from test.savi_ros.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]

STORM_PERIOD_S = 0.02
EXIT_WITHIN_S = 15.0


@pytest.mark.parametrize(
    "module, node_name",
    [
        ("savi_ros.demo.detector_node", "demo_detector"),
        ("savi_ros.demo.camera_node", "demo_camera"),
        ("savi_ros.tracker_node", "savi_tracker"),
    ],
)
def test_node_exits_0_under_repeated_sigint(module, node_name, spinner, tiny_checkpoint, tmp_path):
    namespace = f"/int_{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}"]
    if module == "savi_ros.tracker_node":
        args += ["-p", f"checkpoint:={tiny_checkpoint}"]
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Up = in the graph with its topics, i.e. past rclpy.init (a SIGINT during imports is Python's).
        graph = spinner.node
        up = wait_for(
            lambda: (
                any(topic.startswith(namespace) for topic, _ in graph.get_topic_names_and_types())
                and (node_name, namespace) in graph.get_node_names_and_namespaces()
            ),
            30.0,
        )
        assert up, f"{module} did not come up\n{log_path.read_text(errors='replace')}"
        signals, started = 0, time.monotonic()
        while proc.poll() is None and time.monotonic() - started < EXIT_WITHIN_S:
            proc.send_signal(signal.SIGINT)
            signals += 1
            time.sleep(STORM_PERIOD_S)
        code = proc.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert code == 0, f"{module}: exit {code} after {signals} SIGINTs\n{log_path.read_text(errors='replace')}"
    assert signals >= 2, "the node exited on the first SIGINT before a second could land; nothing was tested"


class _ShutdownBeforeWait(SingleThreadedExecutor):
    """Shuts its context down right after `spin()`'s `ok()` check, before the wait set is built: the
    window a Ctrl-C hit in CI (the demo detector exited 1 with "failed to initialize wait set")."""

    def spin_once(self, timeout_sec=None):
        self.context.try_shutdown()
        super().spin_once(timeout_sec)


class _FailingExecutor(SingleThreadedExecutor):
    def spin_once(self, timeout_sec=None):
        raise RCLError("a real failure")


def _executor(kind: type) -> SingleThreadedExecutor:
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    executor = kind(context=context)
    executor.add_node(Node("interrupt_probe", context=context))
    return executor


@pytest.mark.parametrize(
    "entry",
    [["-m", "savi_ros.tracker_node"], ["-c", "import sys; from savi_ros.launcher import tracker; sys.exit(tracker())"]],
)
@pytest.mark.parametrize("delay_s", [1.0, 2.0])
def test_ctrl_c_while_the_node_is_still_importing_exits_0_quietly(entry, delay_s, tiny_checkpoint, tmp_path):
    """The first seconds of a node are imports (torch, OpenCV, rclpy): Ctrl-C there exits 0, no traceback,
    both as `python -m` and through the console script's entry point."""
    args = [
        sys.executable,
        *entry,
        "--ros-args",
        "-r",
        f"__ns:=/early_{uuid.uuid4().hex[:8]}",
        "-p",
        f"checkpoint:={tiny_checkpoint}",
    ]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(delay_s)  # the moment of the Ctrl-C is the point of this test
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output.decode(errors="replace")
    assert b"Traceback" not in output and b"KeyboardInterrupt" not in output, output.decode(errors="replace")


def test_a_shutdown_before_the_wait_set_is_a_clean_stop():
    with pytest.raises(RCLError, match="wait set"):  # what rclpy's own spin does in that window
        _executor(_ShutdownBeforeWait).spin()
    spin_until_shutdown(_executor(_ShutdownBeforeWait))


def test_an_rcl_error_on_a_live_context_is_not_swallowed():
    executor = _executor(_FailingExecutor)
    try:
        with pytest.raises(RCLError, match="a real failure"):
            spin_until_shutdown(executor)
    finally:
        executor.context.try_shutdown()


def _node_whose_context_ends_midway(context: Context) -> Node:
    """A constructor that Ctrl-C interrupts between two publishers (seen in a SIGINT storm test)."""
    node = Node("interrupt_probe", context=context)
    node.create_publisher(Detection2DArray, "first", 1)
    with context.handle:  # what rclpy's SIGINT handler does: rcl_shutdown, Python objects left alone
        context.handle.shutdown()
    node.create_publisher(Detection2DArray, "second", 1)
    return node


def test_a_shutdown_during_construction_gives_no_node():
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    with pytest.raises(RCLError, match="context is invalid"):  # what the constructor raises
        _node_whose_context_ends_midway(context)
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    assert construct(lambda: _node_whose_context_ends_midway(context), context) is None


def test_construct_returns_the_node_and_keeps_real_errors():
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = construct(lambda: Node("interrupt_probe", context=context), context)
        assert isinstance(node, Node) and node.get_name() == "interrupt_probe"

        def failing() -> Node:
            raise RCLError("a real failure")

        with pytest.raises(RCLError, match="a real failure"):
            construct(failing, context)
    finally:
        context.try_shutdown()


def test_a_ctrl_c_before_rclpy_s_handler_is_in_place_is_honoured_not_dropped():
    """Between `interrupt_via_rclpy_only` and rclpy's own handler a Ctrl-C is remembered: `init` then shuts
    the context down and says so, and the node exits 0 instead of running on."""
    code = (
        "import os, signal, rclpy\n"
        "from savi_ros.interrupt import init, interrupt_via_rclpy_only\n"
        "interrupt_via_rclpy_only()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "print('started', init(), 'ok', rclpy.ok())\n"
        "interrupt_via_rclpy_only()\n"
        "print('started', init(), 'ok', rclpy.ok())\n"
        "rclpy.try_shutdown()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["started False ok False", "started True ok True"]
