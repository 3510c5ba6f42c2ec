"""What the tracker does with its inputs, without ROS: stamp pairing, frame admission, decoding and
the `Tracker` step.

The live node (`savi_ros.tracker_node`) and the offline bag tracker (`savi_ros.bag`) both drive this
one class, so replaying a bag reproduces the node's behaviour: the same bootstrapping wait, the same
latest-first drops, late detections acting on the next frame, jumps in time, bad-input rejection and
counters. Only the clock differs: the node passes its monotonic arrival time, the bag tool the time
each message was recorded.

Messages are duck-typed (rclpy's or rosbags' `sensor_msgs/Image`, `CompressedImage`,
`vision_msgs/Detection2DArray`): only their fields are read. Thread-safe: callbacks may add inputs
while one worker takes and processes frames.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from savi_core.tracking.tracker import Prompt, Tracker, TrackResult
from savi_core.tracking import messages
from savi_core.tracking.messages import stamp_ns
from savi_core.tracking.track_ids import MAX_TRACK_ID, parse_track_id
from savi_ros.poison import Newest, ahead_of_clock_ns, is_poison
from savi_ros.stats import Stats
from savi_ros.sync import LatestFirst, Pair, StampMatcher

IMAGE_HOLD_S = 0.25  # how long an image waits for detections with its stamp (while nothing is tracked)
DETECTION_HOLD_S = 1.0  # how long detections wait for their image
MAX_HELD_IMAGES = 8
MAX_HELD_DETECTIONS = 16
MAX_LATE_DETECTIONS = 16  # detection messages waiting for the next processed frame
MAX_WARNED_ENCODINGS = 32  # beyond that, unsupported encodings are counted but not warned about by name
PROMPT_HOLD_S = 1.0  # how long a point or mask prompt waits for the image of its stamp
MAX_HELD_PROMPTS = 16
MAX_SHOWN_ID = 16  # characters of a refused id shown in a warning
SEEN_STAMPS = 256  # recent image stamps: a prompt for one of them acts on the next processed frame


@dataclass(frozen=True)
class Settings:
    """The node parameters the pipeline reads (their definitions: `savi_ros.params`)."""

    sync_tolerance: float
    time_jump_reset: float
    future_tolerance: float
    max_image_pixels: int

    @classmethod
    def from_params(cls, params: Any) -> "Settings":
        return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


@dataclass
class Frame:
    """One processed image: everything the node publishes for it."""

    header: Any
    rgb: np.ndarray
    result: TrackResult
    live_tracks: dict[int, str]
    dormant_tracks: dict[int, str]
    mask_threshold: float
    max_tracks: int

    @property
    def labelled_tracks(self) -> dict[int, str]:
        """What label_info lists: live and dormant tracks (a dormant id is still the object's)."""
        return {**self.live_tracks, **self.dormant_tracks}


# (kind, text): a throttled warning of that kind; the node logs it, the bag tool counts and prints it.
Warn = Callable[[str, str], None]
#: The kinds of failed steps (one per exception type) start with this: they are errors, not warnings.
STEP_FAILED = "step failed:"


@dataclass
class _HeldPrompt:
    """Point or mask prompts from one message, waiting for the image of their stamp (0: the next image)."""

    stamp_ns: int
    prompts: list[Prompt]
    arrived: float
    what: str  # "point (x, y)" or "mask with n object(s)", for log lines


def _shown(text: str) -> str:
    """A requested id for a log line: any string a detector sent, bounded."""
    return repr(text) if len(text) <= MAX_SHOWN_ID else f"{text[:MAX_SHOWN_ID]!r}... ({len(text)} characters)"


def _box(box_xyxy: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box_xyxy) + ")"


class Pipeline:
    """Inputs in (`add_image`, `add_detections`), frames out (`next_pair`, then `process`)."""

    def __init__(self, tracker: Tracker, settings: Settings, warn: Warn, clock_ns: Callable[[], int]) -> None:
        """``clock_ns``: the node's clock in ns (ROS time, sim time under use_sim_time; for a bag, the
        recording time), against which a stamp far in the future is judged (`savi_ros.poison`)."""
        self.cond = threading.Condition()  # guards matcher, queue, late detections, stats
        self._tracker_lock = threading.Lock()  # guards the Tracker (step vs reset/config changes)
        self._tracker = tracker
        self.settings = settings
        self._warn = warn
        self._clock_ns = clock_ns
        self.stats = Stats()
        self._warned_encodings: set[str] = set()
        self._late: deque[Any] = deque()
        self._matcher: StampMatcher = self._new_matcher()
        self.live_count = 0  # live tracks after the last step (under `cond`: read without waiting for a step)
        self.dormant_count = 0  # dormant tracks after the last step (likewise)
        self._newest: Optional[Newest] = None  # the newest admitted image: what a poison stamp is judged by
        self._queue: LatestFirst = LatestFirst()
        self._prompts: list[_HeldPrompt] = []
        self._seen: deque[int] = deque(maxlen=SEEN_STAMPS)  # stamps of recent images, processed or not

    def _new_matcher(self) -> StampMatcher:
        matcher = StampMatcher(
            self.settings.sync_tolerance, IMAGE_HOLD_S, DETECTION_HOLD_S, MAX_HELD_IMAGES, MAX_HELD_DETECTIONS
        )
        matcher.patient = True  # no tracks yet
        return matcher

    # ------------------------------------------------------------------ state

    @property
    def tracker(self) -> Tracker:
        return self._tracker

    @property
    def detector_lag(self) -> Optional[float]:
        with self.cond:
            return self._matcher.detector_lag

    def waiting_detections(self) -> int:
        """Detection messages received and not acted on yet (held for their image, or carried to the next
        frame): what a sender can wait on to order its messages."""
        with self.cond:
            return self._matcher.detections_held + len(self._late)

    def live_tracks(self) -> dict[int, str]:
        """{track id: class} now (waits for a running step)."""
        with self._tracker_lock:
            return dict(self._tracker.live_tracks)

    def labelled_tracks(self) -> dict[int, str]:
        """{track id: class} of the live and dormant tracks now, as label_info lists them."""
        with self._tracker_lock:
            return {**self._tracker.live_tracks, **self._tracker.dormant_tracks}

    def settle(self) -> None:
        """The Tracker's restarts of the slots the last step freed (`Tracker.settle`): called once the frame is
        published, so they are off its latency (the next step would run them first)."""
        with self._tracker_lock:
            self._tracker.settle()

    def restart(self) -> None:
        """Forget held and queued inputs, counted (activation after a pause); live tracks are kept."""
        with self.cond:
            self._forget_inputs()
            self._matcher.patient = not self._tracker.live_tracks

    def update(self, settings: Settings, **tracker_config: Any) -> None:
        """New settings and live Tracker config fields (parameter changes while running)."""
        self.settings = settings
        with self._tracker_lock:
            if tracker_config:
                self._tracker.config = dataclasses.replace(self._tracker.config, **tracker_config)
        with self.cond:
            self._matcher.set_tolerance(settings.sync_tolerance)

    def reset(self) -> list[int]:
        """End every track and forget held inputs, as the `reset` service does; returns the ended ids."""
        with self._tracker_lock:
            ended = self._tracker.reset()
        with self.cond:
            self._forget_inputs()
            self._matcher.patient = True
            self.live_count = self.dormant_count = 0
        return ended

    def remove_track(self, track_id: int) -> tuple[bool, str]:
        """End one track now, as the `remove_track` service does: (success, message)."""
        with self._tracker_lock:
            removed = self._tracker.remove_track(track_id)
            live = len(self._tracker.live_tracks)
            dormant = len(self._tracker.dormant_tracks)
        if not removed:
            return False, f"no live or dormant track {track_id}"
        with self.cond:
            self.live_count, self.dormant_count = live, dormant
            self._matcher.patient = not live
        return True, f"ended track {track_id}"

    def add_objects(
        self, boxes_xyxy: list, points_xy: list, class_ids: list[str], requested_ids: list[str]
    ) -> tuple[list[int], str]:
        """New tracks on the next processed image, as the `add_objects` service asks: (ids, message).
        ``class_ids`` and ``requested_ids`` run over the boxes, then the points (missing entries: "").
        A point on a live track's mask starts nothing: that track's id is returned for it.
        Raises ValueError, starting nothing, when something asked for cannot be done."""
        count = len(boxes_xyxy) + len(points_xy)
        if not count:
            raise ValueError("no boxes and no points")
        if len(class_ids) > count or len(requested_ids) > count:
            raise ValueError(f"{len(class_ids)} class_ids and {len(requested_ids)} ids for {count} object(s)")
        classes = list(class_ids) + [""] * (count - len(class_ids))
        ids = list(requested_ids) + [""] * (count - len(requested_ids))
        prompts = [Prompt(box_xyxy=tuple(box)) for box in boxes_xyxy] + [
            Prompt(point_xy=tuple(point)) for point in points_xy
        ]
        prompts = [dataclasses.replace(p, class_id=c, track_id=i) for p, c, i in zip(prompts, classes, ids)]
        ignored = self._check_ids(
            ids, [f"add_objects {'box' if p.box_xyxy is not None else 'point'} {n}" for n, p in enumerate(prompts)]
        )
        with self._tracker_lock:
            tracker = self._tracker
            if points_xy and "points" not in tracker.prompt_kinds:
                raise ValueError(
                    f"this model takes {' and '.join(tracker.prompt_kinds)} only, not points "
                    "(its slots are conditioned on boxes)"
                )
            on_track = {i: tracker.track_at(*p.point_xy) for i, p in enumerate(prompts) if p.point_xy is not None}
            on_track = {i: t for i, t in on_track.items() if t}
            started = iter(tracker.add_objects([p for i, p in enumerate(prompts) if i not in on_track]))
            given = [on_track[i] if i in on_track else next(started) for i in range(count)]
        with self.cond:
            self._matcher.patient = False  # the next image must not wait for detections: it starts these
            self.cond.notify()
        message = f"track(s) {[t for i, t in enumerate(given) if i not in on_track]} start on the next image"
        if on_track:
            message += "; " + ", ".join(
                f"point {i - len(boxes_xyxy)} is on live track {t}" for i, t in on_track.items()
            )
        if ignored:
            message += f"; {ignored}"
        return given, message

    def _check_ids(self, ids: list[str], names: list[str]) -> str:
        """Requested track ids that are not ids by the contract's rule (their tracks get the next free id):
        counted, and one throttled warning naming the first few; returns its text ("" when all are fine)."""
        bad = [f"{name} (id {_shown(text)})" for text, name in zip(ids, names) if text and parse_track_id(text) is None]
        if not bad:
            return ""
        with self.cond:
            self.stats.ignored_ids += len(bad)
        text = (
            f"ignoring the id of {len(bad)} object(s), not a decimal track id 1..{MAX_TRACK_ID}: "
            f"{'; '.join(bad[:3])}; they get the next free id"
        )
        self._warn("bad id", text)
        return text

    def add_prompts(self, stamp: int, prompts: list[Prompt], what: str, now: float) -> None:
        """Points or masks from a topic, for the image of ``stamp`` (0: the next image). Refused at once
        with a warning when the model cannot take them; otherwise they start their tracks with that image,
        on the next processed one when it was already processed or dropped, and are dropped with a
        warning when no image of their stamp arrives within PROMPT_HOLD_S."""
        kinds = self._tracker.prompt_kinds
        refused = sorted({p.kind for p in prompts} - set(kinds))
        if refused or not prompts:
            with self.cond:
                self.stats.refused_prompts += len(prompts)
            self._warn(
                f"prompt {refused}",
                f"refusing {what}: this model takes {' and '.join(kinds)}, not {' and '.join(refused)}",
            )
            return
        dropped = None
        with self.cond:
            if len(self._prompts) == MAX_HELD_PROMPTS:
                dropped = self._prompts.pop(0)
                self.stats.refused_prompts += len(dropped.prompts)
            self._prompts.append(_HeldPrompt(stamp, prompts, now, what))
            self._matcher.patient = False  # a prompt starts tracks by itself: images need not wait for detections
            self.cond.notify()
        if dropped is not None:
            self._warn("prompt overflow", f"dropping {dropped.what}: more than {MAX_HELD_PROMPTS} prompts waiting")

    def add_prompt_msg(self, msg: Any, now: float) -> None:
        """A prompt message: ``geometry_msgs/PointStamped`` (its stamp; 0 = the next image), an unstamped
        ``geometry_msgs/Point`` (a click: the next image) or a label-image ``sensor_msgs/Image``. A bad
        one (not finite, wrong encoding, no object) is refused with a warning."""
        try:
            if hasattr(msg, "encoding"):
                prompts = messages.prompts_from_mask_msg(msg)
                what = f"mask with {len(prompts)} object(s)"
            else:
                x, y = messages.point_from_msg(msg)
                prompts, what = [Prompt(point_xy=(x, y))], f"point ({x:g}, {y:g})"
        except ValueError as exc:
            with self.cond:
                self.stats.refused_prompts += 1
            self._warn("bad prompt", f"refusing a prompt: {exc}")
            return
        self.add_prompts(stamp_ns(msg.header.stamp) if hasattr(msg, "header") else 0, prompts, what, now)

    def _due_prompts(self, stamp: int) -> list[_HeldPrompt]:
        """The held prompts that act on the frame of ``stamp`` (under `cond`): stamp 0, this image's stamp,
        or an image already seen (processed or dropped)."""
        tolerance = int(self.settings.sync_tolerance * 1e9)

        def due(held: _HeldPrompt) -> bool:
            return (
                held.stamp_ns == 0
                or abs(held.stamp_ns - stamp) <= tolerance
                or (held.stamp_ns < stamp and any(abs(held.stamp_ns - s) <= tolerance for s in self._seen))
            )

        now_due = [held for held in self._prompts if due(held)]
        self._prompts = [held for held in self._prompts if not due(held)]
        return now_due

    def _expire_prompts(self, now: float) -> list[tuple[str, str]]:
        """Prompts whose image never came within PROMPT_HOLD_S: dropped (under `cond`)."""
        expired = [held for held in self._prompts if now - held.arrived > PROMPT_HOLD_S]
        self._prompts = [held for held in self._prompts if now - held.arrived <= PROMPT_HOLD_S]
        self.stats.refused_prompts += sum(len(held.prompts) for held in expired)
        return [
            (
                "prompt without image",
                f"dropping {held.what} at stamp {held.stamp_ns * 1e-9:.3f} s: no image "
                f"with that stamp within {PROMPT_HOLD_S:g} s",
            )
            for held in expired
        ]

    def _start_prompts(self, held: list[_HeldPrompt], height: int, width: int) -> list[tuple[str, str]]:
        """Hand due prompts to the Tracker before the step of a ``height x width`` image (under the tracker
        lock); returns the warnings. A point on a live track starts nothing."""
        warnings = []
        for item in held:
            prompts = []
            for prompt in item.prompts:
                if prompt.mask is not None and prompt.mask.shape != (height, width):
                    warnings.append(
                        (
                            "prompt size",
                            f"dropping {item.what}: {prompt.mask.shape[1]}x"
                            f"{prompt.mask.shape[0]}, the image is {width}x{height}",
                        )
                    )
                    break
                if prompt.point_xy is not None:
                    x, y = prompt.point_xy
                    if not (0 <= x < width and 0 <= y < height):
                        warnings.append(("prompt outside", f"dropping {item.what}: outside the {width}x{height} image"))
                        break
                    on = self._tracker.track_at(x, y)
                    if on:
                        with self.cond:
                            self.stats.prompts_on_tracks += 1
                        warnings.append(("point on track", f"{item.what} is on live track {on}: no new track"))
                        continue
                prompts.append(prompt)
            else:
                try:
                    started = self._tracker.add_objects(prompts) if prompts else []
                except ValueError as exc:
                    warnings.append(("prompt refused", f"dropping {item.what}: {exc}"))
                else:
                    with self.cond:
                        self.stats.prompts += len(started)
                    continue
            with self.cond:
                self.stats.refused_prompts += len(item.prompts)
        return warnings

    def _count_dropped(self) -> None:
        """dropped_frames: replaced or stale (the queue's count), far future, forgotten (under `cond`)."""
        self.stats.dropped_frames = self._queue.dropped + self.stats.future_frames + self.stats.forgotten_frames

    def _forget_inputs(self) -> None:
        """Drop every held, queued and late input (under `cond`), counted as dropped."""
        images, detections = self._matcher.clear()
        waiting = self._queue.take()
        if waiting is not None:
            images += 1
            detections += len(waiting.all_detections())
        self._queue.clear()
        self.stats.forgotten_frames += images
        self.stats.dropped_detections += detections + len(self._late)
        self._late.clear()
        self.stats.refused_prompts += sum(len(held.prompts) for held in self._prompts)
        self._prompts = []
        self._newest = None
        self._count_dropped()

    # ------------------------------------------------------------------ inputs

    def add_image(self, msg: Any, now: float, missed: int = 0) -> None:
        """File an image (raw or compressed); an unusable raw image is counted and warned about here.
        ``missed``: images of its publisher that never arrived before it (`savi_ros.transport.PublisherGaps`)."""
        with self.cond:
            self.stats.images += 1
            self.stats.missed_images += missed
        if not hasattr(msg, "format"):  # raw; a compressed image's encoding and size are known once decoded
            if msg.encoding not in messages.INPUT_ENCODINGS:
                with self.cond:
                    self.stats.unsupported_images += 1
                    first = (
                        msg.encoding not in self._warned_encodings
                        and len(self._warned_encodings) < MAX_WARNED_ENCODINGS
                    )
                    if first:
                        self._warned_encodings.add(msg.encoding)
                if first:
                    self._warn(
                        f"encoding {msg.encoding}",
                        f"dropping images with unsupported encoding '{msg.encoding}' (accepted: "
                        f"{', '.join(sorted(messages.INPUT_ENCODINGS))}); warned once per encoding",
                    )
                return
            if self._too_large(msg.width, msg.height):
                return
        with self.cond:
            self._matcher.add_image(stamp_ns(msg.header.stamp), msg, now)
            self._seen.append(stamp_ns(msg.header.stamp))
            self.cond.notify()

    def add_detections(self, msg: Any, now: float) -> None:
        with self.cond:
            self._matcher.add_detections(stamp_ns(msg.header.stamp), msg, now)
            self.cond.notify()

    def _too_large(self, width: int, height: int) -> bool:
        """More pixels than max_image_pixels: counted and warned about (the caller drops the image)."""
        if width * height <= self.settings.max_image_pixels:
            return False
        with self.cond:
            self.stats.oversized_images += 1
        self._warn(
            "oversized",
            f"dropping a {width}x{height} image: more than max_image_pixels ({self.settings.max_image_pixels})",
        )
        return True

    # ------------------------------------------------------------------ frames

    def next_pair(self, now: Callable[[], float], wait_s: float = 0.0) -> Optional[Pair]:
        """The next frame to process, with every detection that acts on it; None when there is none yet
        (after waiting up to ``wait_s`` for an input or a hold deadline). ``now`` is the pipeline's clock."""
        warnings: list[tuple[str, str]] = []
        jumped: list[Pair] = []
        with self.cond:
            warnings += self._expire_prompts(now())
            released = self._matcher.pop_ready(now())
            self._keep_late([late.detections for late in released.late_detections])
            for index, pair in enumerate(released.pairs):
                verdict = self._admit(pair)
                if verdict == "jump":
                    jumped = released.pairs[index:]
                    break
                if verdict:
                    warnings.append(verdict)
            self._count_dropped()
            pair = None if jumped else self._queue.take()
            if pair is not None and self._late:
                pair.carried.extend(self._late)
                self._late.clear()
            if pair is None and not jumped and not warnings and wait_s > 0:
                deadline = self.next_deadline()
                timeout = wait_s if deadline is None else min(wait_s, max(0.0, deadline - now()))
                self.cond.wait(timeout=timeout)
        for kind, text in warnings:
            self._warn(kind, text)
        if jumped:
            self._start_over(jumped, now)
            return self.next_pair(now)
        return pair

    def next_deadline(self) -> Optional[float]:
        """When (on the pipeline's clock) a held input is next released or given up on; None: nothing held."""
        with self.cond:
            deadlines = [held.arrived + PROMPT_HOLD_S for held in self._prompts]
            matcher = self._matcher.next_deadline()
            deadlines += [] if matcher is None else [matcher]
            return min(deadlines, default=None)

    def _keep_late(self, messages: list[Any]) -> None:
        """Detections that found no image act on the next processed frame (bounded; under `cond`)."""
        for message in messages:
            if len(self._late) == MAX_LATE_DETECTIONS:
                self._late.popleft()
                self.stats.dropped_detections += 1
            self._late.append(message)
            self.stats.late_detections += 1

    def _admit(self, pair: Pair) -> str | tuple[str, str]:
        """Queue a released pair (under `cond`): "" when queued, "jump" for a jump back in time that must
        end the tracks first, else (kind, warning) for a dropped frame (whose detections are kept)."""
        jump_ns = int(self.settings.time_jump_reset * 1e9)
        last = self._queue.last_taken_ns
        if last is not None and pair.stamp_ns < last - jump_ns:
            return "jump"
        # docs/INTERFACE.md: a poison stamp, while tracks are live; it does not become the newest image.
        newest, clock = self._newest, self._clock_ns()
        settings = self.settings
        if not self._matcher.patient and is_poison(
            pair.stamp_ns, clock, newest, settings.time_jump_reset, settings.future_tolerance
        ):
            self.stats.future_frames += 1
            self._count_dropped()
            self._keep_late(pair.all_detections())
            return "future", (
                f"dropping image at stamp {pair.stamp_ns * 1e-9:.3f} s: "
                f"{(pair.stamp_ns - newest.stamp_ns) * 1e-9:.1f} s ahead of the newest image and "
                f"{ahead_of_clock_ns(pair.stamp_ns, clock, newest) * 1e-9:.1f} s ahead of the node's "
                "clock (more than time_jump_reset and future_tolerance); its detections act on the "
                "next frame"
            )
        if newest is None or pair.stamp_ns >= newest.stamp_ns:
            self._newest = Newest(pair.stamp_ns, clock)
        if not self._queue.put(pair):
            self._keep_late(pair.all_detections())
            return "stale", (
                f"dropping image at stamp {pair.stamp_ns * 1e-9:.3f} s: older than the last processed "
                f"one ({last * 1e-9:.3f} s)"
            )
        return ""

    def _start_over(self, pairs: list[Pair], now: Callable[[], float]) -> None:
        """A jump back in time (a restarted recording, a sim clock reset): end every track and start again
        from ``pairs`` (the first image of the new timeline, and those released with it)."""
        with self._tracker_lock:
            ended = self._tracker.reset()
        with self.cond:
            last = self._queue.last_taken_ns or pairs[0].stamp_ns
            waiting = self._queue.take()  # a frame of the old timeline, admitted before the jump
            if waiting is not None:
                self.stats.forgotten_frames += 1
                self.stats.dropped_detections += len(waiting.all_detections())
            self._queue.clear()
            self.stats.dropped_detections += len(self._late)  # they belong to the old timeline
            self._late.clear()
            self._matcher.patient = True
            self.live_count = 0
            self._newest = None
            self._count_dropped()
            self.stats.time_jumps += 1
            for pair in pairs:
                self._admit(pair)
        self._warn(
            "time jump",
            f"time jumped back by {(last - pairs[0].stamp_ns) * 1e-9:.1f} s (more than "
            f"time_jump_reset {self.settings.time_jump_reset:g} s): ended tracks {ended}, "
            "starting over as after 'reset'",
        )

    def process(self, pair: Pair, now: Callable[[], float]) -> Optional[Frame]:
        """Decode the image, read its detections and step the Tracker; None when the frame was dropped
        (undecodable, too large: its detections then act on the next frame) or the step failed."""
        msg = pair.image
        try:
            rgb = messages.compressed_to_rgb8(msg) if hasattr(msg, "format") else messages.image_to_rgb8(msg)
        except ValueError as exc:
            with self.cond:
                self.stats.bad_images += 1
                self._keep_late(pair.all_detections())  # they still act, on the next good image
            self._warn("bad image", f"dropping image: {exc}")
            return None
        if hasattr(msg, "format") and self._too_large(rgb.shape[1], rgb.shape[0]):
            with self.cond:
                self._keep_late(pair.all_detections())
            return None
        detections = None
        detection_msgs = pair.all_detections()
        if detection_msgs:
            detections, rejected = [], []
            for message in detection_msgs:
                accepted, refused = messages.detections_from_msg(message)
                detections += accepted
                rejected += refused
            if rejected:
                with self.cond:
                    self.stats.bad_detections += len(rejected)
                self._warn("bad detection", f"rejected {len(rejected)} detection(s): {'; '.join(rejected[:3])}")
            self._check_ids([d.det_id for d in detections], [f"detection at {_box(d.box_xyxy)}" for d in detections])
        with self.cond:
            due = self._due_prompts(pair.stamp_ns)
        with self._tracker_lock:
            tracker = self._tracker
            prompt_warnings = self._start_prompts(due, rgb.shape[0], rgb.shape[1]) if due else []
            try:
                result = tracker.step(rgb, detections, stamp=pair.stamp_ns * 1e-9)
            except Exception as exc:  # keep serving: one bad step must not stop the tracker
                with self.cond:
                    self.stats.step_failed(now())
                    self.stats.dropped_detections += len(detection_msgs)
                failed = (
                    f"{STEP_FAILED} {type(exc).__name__}",
                    f"tracker step failed on the image at stamp "
                    f"{pair.stamp_ns * 1e-9:.3f} s: {type(exc).__name__}: {exc}",
                )
                for kind, text in [*prompt_warnings, failed]:
                    self._warn(kind, text)
                return None
            live = dict(tracker.live_tracks)
            frame = Frame(
                msg.header, rgb, result, live, tracker.dormant_tracks, tracker.config.mask_threshold, tracker.max_tracks
            )
        with self.cond:
            # Nothing tracked and no prompt waiting: wait the full hold for bootstrapping detections.
            self._matcher.patient = not live and not self._prompts
            self.live_count, self.dormant_count = len(live), len(frame.dormant_tracks)
            self.stats.revivals += len(result.revived)
            self.stats.reclaims += len(result.reclaimed)
            self.stats.expiries += len(result.expired)
            self.stats.processed += 1
            self.stats.step_ms.append((now(), result.timings.get("total", 0.0)))
        for kind, text in prompt_warnings:
            self._warn(kind, text)
        if result.ignored_detections:
            self._warn(
                "no free slot",
                f"{result.ignored_detections} new detection(s) ignored: no free slot (max_tracks {frame.max_tracks})",
            )
        return frame
