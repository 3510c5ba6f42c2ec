"""Handing memory back after a large frame (issue 27).

glibc keeps freed memory in its heaps (a worker thread's arena included) for reuse; after frames much
larger than the camera's usual ones the node would hold hundreds of MB it never needs again.
``malloc_trim(0)`` returns the free pages of every arena. It costs a few ms, so it runs only once the
frames become smaller: on the first frame with under half the pixels of the largest image seen since the
last trim. ROS-free; a C library without ``malloc_trim`` (not glibc) makes it a no-op.
"""
from __future__ import annotations

import ctypes
from typing import Callable, Optional


def _malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


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
