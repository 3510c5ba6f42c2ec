"""Console-script entry points that stay quiet from their first instant.

A Ctrl-C while torch, OpenCV and rclpy are still being imported (the first seconds of a node) would
otherwise surface as a KeyboardInterrupt traceback and exit code -2. Here SIGINT means "exit 0" until
the node's own handling (``savi_ros.interrupt``) takes over once rclpy is up.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def _exit_quietly(signum: int, frame: object) -> None:
    """Exit 0 at once. Raising SystemExit here would unwind through whatever import is running: a
    half-imported extension (numpy's core) then failed loudly when interpreter exit imported it again
    ("cannot load module more than once per process", exit 1; seen on a loaded machine). Nothing has
    started yet that needs cleaning up, so only the output buffers are flushed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def quiet_sigint() -> None:
    """Until the node's own handling takes over, SIGINT exits 0 without a traceback."""
    signal.signal(signal.SIGINT, _exit_quietly)


def _run(module: str) -> int:
    quiet_sigint()
    return importlib.import_module(module).main()


def tracker() -> int:
    from savi_ros.openmp import before_torch

    before_torch()
    return _run("savi_ros.tracker_node")


def demo_camera() -> int:
    return _run("savi_ros.demo.camera_node")


def demo_detector() -> int:
    return _run("savi_ros.demo.detector_node")
