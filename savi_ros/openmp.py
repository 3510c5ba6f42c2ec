"""OpenMP in the node: its team sized and its spinning shortened before torch loads, and torch work run
outside the worker thread without slowing the worker down.

PyTorch's CPU ops run on OpenMP, and libgomp keeps one thread team per thread that ever ran a parallel
op. Once the teams hold more threads than the machine has cores, libgomp stops letting idle team threads
spin and puts them to sleep after ~100 iterations, and every parallel op then pays a futex wake-up:
measured on the 2-core CI machine, the default model's 640x480 `Tracker.step` took 30 ms in the node's
worker thread when the model had been loaded in the executor's thread, 16 ms when it had been loaded
in a thread that then exited (its team goes with it). So the node's torch work outside the worker
(loading, `remove_track` restarting a slot) runs in a short-lived thread of its own.

Between two steps the worker's team would spin for libgomp's default 300,000 iterations (measured: 3-6 ms
of a core after each parallel region on the 2-core machine) before sleeping: exactly while the node
publishes, the client answers and the next image arrives, all of which then share the one other core.
`spin_briefly` lowers that to ``SPIN_COUNT`` (~0.3 ms), still longer than the gaps between a step's ops.

The node is never alone on its CPU: the middleware receives and sends every frame, and the camera driver runs
beside it. An OpenMP team as wide as the machine then waits, in every parallel op, for whichever of its
threads the scheduler gave away: on the 2-core machine, streaming 640x480 at 30 Hz, a 2-thread node's latency
p99 was 30.7 ms against 26.3 ms with 1 thread (six alternated runs, docs/RESULTS.md "The node's own cost").
`leave_a_core` sizes the team to the cores the process may use less one.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

SPIN_COUNT = 20_000  # libgomp's busy-wait iterations before an idle team thread sleeps (its default 300,000)
SPIN_VARIABLES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")  # the user's choice, when set, is kept


def _libgomp_loaded() -> bool:
    maps = Path("/proc/self/maps")
    if maps.exists():
        return "libgomp" in maps.read_text()
    return "torch" in sys.modules


def spin_briefly() -> bool:
    """Set ``GOMP_SPINCOUNT`` to ``SPIN_COUNT`` for this process, unless the user set it or
    ``OMP_WAIT_POLICY``; True when set. libgomp reads it once, when loaded: call before importing torch
    (afterwards it changes nothing and returns False)."""
    if any(name in os.environ for name in SPIN_VARIABLES) or _libgomp_loaded():
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True


def default_threads() -> int:
    """The node's OpenMP team: the cores this process may run on less one, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def leave_a_core() -> bool:
    """Set ``OMP_NUM_THREADS`` to `default_threads`, unless the user set it; True when set. torch and libgomp
    read it once, when loaded: call before importing torch (afterwards it changes nothing and returns False)."""
    if "OMP_NUM_THREADS" in os.environ or _libgomp_loaded():
        return False
    os.environ["OMP_NUM_THREADS"] = str(default_threads())
    return True


def before_torch() -> None:
    """What the node's entry points set before torch loads: `spin_briefly` and `leave_a_core`."""
    spin_briefly()
    leave_a_core()


def in_own_thread(function: Callable[..., T], *args, **kwargs) -> T:
    """``function(*args, **kwargs)`` run in a new thread that ends with it; returns or raises as it did."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread, re-raised there
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"savi_{getattr(function, '__name__', 'torch')}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
