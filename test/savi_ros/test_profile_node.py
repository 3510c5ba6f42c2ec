"""bench/profile_node.py's summary: frames stepped with detections and without are summarised apart, the
slowest 2% beside them, with the collector's pauses inside each frame."""

import json

from test.scripts import load_script


profile_node = load_script("bench/profile_node.py")


def test_summary_splits_frames_stepped_with_detections_from_the_others(tmp_path):
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
    assert step.split()[1:10] == ["15.00", "(", "20.00)", "20.00", "(", "20.00)", "10.00", "(", "10.00)"]
    model = next(line for line in text.splitlines() if "tracker_model_ms" in line)
    assert model.split()[-9:-3] == ["15.00", "(", "15.00)", "5.00", "(", "5.00)"]


def test_summary_shows_the_slowest_frames_and_the_collector_pauses_inside_them(tmp_path):
    ms = 1_000_000
    # 100 frames 100 ms apart; frames 7 (with detections) and 40 take 50 and 60 ms from the client's publish to
    # the node's, the others 20.
    frames = {
        str(i): {
            "source": i * 100 * ms,
            "received": i * 100 * ms + ms,
            "published": i * 100 * ms + {7: 50, 40: 60}.get(i, 20) * ms,
            "detections": 3 if i == 7 else 0,
        }
        for i in range(100)
    }
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    # A 12 ms pause inside frame 7 (from 710 to 722 ms) and one between frames, inside none of them.
    (tmp_path / "gc.json").write_text(json.dumps([[710 * ms, 722 * ms], [760 * ms, 790 * ms]]))
    text = profile_node.summary(tmp_path)
    assert "the slowest 2% (2): 1 with detections" in text
    total = next(line for line in text.splitlines() if "client publish -> published" in line)
    assert total.split()[-3:] == ["55.00", "(", "50.00)"]  # the slowest 2%: frames 7 and 40
    pauses = next(line for line in text.splitlines() if "gc_pauses_ms" in line)
    assert pauses.split()[1:4] == ["0.00", "(", "0.00)"]  # all frames: most had no pause
    assert pauses.split()[4:7] == ["12.00", "(", "12.00)"]  # the frame with detections: frame 7
