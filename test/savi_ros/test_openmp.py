import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from savi_ros.openmp import SPIN_COUNT, SPIN_VARIABLES, default_threads, in_own_thread

ROOT = Path(__file__).resolve().parents[2]


def test_runs_in_a_thread_that_ends_and_returns_the_value():
    seen = {}

    def work(a, b=0):
        seen["thread"] = threading.current_thread()
        return torch.arange(a).sum().item() + b

    assert in_own_thread(work, 5, b=1) == 11
    assert seen["thread"] is not threading.current_thread() and not seen["thread"].is_alive()


def test_an_exception_reaches_the_caller():
    def fail():
        raise ValueError("bad checkpoint")

    with pytest.raises(ValueError, match="bad checkpoint"):
        in_own_thread(fail)


def _last_line(code: str, unset: tuple[str, ...], **env: str) -> str:
    """The last line a fresh interpreter prints running ``code``, with ``unset`` taken out of this environment
    and ``env`` added."""
    base = {k: v for k, v in os.environ.items() if k not in unset}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _environment_after(code: str, **env: str) -> str:
    """GOMP_SPINCOUNT as a fresh interpreter sees it after ``code`` (with ``env`` added)."""
    return _last_line(f"{code}; import os; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))", SPIN_VARIABLES, **env)


def test_spin_briefly_sets_the_spin_count_before_torch_loads_and_keeps_the_users_choice():
    set_first = "from savi_ros.openmp import spin_briefly; assert spin_briefly()"
    assert _environment_after(set_first) == str(SPIN_COUNT)
    assert _environment_after("from savi_ros.openmp import spin_briefly; spin_briefly()", GOMP_SPINCOUNT="7") == "7"
    kept = "from savi_ros.openmp import spin_briefly; assert not spin_briefly()"
    assert _environment_after(kept, OMP_WAIT_POLICY="PASSIVE") == "unset"
    too_late = "import torch; from savi_ros.openmp import spin_briefly; assert not spin_briefly()"
    assert _environment_after(too_late) == "unset"


def test_the_savi_tracker_entry_point_sets_it_and_importing_the_node_does_not():
    """The `savi_tracker` console script sets it before it imports the node (stopped there); a program that
    imports the node as a library keeps its own environment."""
    entry = "from savi_ros import launcher; launcher._run = lambda module: 0; launcher.tracker()"
    assert _environment_after(entry) == str(SPIN_COUNT)
    assert _environment_after("import savi_ros.tracker_node") == "unset"


def _threads_after(code: str, **env: str) -> str:
    """OMP_NUM_THREADS as a fresh interpreter sees it after ``code`` (with ``env`` added)."""
    return _last_line(
        f"{code}; import os; print(os.environ.get('OMP_NUM_THREADS', 'unset'))", ("OMP_NUM_THREADS",), **env
    )


def test_leave_a_core_sizes_the_team_to_the_cores_less_one_and_keeps_the_users_choice():
    cores = len(os.sched_getaffinity(0))
    assert default_threads() == max(1, cores - 1)
    assert _threads_after("from savi_ros.openmp import leave_a_core; assert leave_a_core()") == str(max(1, cores - 1))
    kept = "from savi_ros.openmp import leave_a_core; assert not leave_a_core()"
    assert _threads_after(kept, OMP_NUM_THREADS="3") == "3"
    assert _threads_after(f"import torch; {kept}") == "unset"  # too late: torch has read it
    # torch itself takes the team's size from it.
    sized = "from savi_ros.openmp import leave_a_core; leave_a_core(); import torch; print(torch.get_num_threads())"
    assert _last_line(sized, ("OMP_NUM_THREADS",)) == str(max(1, cores - 1))


def test_the_entry_point_leaves_a_core_and_importing_the_node_does_not():
    entry = "from savi_ros import launcher; launcher._run = lambda module: 0; launcher.tracker()"
    assert _threads_after(entry) == str(default_threads())
    assert _threads_after("import savi_ros.tracker_node") == "unset"
