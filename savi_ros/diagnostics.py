"""The node's counters and its /diagnostics status: what an operator's `rqt_robot_monitor` shows.

The level is ERROR while a tracker step failed within the recent window (and OK again once steps
succeed for that long): a passing fault must not leave the node reported broken for good. The
counters themselves are cumulative since start.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from savi_ros.stats import WINDOW_S, Stats


def tracking_status(
    stats: Stats,
    now: float,
    name: str,
    device: str,
    checkpoint: str,
    live_tracks: int,
    detector_lag: float | None = None,
    image_ages: dict[str, str] | None = None,
    dormant_tracks: int = 0,
) -> DiagnosticStatus:
    """The status of the last ``WINDOW_S`` seconds, with the cumulative counters as values, and the recent
    images' age on arrival (`savi_ros.transport`)."""
    recent = stats.window(now)
    fps = len(recent) / WINDOW_S
    mean_ms = sum(recent) / len(recent) if recent else 0.0
    max_ms = max(recent) if recent else 0.0
    status = DiagnosticStatus(name=name, hardware_id=device)
    status.level, status.message = DiagnosticStatus.OK, "ok"
    recent_errors = stats.recent_errors(now)
    if recent_errors:
        status.level = DiagnosticStatus.ERROR
        status.message = f"{recent_errors} tracker step(s) failed in the last {WINDOW_S:.0f} s (see log)"
    elif not recent:
        status.message = f"idle (no frames in the last {WINDOW_S:.0f} s)"
    values = dict(
        fps=f"{fps:.2f}",
        step_ms_mean=f"{mean_ms:.2f}",
        step_ms_max=f"{max_ms:.2f}",
        live_tracks=str(live_tracks),
        dormant_tracks=str(dormant_tracks),
        device=device,
        checkpoint=checkpoint,
        detector_lag_ms="n/a" if detector_lag is None else f"{1000 * detector_lag:.1f}",
        **(image_ages or {}),
        **{k: str(v) for k, v in stats.counters().items()},
    )
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
