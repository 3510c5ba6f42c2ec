"""The ROS-free pipeline the node and the bag tool share, driven directly with duck-typed messages and
an explicit clock: every image ends in exactly one counter, every detection message acts or is counted."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from savi_core.checkpoint import load_checkpoint
from savi_core.tracker import Tracker
from savi_core.tracker_config import TrackerConfig
from savi_ros.pipeline import Pipeline, Settings

H, W = 24, 32
PIXELS = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def header(sec: float):
    return SimpleNamespace(stamp=SimpleNamespace(sec=int(sec), nanosec=int(round((sec % 1) * 1e9))), frame_id="cam")


def image(sec: float):
    return SimpleNamespace(header=header(sec), height=H, width=W, encoding="rgb8", is_bigendian=0, step=3 * W,
                           data=PIXELS.tobytes())


def detections(sec: float, *boxes):
    dets = []
    for x0, y0, x1, y1 in boxes:
        bbox = SimpleNamespace(center=SimpleNamespace(position=SimpleNamespace(x=(x0 + x1) / 2, y=(y0 + y1) / 2)),
                               size_x=float(x1 - x0), size_y=float(y1 - y0))
        dets.append(SimpleNamespace(id="", bbox=bbox, results=[]))
    return SimpleNamespace(header=header(sec), detections=dets)


@pytest.fixture()
def pipeline(tiny_checkpoint):
    model, _ = load_checkpoint(tiny_checkpoint)
    warnings: list[tuple[str, str]] = []
    p = Pipeline(Tracker(model, TrackerConfig(min_mask_area=0, mask_threshold=0.0), device="cpu"),
                 Settings(sync_tolerance=0.01, time_jump_reset=1.0, max_image_pixels=10**6),
                 lambda kind, text: warnings.append((kind, text)))
    p.warnings = warnings
    return p


def run(p: Pipeline, now: float) -> int:
    """Process everything released by ``now``; returns the frames processed."""
    done = 0
    while (pair := p.next_pair(lambda: now)) is not None:
        done += p.process(pair, lambda: now) is not None
    return done


def accounted(p: Pipeline) -> int:
    c = p.stats.counters()
    return c["processed"] + c["dropped_frames"] + c["unsupported_images"] + c["bad_images"] + c["oversized_images"]


def test_reset_counts_what_it_forgets(pipeline):
    pipeline.add_image(image(1.0), 0.0)
    pipeline.add_detections(detections(1.0, (2, 2, 12, 12)), 0.0)
    assert run(pipeline, 0.0) == 1 and pipeline.live_count == 1
    assert pipeline.reset() == [1] and pipeline.live_count == 0
    # Nothing tracked: images wait for their detections; reset comes while two wait, and detections too.
    pipeline.add_image(image(2.0), 1.0)
    pipeline.add_image(image(2.1), 1.1)
    pipeline.add_detections(detections(0.5, (20, 2, 30, 12)), 1.1)  # its image never came: acts late
    assert run(pipeline, 1.1) == 0
    pipeline.reset()
    assert accounted(pipeline) == 3 and pipeline.stats.counters()["dropped_detections"] == 1


def test_a_jump_back_counts_the_frame_of_the_old_timeline_still_waiting(pipeline):
    pipeline.add_image(image(100.0), 0.0)
    pipeline.add_detections(detections(100.0, (2, 2, 12, 12)), 0.0)
    assert run(pipeline, 0.0) == 1
    pipeline.add_image(image(100.1), 0.1)
    pipeline.add_image(image(3.0), 0.1)  # a restarted recording, released together with 100.1
    assert run(pipeline, 0.1) == 1
    assert pipeline.stats.time_jumps == 1 and accounted(pipeline) == 3
    assert any(kind == "time jump" for kind, _ in pipeline.warnings)


def test_a_failed_step_counts_its_detections_as_dropped(pipeline):
    pipeline.tracker._model.step = None  # any call fails, as a device fault would
    pipeline.add_image(image(1.0), 0.0)
    pipeline.add_detections(detections(1.0, (2, 2, 12, 12), (20, 2, 30, 12)), 0.0)
    assert run(pipeline, 0.0) == 0
    c = pipeline.stats.counters()
    assert c["step_errors"] == 1 and c["dropped_detections"] == 1 and c["processed"] == 0


def test_an_image_far_ahead_of_the_newest_is_dropped_and_later_frames_go_on(pipeline):
    pipeline.add_image(image(10.0), 0.0)
    pipeline.add_detections(detections(10.0, (2, 2, 12, 12)), 0.0)
    assert run(pipeline, 0.0) == 1
    pipeline.add_image(image(10.5), 1.0)
    assert run(pipeline, 1.0) == 1
    pipeline.add_image(image(2**31 - 1), 2.0)  # decades ahead of the newest image, tracks live: dropped
    assert run(pipeline, 2.0) == 0 and pipeline.stats.future_frames == 1
    pipeline.add_image(image(11.0), 3.0)
    assert run(pipeline, 3.0) == 1 and accounted(pipeline) == 4


def test_add_objects_start_tracks_on_the_next_image_without_any_detections(pipeline):
    ids, message = pipeline.add_objects([(2, 2, 12, 12)], [], ["cup"], ["5"])
    assert ids == [5] and "[5]" in message
    pipeline.add_image(image(1.0), 0.0)  # nothing tracked, but prompts pending: the image does not wait
    assert run(pipeline, 0.0) == 1 and pipeline.live_tracks() == {5: "cup"}
    with pytest.raises(ValueError, match="not points"):
        pipeline.add_objects([], [(3.0, 4.0)], [], [])
    with pytest.raises(ValueError, match="no boxes and no points"):
        pipeline.add_objects([], [], [], [])
