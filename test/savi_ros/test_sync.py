"""StampMatcher / LatestFirst rules (docs/INTERFACE.md), without ROS."""

import pytest

from savi_ros.sync import LatestFirst, Pair, StampMatcher

MS = 1_000_000  # ns


def _matcher(patient: bool = True, **kw):
    kw.setdefault("tolerance_s", 0.01)
    kw.setdefault("image_hold_s", 0.25)
    kw.setdefault("detection_hold_s", 1.0)
    m = StampMatcher(**kw)
    m.patient = patient
    return m


def released(out):
    return [(p.image, p.detections) for p in out.pairs]


def late(out):
    return [(d.stamp_ns, d.detections) for d in out.late_detections]


# ------------------------------------------------------------------ nothing tracked: images wait


def test_detections_after_image_match_that_image():
    m = _matcher()
    m.add_image(100 * MS, "img100", now=0.0)
    assert m.pop_ready(0.05).pairs == []  # held, waiting for detections
    m.add_detections(105 * MS, "dets", now=0.06)  # within 10 ms tolerance
    out = m.pop_ready(0.06)
    assert released(out) == [("img100", "dets")] and out.late_detections == []


def test_detections_before_image_are_held_until_it_arrives():
    m = _matcher()
    m.add_detections(200 * MS, "dets", now=0.0)
    assert m.pop_ready(0.5).pairs == [] and len(m) == 1 and m.detections_held == 1
    m.add_image(200 * MS, "img", now=0.6)
    assert released(m.pop_ready(0.6)) == [("img", "dets")]
    assert len(m) == 0 and m.detections_held == 0


def test_detections_older_than_the_newest_image_are_held_as_late_until_popped():
    m = _matcher(patient=False)
    m.add_image(300 * MS, "img", now=0.0)
    m.add_detections(100 * MS, "old", now=0.0)
    assert len(m) == 1 and m.detections_held == 1
    assert late(m.pop_ready(0.0)) == [(100 * MS, "old")] and m.detections_held == 0


def test_image_without_detections_released_after_hold():
    m = _matcher(image_hold_s=0.2)
    m.add_image(1 * MS, "a", now=1.0)
    assert m.pop_ready(1.19).pairs == []
    assert m.next_deadline() == pytest.approx(1.2)
    assert released(m.pop_ready(1.2)) == [("a", None)]


def test_outside_tolerance_does_not_match():
    m = _matcher(tolerance_s=0.01)
    m.add_image(100 * MS, "img", now=0.0)
    m.add_detections(120 * MS, "dets", now=0.0)
    # newer detections exist -> older image released at once, without detections
    assert released(m.pop_ready(0.0)) == [("img", None)]
    assert len(m) == 1  # the detections still wait for their own image


def test_newer_matched_image_releases_older_waiting_images_in_order():
    m = _matcher()
    m.add_image(1 * MS, "a", now=0.0)
    m.add_image(50 * MS, "b", now=0.0)
    m.add_detections(50 * MS, "db", now=0.0)
    assert released(m.pop_ready(0.0)) == [("a", None), ("b", "db")]


def test_a_detection_matches_only_one_image():
    m = _matcher(tolerance_s=0.01)
    m.add_image(100 * MS, "a", now=0.0)
    m.add_image(105 * MS, "b", now=0.0)
    m.add_detections(103 * MS, "d", now=0.0)
    assert released(m.pop_ready(0.3)) == [("a", "d"), ("b", None)]


# ------------------------------------------------------------------ tracks live: images never wait


def test_once_tracks_are_live_images_are_released_at_once():
    m = _matcher(patient=False)
    assert m.image_hold == 0.0
    m.add_image(100 * MS, "a", now=0.0)
    assert released(m.pop_ready(0.0)) == [("a", None)]
    m.add_detections(100 * MS, "da", now=0.02)  # the detector answers after the image left
    out = m.pop_ready(0.02)
    assert out.pairs == [] and late(out) == [(100 * MS, "da")]
    assert "already released" in out.late_detections[0].reason
    assert m.detector_lag == pytest.approx(0.02)  # still learnt, for reporting


def test_detections_that_arrive_first_still_pair_when_live():
    m = _matcher(patient=False)
    m.add_detections(200 * MS, "d", now=0.0)
    m.add_image(200 * MS, "img", now=0.001)
    assert released(m.pop_ready(0.001)) == [("img", "d")]


# ------------------------------------------------------------------ detections are never lost


def test_unknown_stamp_detections_are_held_then_handed_on():
    m = _matcher(detection_hold_s=1.0)
    m.add_detections(999 * MS, "ghost", now=0.0)
    out = m.pop_ready(0.5)
    assert out.late_detections == [] and len(m) == 1
    out = m.pop_ready(1.0)
    assert late(out) == [(999 * MS, "ghost")] and "1 s" in out.late_detections[0].reason
    assert len(m) == 0


def test_detections_older_than_the_newest_image_are_handed_on_at_once():
    m = _matcher()
    m.add_image(500 * MS, "img", now=0.0)
    m.add_detections(100 * MS, "late", now=0.0)
    assert late(m.pop_ready(0.0)) == [(100 * MS, "late")]


def test_waiting_detections_handed_on_when_a_newer_image_arrives():
    """The burst case: an image with detections lost in transport, a newer image arrives."""
    m = _matcher()
    m.add_detections(100 * MS, "d", now=0.0)
    m.add_image(300 * MS, "img", now=0.0)
    out = m.pop_ready(0.0)
    assert late(out) == [(100 * MS, "d")] and "no image with this stamp" in out.late_detections[0].reason


def test_buffers_are_bounded():
    m = _matcher(max_images=3, max_detections=2)
    for i in range(5):
        m.add_image(i * MS * 100, f"i{i}", now=0.0)
    # two oldest released early (without detections) to keep the buffer at 3
    assert [p.image for p in m.pop_ready(0.0).pairs] == ["i0", "i1"]
    m.clear()
    for i in range(4):
        m.add_detections((10 + i) * 1000 * MS, f"d{i}", now=0.0)
    out = m.pop_ready(0.0)
    assert late(out) == [(10_000 * MS, "d0"), (11_000 * MS, "d1")]
    assert [d.reason for d in out.late_detections] == ["detection buffer full"] * 2
    assert len(m) == 2


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="tolerance_s"):
        StampMatcher(tolerance_s=-1)
    with pytest.raises(ValueError, match="buffer"):
        StampMatcher(tolerance_s=0.0, max_images=0)


# ------------------------------------------------------------------ latest-first hand-off


def test_latest_first_replaces_waiting_frame_and_counts_drop():
    q = LatestFirst()
    q.put(Pair(1, "a"))
    q.put(Pair(2, "b"))
    assert q.dropped == 1
    assert q.take().image == "b"
    assert q.take() is None


def test_a_dropped_frames_detections_move_to_the_frame_that_replaced_it():
    q = LatestFirst()
    q.put(Pair(1, "a", detections="d1"))
    q.put(Pair(2, "b"))
    q.put(Pair(3, "c", detections="d3"))
    assert q.dropped == 2 and len(q) == 1
    taken = q.take()
    assert taken.image == "c" and taken.all_detections() == ["d1", "d3"]


def test_latest_first_refuses_frames_older_than_last_taken():
    q = LatestFirst()
    q.put(Pair(10, "a"))
    q.take()
    assert q.put(Pair(5, "old")) is False
    assert q.dropped == 1 and len(q) == 0
    q.clear()
    assert q.put(Pair(5, "after reset")) is True
