"""Fixtures for the savi_ros tests: a tiny random-weights checkpoint, an in-process rclpy node
spinning in the background, and a launcher for the tracker node as a real subprocess.

ROS_DOMAIN_ID / ROS_LOG_DIR come from test/conftest.py, so the subprocess and the test process
meet on a domain of their own.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """Whether ``predicate`` came true within ``timeout`` seconds (polled; checked once more at the end): the
    tests order messages by waiting on state they can observe, never by a fixed sleep. Test modules import it
    as ``from test.savi_ros.conftest import wait_for`` (pytest's importlib mode registers this module under
    that name before it collects them)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def write_tiny_checkpoint(directory: Path, num_slots: int = 9, seed: int = 0) -> Path:
    """A small box-conditioned SAVi (32x32, `num_slots - 1` object slots) with random weights."""
    import torch

    from savi_core.model.checkpoint import save_checkpoint
    from savi_core.model.config import ModelConfig
    from savi_core.model.savi import SAVi

    cfg = ModelConfig.from_dict(
        {
            "preset": "custom",
            "resolution": [32, 32],
            "num_slots": num_slots,
            "slot_dim": 32,
            "encoder": {"channels": [8, 8], "strides": [1, 1], "mlp_dims": [16, 16]},
            "initializer": {"kind": "bbox", "hidden_dim": 32, "background_slot": True},
            "corrector": {"qkv_dim": 32, "mlp_hidden": 32},
            "predictor": {"num_heads": 4, "qkv_dim": 32, "mlp_hidden": 32},
            "decoder": {"broadcast_size": [8, 8], "channels": [16, 16], "strides": [2, 2]},
        }
    )
    torch.manual_seed(seed)
    return save_checkpoint(directory, SAVi(cfg), extra={"note": "random weights for tests"})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_ckpt"))


@pytest.fixture(scope="session")
def painting_checkpoint(tmp_path_factory) -> Path:
    """Random weights (seed 5) whose attention gives both of the e2e tests' bootstrap boxes pixels, so
    comparing the node's masks with the in-process Tracker's compares non-empty masks. Chosen, and used,
    with the Tracker's gate off (``gate_margin: 0``): the node tests are about the node, the gate's own
    tests are in test/savi_core/tracking/test_tracker.py."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("painting_ckpt"), seed=5)


class Spinner:
    """An rclpy node of the test process, spun by a background thread."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        self.executor.shutdown()  # stops the spinning thread's loop before the node goes away
        self._thread.join(timeout=5)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def spinner():
    sp = Spinner(f"savi_test_{os.getpid()}")
    yield sp
    sp.close()


@dataclasses.dataclass
class NodeProcess:
    """A `python -m savi_ros.tracker_node` child; its combined output goes to `log_path`."""

    proc: subprocess.Popen
    log_path: Path
    namespace: str

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode


def start_node(
    tmp_dir: Path, namespace: str, ros_params: dict[str, str], extra_args: tuple[str, ...] = ()
) -> NodeProcess:
    """Start the tracker node with `-p name:=value` for each entry, under `namespace`."""
    args = [sys.executable, "-m", "savi_ros.tracker_node", "--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in ros_params.items():
        args += ["-p", f"{name}:={value}"]
    args += list(extra_args)
    log_path = tmp_dir / f"node{namespace.replace('/', '_')}.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    return NodeProcess(proc, log_path, namespace)


@pytest.fixture(scope="session")
def node_launcher() -> Callable[..., NodeProcess]:
    """`start_node` as a fixture (pytest's importlib mode keeps conftest out of `import`)."""
    return start_node
