"""How late images arrive (issue 27, part 6): their age on arrival in /diagnostics, and one warning with the
fix when large images are slow in transport; and how many never arrive (`PublisherGaps`).

Two times per image, from the DDS message info (rmw's receive and source timestamps, both the system clock):
* age: receipt minus the header stamp. What the tracker's answer is late by before it starts; includes the
  camera driver's own delay. Only where the clocks compare: not under sim time (stamps are sim time), and
  not beyond ``COMPARABLE_S`` either way (a camera on another host's clock, a bag replayed with old stamps).
* transport: receipt minus the publisher's source timestamp: the middleware alone. This judges the warning,
  so a camera that stamps at exposure, well before it publishes, is not blamed on the transport.

The warning: a camera whose Fast DDS keeps its default transport (512 KB shared-memory segment, the
kernel's small socket buffers) sends a 640x480 rgb8 image (900 KB) in UDP fragments that overflow the
buffer and wait for a repair (measured: 19.0 ms node overhead at 640x480 instead of 4.4 ms with the
project's profile, and stalls of seconds). With the profile an image of that size crosses in a few ms, so
a median over ``SLOW_TRANSPORT_MS`` (15 ms) across at least ``MIN_LARGE`` images over ``LARGE_BYTES``
(500 KB: more than the default segment holds) is the default transport, not a busy moment. ROS-free.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Optional

WINDOW = 100  # recent images the figures cover
LARGE_BYTES = 500_000  # an image that does not fit Fast DDS's default 512 KB shared-memory segment
SLOW_TRANSPORT_MS = 15.0  # median transport time of large images that means the default transport
MIN_LARGE = 30  # large images in the window before judging
COMPARABLE_S = 10.0  # a larger difference is two clocks, not a delay

FIX = "export FASTDDS_DEFAULT_PROFILES_FILE=$(python -m savi_ros.dds)"


def _comparable_ms(later_ns: int, earlier_ns: int) -> Optional[float]:
    delay_ns = later_ns - earlier_ns
    return delay_ns * 1e-6 if earlier_ns > 0 and abs(delay_ns) <= COMPARABLE_S * 1e9 else None


class ImageAges:
    """Ages and transport times of the last ``WINDOW`` images (called from one thread)."""

    def __init__(self) -> None:
        self._ages: deque[float] = deque(maxlen=WINDOW)
        self._large_transport: deque[float] = deque(maxlen=WINDOW)
        self.warned = False

    def add(self, stamp_ns: int, received_ns: int, source_ns: int, nbytes: int, sim_time: bool) -> Optional[str]:
        """One image on arrival (times in ns; 0 = unknown); returns the warning's text the first time the
        large images' transport is slow, else None."""
        age = None if sim_time else _comparable_ms(received_ns, stamp_ns)
        if age is not None:
            self._ages.append(age)
        transport = _comparable_ms(received_ns, source_ns)
        if transport is not None and nbytes > LARGE_BYTES:
            self._large_transport.append(transport)
        return self._warning()

    def _warning(self) -> Optional[str]:
        if self.warned or len(self._large_transport) < MIN_LARGE:
            return None
        median = statistics.median(self._large_transport)
        if median <= SLOW_TRANSPORT_MS:
            return None
        self.warned = True
        return (
            f"images over {LARGE_BYTES // 1000} KB take {median:.1f} ms (median of the last "
            f"{len(self._large_transport)}) from the camera's publish to this node: its Fast DDS likely keeps "
            f"the default transport (512 KB shared memory, small socket buffers). Start the camera's process "
            f"with: {FIX}"
        )

    def values(self) -> dict[str, str]:
        """The /diagnostics values: p50 / max of the recent ages, the large images' median transport time."""
        ages, large = list(self._ages), list(self._large_transport)
        return dict(
            image_age_ms_p50=f"{statistics.median(ages):.1f}" if ages else "n/a",
            image_age_ms_max=f"{max(ages):.1f}" if ages else "n/a",
            large_image_transport_ms_p50=f"{statistics.median(large):.1f}" if large else "n/a",
        )


MAX_PUBLISHERS = 64  # image publishers remembered (the least recently heard from is forgotten first)
_UNSUPPORTED_SEQ = 2**63  # rmw without sequence numbers reports none, 0 or UINT64_MAX


class PublisherGaps:
    """Images a publisher sent that never reached this node, from the gaps in its sequence numbers.

    The image subscription keeps the last image only (the contract's QoS), so in a burst the middleware
    replaces an image the executor has not taken yet, and best effort may lose one in transport; neither
    reaches a callback. Each publisher (by its GID) numbers what it writes, so a jump from n to n + k
    means k - 1 images missed. The first image of a publisher and a sequence that goes back (a restarted
    publisher) count nothing. Called from one thread; `clear` when the subscription is created again,
    so a pause is not counted."""

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}

    def add(self, gid: bytes, sequence: Optional[int]) -> int:
        """One received image; returns how many of its publisher's images were missed just before it."""
        if not sequence or sequence >= _UNSUPPORTED_SEQ:
            return 0
        last = self._last.pop(gid, None)
        self._last[gid] = sequence  # most recent last: the dict's order is the forgetting order
        while len(self._last) > MAX_PUBLISHERS:
            del self._last[next(iter(self._last))]
        return sequence - last - 1 if last is not None and sequence > last else 0

    def clear(self) -> None:
        self._last.clear()
