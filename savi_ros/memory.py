"""Handing memory back after a large frame (issue 27).

glibc keeps freed memory in its heaps (a worker thread's arena included) for reuse; after frames much
larger than the camera's usual ones the node would hold hundreds of MB it never needs again.
``malloc_trim(0)`` returns the free pages of every arena. It costs a few ms, so it runs only once the
frames become smaller: on the first frame with under half the pixels of the largest image seen since the
last trim. ROS-free; a C library without ``malloc_trim`` (not glibc) makes it a no-op.

`mmap_large_buffers` also fixes glibc's mmap threshold at ``MMAP_THRESHOLD`` (glibc raises it to each freed
large buffer's size, up to 32 MB, after which a large frame's buffers land in a heap): a frame's buffers of
2 MB or more are then mapped and unmapped on their own (measured with bench/bench_memory.py: after - steady
+20 MB instead of +41..+56 MB with the trim alone).
"""

from __future__ import annotations

import ctypes
import os
from typing import Callable, Optional

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 2 * 1024 * 1024  # bytes; a 640x480 float plane (1.2 MB) stays in the heap


def _malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def mmap_large_buffers() -> bool:
    """Fix glibc's mmap threshold for this process (unless MALLOC_MMAP_THRESHOLD_ is set); True when done."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


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
