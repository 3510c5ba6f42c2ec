"""bench/profile_node.py's summary: frames stepped with detections and without are summarised apart."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_summary_splits_frames_stepped_with_detections_from_the_others(tmp_path):
    spec = importlib.util.spec_from_file_location("profile_node", ROOT / "bench" / "profile_node.py")
    profile_node = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile_node)
    ms = 1_000_000
    frames = {
        str(i): {"received": 0, "step_start": 1 * ms, "step_end": (11 if i % 2 else 21) * ms, "published": 30 * ms,
                 "detections": i % 2 == 0 and 3, "tracker_model_ms": 5.0 if i % 2 else 15.0}
        for i in range(6)
    }  # fmt: skip
    frames["6"] = {"received": 0}  # never published: left out
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    text = profile_node.summary(tmp_path)
    assert "6 published frames, 3 of them stepped with detections" in text
    step = next(line for line in text.splitlines() if line.strip().startswith("Tracker.step"))
    assert step.split()[1:] == ["15.00", "(", "20.00)", "20.00", "(", "20.00)", "10.00", "(", "10.00)"]
    model = next(line for line in text.splitlines() if "tracker_model_ms" in line)
    assert model.split()[-6:] == ["15.00", "(", "15.00)", "5.00", "(", "5.00)"]
