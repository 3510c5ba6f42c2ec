"""Poison stamps (docs/INTERFACE.md): one image stamped far in the future is dropped, so it cannot make the
frames after it look old; a slow camera, a paused stream or a camera whose clock is offset from the node's
loses no frame.

An image is a poison stamp only when it is ahead of the newest image by more than ``time_jump_reset`` *and*
ahead of the node's clock by more than ``future_tolerance``. "Ahead of the node's clock" discounts the lead
the camera's clock already had at the newest image: a camera whose clock runs a minute ahead of the node's
is not a stream of poison stamps after a pause. ROS-free: the clock is passed in (the node's ROS time, the
bag tool's recording time), so the rule is unit-tested with explicit clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Newest:
    """The newest image admitted so far and the node's clock when it was admitted (both ns)."""

    stamp_ns: int
    clock_ns: int


def ahead_of_clock_ns(stamp_ns: int, clock_ns: int, newest: Optional[Newest]) -> int:
    """How far ``stamp_ns`` is ahead of the node's clock ``clock_ns``, beyond the camera's lead at the newest
    image (none when its clock was behind the node's)."""
    lead = 0 if newest is None else max(0, newest.stamp_ns - newest.clock_ns)
    return stamp_ns - clock_ns - lead


def is_poison(
    stamp_ns: int, clock_ns: int, newest: Optional[Newest], time_jump_reset_s: float, future_tolerance_s: float
) -> bool:
    """Whether an image of ``stamp_ns`` arriving at ``clock_ns`` is a poison stamp (never the first image)."""
    return (
        newest is not None
        and stamp_ns - newest.stamp_ns > time_jump_reset_s * 1e9
        and ahead_of_clock_ns(stamp_ns, clock_ns, newest) > future_tolerance_s * 1e9
    )
