"""Suite-wide test environment: isolate each pytest run's ROS 2 traffic and logs; CPU numerics.

Parallel runs on one machine (several developers, CI jobs) would otherwise discover each other's
DDS participants on the default domain. Set here, before any test imports rclpy, so in-process
nodes and every child process a test spawns inherit the same settings.

Helpers shared between test modules are imported as ``test.<folder>.<module>`` (e.g.
``from test.savi_ros.conftest import wait_for``): pytest's importlib mode registers this folder as the
namespace package ``test``, ahead of the standard library's, when it loads this file.
"""

import os
import random
import shutil
import tempfile

import pytest

# Domain ids 1..101 map to UDP ports below Linux's ephemeral range; 0 is everyone's default.
DOMAIN_ID_RANGE = (1, 101)
_LOG_DIR = pytest.StashKey[str]()


def _worker_domain(base: int, worker: str) -> int:
    """pytest-xdist worker ``gwN`` talks on the N-th domain after the run's own, wrapping inside the range."""
    low, high = DOMAIN_ID_RANGE
    return low + (base - low + int(worker.removeprefix("gw"))) % (high - low + 1)


def pytest_configure(config: pytest.Config) -> None:
    if "ROS_DOMAIN_ID" not in os.environ:
        os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(*DOMAIN_ID_RANGE))
    # Workers inherit the controller's environment; without their own domains, two workers' nodes would
    # hear each other's topics.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        os.environ["ROS_DOMAIN_ID"] = str(_worker_domain(int(os.environ["ROS_DOMAIN_ID"]), worker))
    # Keep discovery on this machine: tests never need other hosts.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    log_dir = tempfile.mkdtemp(prefix="savi_ros_test_logs_")
    os.environ["ROS_LOG_DIR"] = log_dir
    config.stash[_LOG_DIR] = log_dir
    # The CLIs the tests spawn flush denormals from their start; in-process runs must compute the same
    # numbers (resume tests compare both), so do it before any torch op creates the thread pool.
    from savi_core.numerics import flush_denormals

    flush_denormals()


def pytest_unconfigure(config: pytest.Config) -> None:
    log_dir = config.stash.get(_LOG_DIR, None)
    if log_dir:
        shutil.rmtree(log_dir, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    return f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')} ROS_LOG_DIR={os.environ.get('ROS_LOG_DIR')}"
