"""Handing memory back after a large frame (issue 27).

glibc keeps freed memory in its heaps (a worker thread's arena included) for reuse; after frames much
larger than the camera's usual ones the node would hold hundreds of MB it never needs again.
``malloc_trim(0)`` returns the free pages of every arena. It costs a few ms, so it runs only once the
frames become smaller: on the first frame with under half the pixels of the largest image seen since the
last trim. ROS-free; a C library without ``malloc_trim`` (not glibc) makes it a no-op.

`mmap_large_buffers` also fixes glibc's mmap threshold at ``MMAP_THRESHOLD`` (glibc raises it to each freed
large buffer's size, up to 32 MB, after which a large frame's buffers land in a heap): a frame's buffers of
2 MB or more are then mapped and unmapped on their own (measured with bench/bench_memory.py: after - steady
+20 MB instead of +41..+56 MB with the trim alone). Fixing it also stops glibc's raising of the trim
threshold, so every step gave the heap's top back and faulted it in again (640x480 step 16.8 -> 19-21 ms):
the trim threshold is fixed high too (``TRIM_THRESHOLD``), and `Trimmer` trims when it matters.
"""

from __future__ import annotations

import ctypes
import os
from typing import Callable, Optional

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 2 * 1024 * 1024  # bytes; a 640x480 float plane (1.2 MB) stays in the heap
TRIM_THRESHOLD = 128 * 1024 * 1024  # bytes of free heap top kept between steps


def _malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def mmap_large_buffers() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (unless MALLOC_MMAP_THRESHOLD_ is set); True
    when done. MALLOC_TRIM_THRESHOLD_, when set, keeps its value."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ and not mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class Trimmer:
    """Tracks the largest image seen (any thread) and trims when the frames shrink."""

    def __init__(self, trim: Optional[Callable[[int], int]] = None) -> None:
        self._trim = trim if trim is not None else _malloc_trim()
        self._largest = 0  # pixels of the largest image since the last trim

    def saw(self, pixels: int) -> None:
        """An image arrived (processed or not: reading it allocated its size)."""
        self._largest = max(self._largest, pixels)

    def processed(self, pixels: int) -> bool:
        """A frame of ``pixels`` was processed and published; True when memory was trimmed."""
        shrank = 2 * pixels < self._largest
        self._largest = pixels if shrank else max(self._largest, pixels)
        if not shrank or self._trim is None:
            return False
        self._trim(0)
        return True
