"""Pairing images with detections by stamp, and latest-first frame hand-off.

ROS-free on purpose: `message_filters` is not available on a plain machine and the rules here
(how long to hold what, what to drop) are the node's behaviour, so they are unit-tested alone.

Stamps are integer nanoseconds; `now` is a monotonic clock in seconds (arrival time, not
message time, decides how long something is held).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Generic, List, Optional, TypeVar

I = TypeVar("I")  # noqa: E741 - the image type of StampMatcher, beside D for detections
D = TypeVar("D")


@dataclass
class Pair(Generic[I, D]):
    """An image released for processing, with the detections of its stamp (None when none came) and
    detections carried from frames that were dropped or never came (they act on this frame)."""

    stamp_ns: int
    image: I
    detections: Optional[D] = None
    carried: List[D] = field(default_factory=list)

    def all_detections(self) -> List[D]:
        return [*self.carried, *([] if self.detections is None else [self.detections])]


@dataclass
class LateDetections(Generic[D]):
    """Detections that found no image to pair with: they act on the next processed frame (boxes used
    as given); `reason` says why they came late."""

    stamp_ns: int
    detections: D
    reason: str


@dataclass
class Released(Generic[I, D]):
    pairs: List[Pair[I, D]] = field(default_factory=list)
    late_detections: List[LateDetections[D]] = field(default_factory=list)


@dataclass
class _Held:
    stamp_ns: int
    item: Any
    arrived: float
    detections: Any = None
    matched: bool = False


class StampMatcher(Generic[I, D]):
    """Matches images and detections whose stamps agree within `tolerance_s`.

    While nothing is tracked (`patient`), images wait up to `image_hold_s` for their detections, so
    a detector that answers shortly after the camera bootstraps on the very image it looked at. Once
    tracks are live, images never wait (a detector usually runs slower than the camera): an image is
    released at once unless its detections are already there. Detections that find no image to pair
    with (their image was released, dropped, or never came) are never lost: they are released as
    `LateDetections` and act on the next processed frame. The observed detector lags are kept
    for reporting (`detector_lag`). Assumes each stream arrives in stamp order, which lets it release
    early: once detections for a newer stamp (or a newer image) exist, older waiting images will get
    none and are released at once, and detections older than the newest image that did not match are
    handed on at once. Buffers are bounded: beyond `max_images` the oldest image is released without
    detections; beyond `max_detections` the oldest detections are handed on.
    """

    def __init__(
        self,
        tolerance_s: float,
        image_hold_s: float = 0.25,
        detection_hold_s: float = 1.0,
        max_images: int = 8,
        max_detections: int = 16,
        lag_window: int = 20,
    ) -> None:
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        if image_hold_s < 0 or detection_hold_s < 0:
            raise ValueError("hold times must be >= 0")
        if max_images < 1 or max_detections < 1:
            raise ValueError("buffer sizes must be >= 1")
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        self.image_hold_s = image_hold_s
        self.detection_hold_s = detection_hold_s
        self.max_images = max_images
        self.max_detections = max_detections
        self._lags: Deque[float] = deque(maxlen=lag_window)
        # Set while nothing is tracked: a frame processed without detections then yields nothing, and a
        # detector that is slower than usual (a new scene, a cold start) must still bootstrap its frame.
        self.patient = False
        self._recent: Deque[tuple[int, float]] = deque(maxlen=4 * max_images)  # released (stamp, arrival)
        self._images: Deque[_Held] = deque()
        self._detections: Deque[_Held] = deque()
        self._released: List[Pair[I, D]] = []
        self._late: List[LateDetections[D]] = []
        self._newest_image_ns: Optional[int] = None

    def set_tolerance(self, tolerance_s: float) -> None:
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        self.tolerance_ns = int(round(tolerance_s * 1e9))

    def _close(self, a_ns: int, b_ns: int) -> bool:
        return abs(a_ns - b_ns) <= self.tolerance_ns

    def add_image(self, stamp_ns: int, image: I, now: float) -> None:
        held = _Held(stamp_ns, image, now)
        for det in list(self._detections):
            if self._close(det.stamp_ns, stamp_ns):
                self._detections.remove(det)
                held.detections, held.matched = det.item, True
                self._lags.append(0.0)
                break
        # Detections older than this image that matched nothing: their image will not come.
        for det in list(self._detections):
            if det.stamp_ns < stamp_ns - self.tolerance_ns:
                self._detections.remove(det)
                self._late.append(
                    LateDetections(det.stamp_ns, det.item, "no image with this stamp arrived before a newer image")
                )
        if self._newest_image_ns is None or stamp_ns > self._newest_image_ns:
            self._newest_image_ns = stamp_ns
        self._images.append(held)
        while len(self._images) > self.max_images:
            self._release(self._images.popleft())

    def add_detections(self, stamp_ns: int, detections: D, now: float) -> None:
        for img in self._images:
            if not img.matched and self._close(img.stamp_ns, stamp_ns):
                img.detections, img.matched = detections, True
                self._lags.append(max(0.0, now - img.arrived))
                return
        for released_ns, arrived in self._recent:
            if self._close(released_ns, stamp_ns):  # its image left without them: learn the lag
                self._lags.append(max(0.0, now - arrived))
                self._late.append(LateDetections(stamp_ns, detections, "its image was already released"))
                return
        if self._newest_image_ns is not None and stamp_ns < self._newest_image_ns - self.tolerance_ns:
            self._late.append(LateDetections(stamp_ns, detections, "its image was already released or never arrived"))
            return
        self._detections.append(_Held(stamp_ns, detections, now))
        while len(self._detections) > self.max_detections:
            old = self._detections.popleft()
            self._late.append(LateDetections(old.stamp_ns, old.item, "detection buffer full"))

    @property
    def image_hold(self) -> float:
        """Seconds an image currently waits for its detections: `image_hold_s` while `patient`, else 0."""
        return self.image_hold_s if self.patient else 0.0

    @property
    def detections_held(self) -> int:
        """Detection messages held: waiting for their image, or given up on and not popped yet."""
        return len(self._detections) + len(self._late)

    @property
    def detector_lag(self) -> Optional[float]:
        """The largest recently observed detector lag in seconds (None before the first)."""
        return max(self._lags) if self._lags else None

    def _release(self, held: _Held) -> None:
        self._released.append(Pair(held.stamp_ns, held.item, held.detections))
        if not held.matched:
            self._recent.append((held.stamp_ns, held.arrived))

    def pop_ready(self, now: float) -> Released[I, D]:
        """Images ready for processing (stamp order) and detections given up on since last call."""
        newest_det_ns = max((d.stamp_ns for d in self._detections), default=None)
        newest_matched_ns = max((i.stamp_ns for i in self._images if i.matched), default=None)
        hold = self.image_hold
        newer = [s for s in (newest_det_ns, newest_matched_ns) if s is not None]
        newest_evidence = max(newer) if newer else None
        while self._images:
            head = self._images[0]
            ready = (
                head.matched
                or now >= head.arrived + hold
                or (newest_evidence is not None and newest_evidence > head.stamp_ns + self.tolerance_ns)
            )
            if not ready:
                break
            self._release(self._images.popleft())
        while self._detections and now >= self._detections[0].arrived + self.detection_hold_s:
            old = self._detections.popleft()
            self._late.append(
                LateDetections(old.stamp_ns, old.item, f"no image with this stamp within {self.detection_hold_s:g} s")
            )
        out = Released(self._released, self._late)
        self._released, self._late = [], []
        return out

    def next_deadline(self) -> Optional[float]:
        """Earliest monotonic time at which `pop_ready` may release or drop something."""
        times = []
        if self._images:
            times.append(self._images[0].arrived + self.image_hold)
        if self._detections:
            times.append(self._detections[0].arrived + self.detection_hold_s)
        if self._released or self._late:
            times.append(float("-inf"))
        return min(times) if times else None

    def clear(self) -> tuple[int, int]:
        """Forget everything held (e.g. on `reset`); returns how many images and detection messages were
        forgotten, for the caller to count. The observed detector lags are kept: they describe the
        detector, not the scene."""
        images = len(self._images) + len(self._released)
        detections = (
            len(self._detections)
            + len(self._late)
            + sum(h.detections is not None for h in self._images)
            + sum(len(p.all_detections()) for p in self._released)
        )
        self._images.clear()
        self._detections.clear()
        self._recent.clear()
        self._released, self._late = [], []
        self._newest_image_ns = None
        return images, detections

    def __len__(self) -> int:
        return len(self._images) + len(self._detections)


class LatestFirst(Generic[I, D]):
    """Hand-off between the callbacks and the one worker: latest frame wins, detections always act.

    Keeps at most one waiting pair: a newer frame replaces the waiting one (counted in `dropped`), and
    the replaced frame's detections move to the newer frame (`Pair.carried`), so no detection is lost
    to a frame drop. Frames older than the last one taken are refused (`put` returns False; the
    caller keeps their detections for the next frame).
    """

    def __init__(self) -> None:
        self._waiting: Optional[Pair[I, D]] = None
        self.last_taken_ns: Optional[int] = None
        self.dropped = 0

    def put(self, pair: Pair[I, D]) -> bool:
        """Queue `pair`; False when it is older than the last frame taken (it is then dropped)."""
        if self.last_taken_ns is not None and pair.stamp_ns < self.last_taken_ns:
            self.dropped += 1
            return False
        if self._waiting is not None:
            self.dropped += 1
            pair.carried = [*self._waiting.all_detections(), *pair.carried]
        self._waiting = pair
        return True

    def take(self) -> Optional[Pair[I, D]]:
        pair, self._waiting = self._waiting, None
        if pair is not None:
            self.last_taken_ns = pair.stamp_ns
        return pair

    def clear(self) -> None:
        """Forget the waiting frame and the last stamp (after `reset` or a jump back in time)."""
        self._waiting = None
        self.last_taken_ns = None

    def __len__(self) -> int:
        return int(self._waiting is not None)
