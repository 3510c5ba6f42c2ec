"""bench/profile_step.py --detections: detection frames' parts are timed inside real steps and told apart
from plain frames (a slot restart happens on detection frames only), and the Tracker's helpers are left as
they were."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_detection_profile_times_restarts_on_detection_frames_only():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile_step.py"), "--detections", "--size", "96x128",
         "--repeats", "12", "--threads", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Enough detection frames that some re-anchor a drifted track (and restart slots) with the shipped model.
    rows = {line[:36].strip(): line[36:].split() for line in done.stdout.splitlines()[2:]}
    assert "12 detection and 60 plain frames" in done.stdout
    restart = [float(v) for v in rows["slot restarts (init_slots_for)"]]  # wall: det, plain, extra; CPU: same; ran
    assert restart[1] == 0 and restart[4] == 0  # medians on plain frames
    assert restart[6] > 0 and restart[7] == 0  # detection and plain frames that restarted slots
    assert float(rows["start_tracks"][0]) > float(rows["start_tracks"][1])
    step = [float(v) for v in rows["Tracker.step"]]
    assert step[0] > 0 and step[1] > 0
