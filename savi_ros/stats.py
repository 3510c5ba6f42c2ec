"""The tracker's counters: every image ends in exactly one of them, every detection message acts or is
counted as dropped. ROS-free, so the live node and the offline bag tracker count alike."""

from __future__ import annotations

from collections import deque

WINDOW_S = 5.0


class Stats:
    """Cumulative counters plus recent step times and step errors (mutated under the pipeline's lock)."""

    def __init__(self) -> None:
        self.images = 0  # received: each ends in exactly one of the image counters below
        self.missed_images = 0  # sent but never received (replaced in the keep-last-1 queue, lost in transport)
        self.processed = 0
        self.dropped_frames = 0  # replaced while waiting, older than the last processed, far future, forgotten
        self.forgotten_frames = 0  # held or waiting when `reset` or a jump back in time started over
        self.unsupported_images = 0
        self.bad_images = 0
        self.bad_detections = 0  # rejected one by one (not a finite box, not a finite score)
        self.ignored_ids = 0  # requested track ids that are not ids (their objects got a free id)
        self.dropped_detections = 0  # only when more late detections wait than the node keeps
        self.late_detections = 0  # found no image of their stamp: acted on the next processed frame
        self.future_frames = 0  # poison stamps (savi_ros.poison) dropped while tracks were live
        self.time_jumps = 0  # jumps back in time that ended every track
        self.oversized_images = 0  # more pixels than max_image_pixels
        self.step_errors = 0  # one per image whose tracker step failed
        self.prompts = 0  # objects asked for by point or mask topics that started a track
        self.prompts_on_tracks = 0  # points that fell on a live track (no duplicate started)
        self.refused_prompts = 0  # prompts refused: bad, not for this model, no image, no free slot
        self.revivals = 0  # dormant tracks live again (a detection or prompt matched them)
        self.reclaims = 0  # lost tracks moved onto a new detection's or prompt's slot by their look
        self.expiries = 0  # dormant tracks that ended when their dormant_seconds ran out
        self.step_ms: deque[tuple[float, float]] = deque(maxlen=1000)  # (monotonic end, ms)
        self.error_times: deque[float] = deque(maxlen=100)  # monotonic time of each failed step

    def images_accounted(self) -> int:
        """Images that ended in a counter: equals ``images`` whenever none is held or being processed."""
        return (
            self.processed
            + self.dropped_frames
            + self.unsupported_images
            + self.bad_images
            + self.oversized_images
            + self.step_errors
        )

    def step_failed(self, now: float) -> None:
        self.step_errors += 1
        self.error_times.append(now)

    def window(self, now: float, seconds: float = WINDOW_S) -> list[float]:
        return [ms for t, ms in self.step_ms if now - t <= seconds]

    def recent_errors(self, now: float, seconds: float = WINDOW_S) -> int:
        return sum(1 for t in self.error_times if now - t <= seconds)

    def counters(self) -> dict[str, int]:
        return dict(
            images=self.images,
            missed_images=self.missed_images,
            processed=self.processed,
            dropped_frames=self.dropped_frames,
            future_frames=self.future_frames,
            forgotten_frames=self.forgotten_frames,
            dropped_detections=self.dropped_detections,
            late_detections=self.late_detections,
            unsupported_images=self.unsupported_images,
            bad_images=self.bad_images,
            oversized_images=self.oversized_images,
            bad_detections=self.bad_detections,
            ignored_ids=self.ignored_ids,
            time_jumps=self.time_jumps,
            step_errors=self.step_errors,
            prompts=self.prompts,
            prompts_on_tracks=self.prompts_on_tracks,
            refused_prompts=self.refused_prompts,
            revivals=self.revivals,
            reclaims=self.reclaims,
            expiries=self.expiries,
        )
