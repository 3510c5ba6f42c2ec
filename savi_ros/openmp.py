"""Running torch work outside the worker thread without slowing the worker down.

PyTorch's CPU ops run on OpenMP, and libgomp keeps one thread team per thread that ever ran a parallel
op. Once the teams hold more threads than the machine has cores, libgomp stops letting idle team threads
spin and puts them to sleep after ~100 iterations, and every parallel op then pays a futex wake-up:
measured on the 2-core CI machine, the default model's 640x480 `Tracker.step` took 30 ms in the node's
worker thread when the model had been loaded in the executor's thread, 16 ms when it had been loaded
in a thread that then exited (its team goes with it). So the node's torch work outside the worker
(loading, `remove_track` restarting a slot) runs in a short-lived thread of its own.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


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
