"""The ROS-free pipeline the node and the bag tool share, driven directly with duck-typed messages and
an explicit clock: every image ends in exactly one counter, every detection message acts or is counted."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from savi_core.model.checkpoint import load_checkpoint
from savi_core.tracking.tracker import Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from savi_ros.pipeline import Pipeline, Settings

H, W = 24, 32
PIXELS = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def header(sec: float):
    return SimpleNamespace(stamp=SimpleNamespace(sec=int(sec), nanosec=int(round((sec % 1) * 1e9))), frame_id="cam")


def image(sec: float):
    return SimpleNamespace(
        header=header(sec), height=H, width=W, encoding="rgb8", is_bigendian=0, step=3 * W, data=PIXELS.tobytes()
    )


def detections(sec: float, *boxes):
    dets = []
    for x0, y0, x1, y1 in boxes:
        bbox = SimpleNamespace(
            center=SimpleNamespace(position=SimpleNamespace(x=(x0 + x1) / 2, y=(y0 + y1) / 2)),
            size_x=float(x1 - x0),
            size_y=float(y1 - y0),
        )
        dets.append(SimpleNamespace(id="", bbox=bbox, results=[]))
    return SimpleNamespace(header=header(sec), detections=dets)


def make_pipeline(model) -> Pipeline:
    """A pipeline around ``model`` whose warnings are kept in ``.warnings``; the node's clock (ns) is
    ``.clock[0]``, 0 (a sim clock before its first message) unless a test sets it."""
    warnings: list[tuple[str, str]] = []
    clock = [0]
    p = Pipeline(
        Tracker(model, TrackerConfig(min_mask_area=0, mask_threshold=0.0), device="cpu"),
        Settings(sync_tolerance=0.01, time_jump_reset=1.0, future_tolerance=5.0, max_image_pixels=10**6),
        lambda kind, text: warnings.append((kind, text)),
        lambda: clock[0],
    )
    p.warnings, p.clock = warnings, clock
    return p


@pytest.fixture()
def pipeline(tiny_checkpoint):
    return make_pipeline(load_checkpoint(tiny_checkpoint)[0])


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


def test_every_image_of_bursts_resets_jumps_and_restarts_ends_in_exactly_one_counter(pipeline):
    """Bursts (an image with detections, another 0.5 ms later, both filed before the worker runs), resets
    while images wait, a jump back in time, a restart (activation) with a frame waiting, a stale and an
    unsupported image: every image received is counted once, processed or dropped with a reason."""
    p, now, stamp = pipeline, 0.0, 10.0
    for i in range(11):
        if i % 4 == 0:
            p.reset()
        p.add_image(image(stamp), now)
        p.add_detections(detections(stamp, (2, 2, 12, 12)), now)
        p.add_image(image(stamp + 0.0005), now)
        if i % 3 == 2:
            p.restart()  # an activation while the burst waits
        run(p, now)
        stamp, now = stamp + 0.1, now + 0.1
    p.add_image(image(stamp - 5.0), now)  # far back: a jump, tracks start over
    p.add_image(image(stamp - 5.05), now)  # slightly older than the one before: stale
    p.add_image(SimpleNamespace(**{**vars(image(stamp)), "encoding": "yuv422"}), now)
    run(p, now + 1.0)
    c = p.stats
    assert c.images == 25 and c.time_jumps == 1 and c.unsupported_images == 1 and c.forgotten_frames > 0
    assert c.images_accounted() == c.images, c.counters()


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


WALL = 1_800_000_000.0  # the node's clock at the start of each camera below, in seconds


def camera(p: Pipeline, stamps: list[float], clocks: list[float]) -> list[bool]:
    """Images of ``stamps`` arriving when the node's clock reads ``clocks`` (the first with a detection);
    whether each was tracked (processed, with the track live)."""
    tracked = []
    for index, (stamp, clock) in enumerate(zip(stamps, clocks)):
        p.clock[0] = int(round(clock * 1e9))
        now = clock - WALL  # the pipeline's monotonic clock
        p.add_image(image(stamp), now)
        if index == 0:
            p.add_detections(detections(stamp, (2, 2, 12, 12)), now)
        tracked.append(run(p, now) == 1 and p.live_count == 1)
    return tracked


@pytest.mark.parametrize("offset", [0.0, -60.0, 60.0])  # the camera's clock minus the node's
def test_slow_and_paused_cameras_lose_no_frame_whatever_their_clock_offset(tiny_checkpoint, offset):
    slow = [WALL + 5.0 * i for i in range(4)]  # 0.2 Hz
    paused = [WALL + i / 30 for i in range(5)] + [WALL + 30 + i / 30 for i in range(5)]  # a 30 s pause
    for clocks in (slow, paused):
        p = make_pipeline(load_checkpoint(tiny_checkpoint)[0])
        arrival = [c + 0.01 for c in clocks]  # 10 ms transport
        assert camera(p, [c + offset for c in clocks], arrival) == [True] * len(clocks)
        assert p.stats.future_frames == 0 and p.stats.time_jumps == 0 and accounted(p) == len(clocks)


@pytest.mark.parametrize("offset", [0.0, -60.0, 60.0])
def test_a_stamp_an_hour_ahead_is_dropped_and_every_frame_after_it_tracked(tiny_checkpoint, offset):
    p = make_pipeline(load_checkpoint(tiny_checkpoint)[0])
    clocks = [WALL + 5.0 * i for i in range(6)]
    stamps = [c + offset for c in clocks]
    stamps[2] += 3600.0
    assert camera(p, stamps, clocks) == [True, True, False, True, True, True]
    assert p.stats.future_frames == 1 and p.stats.dropped_frames == 1 and accounted(p) == 6
    kind, text = p.warnings[-1]
    assert (
        kind == "future"
        and f"3605.0 s ahead of the newest image and {3600 + min(offset, 0):.1f} s ahead of the node's clock" in text
    )


def test_sim_time_and_a_replayed_bag(tiny_checkpoint):
    """Under use_sim_time the node's clock is the bag's --clock: a replay paused for a minute and resumed
    loses no frame; a bag stamped long ago replayed without --clock (the camera years behind the wall
    clock) neither; restarting the bag is a jump back in time (its rule: tracks end, and start over)."""
    sim = [1000.0 + i / 10 for i in range(5)] + [1000.5 + i / 10 for i in range(5)]  # /clock stands while paused
    p = make_pipeline(load_checkpoint(tiny_checkpoint)[0])
    assert camera(p, sim, sim) == [True] * 10
    old = [1_600_000_000.0 + 3 * i for i in range(4)]
    p = make_pipeline(load_checkpoint(tiny_checkpoint)[0])
    assert camera(p, old, [WALL + 3 * i for i in range(4)]) == [True] * 4
    p = make_pipeline(load_checkpoint(tiny_checkpoint)[0])
    looped = [1000.0, 1001.0, 1002.0, 1003.0, 1000.0, 1001.0]
    assert camera(p, looped, looped)[:4] == [True] * 4
    run(p, looped[-1] - WALL + 1.0)  # the new timeline's last image has waited out its hold for detections
    assert p.stats.time_jumps == 1 and p.stats.future_frames == 0 and accounted(p) == 6


def test_add_objects_start_tracks_on_the_next_image_without_any_detections(pipeline):
    ids, message = pipeline.add_objects([(2, 2, 12, 12)], [], ["cup"], ["5"])
    assert ids == [5] and "[5]" in message
    pipeline.add_image(image(1.0), 0.0)  # nothing tracked, but prompts pending: the image does not wait
    assert run(pipeline, 0.0) == 1 and pipeline.live_tracks() == {5: "cup"}
    ids, message = pipeline.add_objects([(20, 2, 30, 12), (2, 14, 12, 22)], [], [], ["9" * 5000, " 7 "])
    assert ids == [1, 2] and pipeline.stats.ignored_ids == 2  # not ids by the contract's rule: free ids instead
    assert "ignoring the id of 2 object(s)" in message and "(5000 characters)" in message and "' 7 '" in message
    assert pipeline.warnings[-1] == ("bad id", message.split("; ", 1)[1])
    with pytest.raises(ValueError, match="not points"):
        pipeline.add_objects([], [(3.0, 4.0)], [], [])
    with pytest.raises(ValueError, match="no boxes and no points"):
        pipeline.add_objects([], [], [], [])


def point(sec: float | None, x: float, y: float):
    """geometry_msgs/PointStamped (``sec`` given) or Point (a click, unstamped)."""
    p = SimpleNamespace(x=x, y=y, z=0.0)
    return p if sec is None else SimpleNamespace(header=header(sec), point=p)


def label_image(sec: float, labels: np.ndarray, encoding: str = "mono8"):
    data = labels.astype("<u2" if encoding == "16UC1" else np.uint8)
    return SimpleNamespace(
        header=header(sec),
        height=labels.shape[0],
        width=labels.shape[1],
        encoding=encoding,
        is_bigendian=0,
        step=data.strides[0],
        data=data.tobytes(),
    )


@pytest.fixture()
def points_pipeline(tiny_checkpoint):
    """A box model that takes points (random weights: only the pipeline's rules are under test)."""
    model, _ = load_checkpoint(tiny_checkpoint)
    model.config = dataclasses.replace(
        model.config, initializer=dataclasses.replace(model.config.initializer, points=True)
    )
    return make_pipeline(model)


def test_a_stamped_point_waits_for_its_image_and_a_late_one_acts_on_the_next_frame(points_pipeline):
    p = points_pipeline
    p.add_prompt_msg(point(2.0, 5.0, 6.0), 0.0)  # its image has not come yet: held
    p.add_image(image(1.0), 0.0)
    assert run(p, 0.0) == 1 and p.live_tracks() == {}  # image 1 is not the point's
    p.add_image(image(2.0), 0.1)
    assert run(p, 0.1) == 1 and list(p.live_tracks()) == [1] and p.stats.prompts == 1
    # A point for an image already processed acts on the next one, unless it lands on a live track.
    x, y = 30.0, 20.0
    on = p.tracker.track_at(x, y)
    p.add_prompt_msg(point(2.0, x, y), 0.2)
    p.add_image(image(3.0), 0.2)
    assert run(p, 0.2) == 1
    assert (p.stats.prompts, p.stats.prompts_on_tracks) == ((1, 1) if on else (2, 0))
    assert len(p.live_tracks()) == (1 if on else 2)
    assert any(k == "point on track" and f"live track {on}" in t for k, t in p.warnings) == bool(on)


def test_a_point_whose_stamp_matches_no_image_is_dropped_with_a_warning_after_the_hold(points_pipeline):
    p = points_pipeline
    p.add_image(image(1.0), 0.0)
    run(p, 0.0)
    p.add_prompt_msg(point(1.5, 5.0, 6.0), 0.0)  # between images: never matches
    p.add_image(image(2.0), 0.1)
    assert run(p, 0.1) == 1 and p.stats.prompts == 0 and p.stats.refused_prompts == 0  # still held
    assert p.next_deadline() == pytest.approx(1.0)
    assert p.next_pair(lambda: 1.2) is None
    assert p.stats.refused_prompts == 1 and p.live_tracks() == {}
    assert any(k == "prompt without image" and "stamp 1.500 s" in t for k, t in p.warnings)


def test_a_click_acts_on_the_next_image_and_bad_points_are_refused(points_pipeline):
    p = points_pipeline
    p.add_prompt_msg(point(None, 4.0, 4.0), 0.0)
    p.add_image(image(1.0), 0.0)  # nothing tracked, but a prompt waits: the image does not wait for detections
    assert run(p, 0.0) == 1 and list(p.live_tracks()) == [1]
    p.add_prompt_msg(point(None, float("nan"), 4.0), 0.1)
    assert p.stats.refused_prompts == 1 and p.warnings[-1][0] == "bad prompt" and "not finite" in p.warnings[-1][1]
    p.add_prompt_msg(point(None, W + 3.0, 4.0), 0.1)
    p.add_image(image(2.0), 0.1)
    assert run(p, 0.1) == 1 and p.stats.refused_prompts == 2 and list(p.live_tracks()) == [1]
    assert p.warnings[-1] == ("prompt outside", f"dropping point ({W + 3:g}, 4): outside the {W}x{H} image")


def test_mask_prompts_start_one_track_per_id_and_bad_masks_are_refused(pipeline):
    p = pipeline
    labels = np.zeros((H, W), np.uint16)
    labels[2:10, 3:9] = 7
    labels[12:20, 15:30] = 300
    p.add_prompt_msg(label_image(1.0, labels, "16UC1"), 0.0)
    p.add_image(image(1.0), 0.0)
    assert run(p, 0.0) == 1 and sorted(p.live_tracks()) == [7, 300] and p.stats.prompts == 2
    refused = [
        label_image(2.0, labels[:10], "16UC1"),  # not the image's size: dropped when its image comes
        label_image(2.0, np.zeros((H, W)), "mono8"),  # no object: refused at once
        SimpleNamespace(**{**vars(label_image(2.0, labels)), "encoding": "rgb8"}),
    ]
    for msg in refused:
        p.add_prompt_msg(msg, 0.1)
    assert p.stats.refused_prompts == 2
    assert "no object" in p.warnings[-2][1] and "not a label image" in p.warnings[-1][1]
    p.add_image(image(2.0), 0.1)
    assert run(p, 0.1) == 1 and p.stats.refused_prompts == 3 and sorted(p.live_tracks()) == [7, 300]
    assert p.warnings[-1] == ("prompt size", f"dropping mask with 1 object(s): {W}x10, the image is {W}x{H}")


def test_points_for_a_box_only_model_are_refused_with_a_warning(pipeline):
    pipeline.add_prompt_msg(point(0.0, 3.0, 3.0), 0.0)
    assert pipeline.stats.refused_prompts == 1
    assert pipeline.warnings[-1][1] == "refusing point (3, 3): this model takes boxes and masks, not points"


def test_settle_runs_the_trackers_restarts_of_freed_slots_under_the_tracker_lock(pipeline):
    """The worker settles the Tracker once a frame is published (`Tracker.settle`): under the lock that a
    service call (reset, remove_track) takes too."""
    tracker, held = pipeline.tracker, []
    settle = tracker.settle
    tracker.settle = lambda: held.append(pipeline._tracker_lock.locked()) or settle()
    pipeline.settle()
    assert held == [True]
