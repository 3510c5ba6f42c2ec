"""Ctrl-C handling shared by the node executables."""

from __future__ import annotations

import signal
import sys
from typing import Callable, Optional, TypeVar

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation

#: rclpy's error from its C layer (e.g. "context is not valid"); rclpy exports it under no public name,
#: so this is the one place that reaches for it.
RCLError = rclpy_implementation.RCLError

N = TypeVar("N")


_interrupted = False


def _remember(signum: int, frame: object) -> None:
    global _interrupted
    _interrupted = True


def interrupt_via_rclpy_only() -> None:
    """Let SIGINT stop a node only through rclpy (context shutdown), never as a KeyboardInterrupt.

    rclpy's handler shuts the context down (spin ends, `ExternalShutdownException`) and then chains
    to Python's handler, whose KeyboardInterrupt may arrive later at any point of the shutdown: in a
    `finally` or in interpreter exit, where it leaves the executor's worker threads unjoined and the
    process hanging. A terminal's Ctrl-C plus `ros2 launch`'s own SIGINT make two of them. Call before
    `init`: until rclpy's handler is in place a Ctrl-C is only remembered, and `init` honours it (a
    handler that dropped it left the node running, seen in a loaded fresh-clone test run).
    """
    global _interrupted
    _interrupted = False
    signal.signal(signal.SIGINT, _remember)


def init(args: Optional[list[str]] = None) -> bool:
    """`rclpy.init`; False, with the context shut down, when a Ctrl-C came since
    `interrupt_via_rclpy_only` (the caller then exits 0)."""
    rclpy.init(args=args)
    if _interrupted:
        shutdown()
        return False
    return True


def shutdown() -> None:
    """`rclpy.try_shutdown()`, then ignore SIGINT for the rest of the process's exit.

    Interpreter exit puts back the default action (terminate) of every signal Python installed a
    handler for, so the second Ctrl-C of a terminal + `ros2 launch` pair, landing while the interpreter
    finalises, killed the node with -SIGINT instead of letting it exit 0 (measured: a second SIGINT
    100-250 ms after the first). An ignored signal is left ignored.
    """
    rclpy.try_shutdown()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def spin_until_shutdown(executor: Executor) -> None:
    """Spin until Ctrl-C (or anyone) shuts the context down, and treat that as the normal end.

    The shutdown can land at any point of the executor's loop, so besides `ExternalShutdownException` it
    surfaces as an `RCLError` ("context is not valid") when it falls between the loop's `ok()` check and
    the wait set's creation (seen in CI on the demo detector). Such an error is re-raised while the
    context is still valid: then it is a real failure.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if executor.context.ok():
            raise


def construct(factory: Callable[[], N], context: Optional[Context] = None) -> Optional[N]:
    """``factory()`` (a node's constructor), or None when Ctrl-C shut ``context`` down while it ran.

    A node is in the graph from its first publisher on, so a Ctrl-C can land while the constructor still
    creates the others: rclpy then raises `RCLError` ("context is invalid"); the caller exits 0. Such an
    error on a live context is re-raised.
    """
    try:
        return factory()
    except RCLError:
        if rclpy.ok(context=context):
            raise
        return None


def start_node(factory: Callable[[], N], name: str, args: Optional[list[str]] = None) -> tuple[Optional[N], int]:
    """rclpy's init, then ``factory()``: the node and 0, or None and the exit code when it cannot run: 0 after
    a Ctrl-C while starting, 2 for a refused parameter (its message printed as ``name: ...``)."""
    if not init(args):
        return None, 0
    try:
        node = construct(factory)
    except ValueError as error:
        print(f"{name}: {error}", file=sys.stderr)
        shutdown()
        return None, 2
    if node is None:  # Ctrl-C while starting
        shutdown()
    return node, 0
