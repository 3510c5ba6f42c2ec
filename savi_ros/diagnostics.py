"""The node's counters and its /diagnostics status: what an operator's `rqt_robot_monitor` shows.

The level is ERROR while a tracker step failed within the recent window (and OK again once steps
succeed for that long): a passing fault must not leave the node reported broken for good. The
counters themselves are cumulative since start.
"""
from __future__ import annotations

from collections import deque

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

WINDOW_S = 5.0


class Stats:
    """Counters for logs and /diagnostics; mutated under the node's hand-off lock."""

    def __init__(self) -> None:
        self.processed = 0
        self.dropped_frames = 0          # replaced while waiting, or older than the last processed
        self.unsupported_images = 0
        self.bad_images = 0
        self.bad_detections = 0          # rejected one by one (not a finite box, not a finite score)
        self.dropped_detections = 0      # only when more late detections wait than the node keeps
        self.late_detections = 0         # found no image of their stamp: acted on the next processed frame
        self.future_frames = 0           # stamped too far ahead of the newest image while tracks were live
        self.time_jumps = 0              # jumps back in time that ended every track
        self.oversized_images = 0        # more pixels than max_image_pixels
        self.step_errors = 0
        self.step_ms: deque[tuple[float, float]] = deque(maxlen=1000)  # (monotonic end, ms)
        self.error_times: deque[float] = deque(maxlen=100)              # monotonic time of each failed step

    def step_failed(self, now: float) -> None:
        self.step_errors += 1
        self.error_times.append(now)

    def window(self, now: float, seconds: float = WINDOW_S) -> list[float]:
        return [ms for t, ms in self.step_ms if now - t <= seconds]

    def counters(self) -> dict[str, int]:
        return dict(processed=self.processed, dropped_frames=self.dropped_frames,
                    dropped_detections=self.dropped_detections, late_detections=self.late_detections,
                    unsupported_images=self.unsupported_images, bad_images=self.bad_images,
                    oversized_images=self.oversized_images, bad_detections=self.bad_detections,
                    time_jumps=self.time_jumps, step_errors=self.step_errors)


def tracking_status(stats: Stats, now: float, name: str, device: str, checkpoint: str, live_tracks: int,
                    detector_lag: float | None = None) -> DiagnosticStatus:
    """The status of the last ``WINDOW_S`` seconds, with the cumulative counters as values."""
    recent = stats.window(now)
    fps = len(recent) / WINDOW_S
    mean_ms = sum(recent) / len(recent) if recent else 0.0
    max_ms = max(recent) if recent else 0.0
    status = DiagnosticStatus(name=name, hardware_id=device)
    status.level, status.message = DiagnosticStatus.OK, "ok"
    recent_errors = sum(1 for t in stats.error_times if now - t <= WINDOW_S)
    if recent_errors:
        status.level = DiagnosticStatus.ERROR
        status.message = f"{recent_errors} tracker step(s) failed in the last {WINDOW_S:.0f} s (see log)"
    elif not recent:
        status.message = f"idle (no frames in the last {WINDOW_S:.0f} s)"
    values = dict(fps=f"{fps:.2f}", step_ms_mean=f"{mean_ms:.2f}", step_ms_max=f"{max_ms:.2f}",
                  live_tracks=str(live_tracks), device=device, checkpoint=checkpoint,
                  detector_lag_ms="n/a" if detector_lag is None else f"{1000 * detector_lag:.1f}",
                  **{k: str(v) for k, v in stats.counters().items()})
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
