"""StampMatcher / LatestFirst rules, without ROS."""
import pytest

from savi_ros.sync import LatestFirst, Pair, StampMatcher

MS = 1_000_000  # ns


def _matcher(**kw):
    kw.setdefault("tolerance_s", 0.01)
    kw.setdefault("image_hold_s", 0.25)
    kw.setdefault("detection_hold_s", 1.0)
    return StampMatcher(**kw)


def test_detections_after_image_match_that_image():
    m = _matcher()
    m.add_image(100 * MS, "img100", now=0.0)
    assert m.pop_ready(0.05).pairs == []          # held, waiting for detections
    m.add_detections(105 * MS, "dets", now=0.06)  # within 10 ms tolerance
    out = m.pop_ready(0.06)
    assert [(p.stamp_ns, p.image, p.detections) for p in out.pairs] == [(100 * MS, "img100", "dets")]
    assert out.dropped_detections == []


def test_detections_before_image_are_held_until_it_arrives():
    m = _matcher()
    m.add_detections(200 * MS, "dets", now=0.0)
    assert m.pop_ready(0.5).pairs == [] and len(m) == 1
    m.add_image(200 * MS, "img", now=0.6)
    assert [(p.image, p.detections) for p in m.pop_ready(0.6).pairs] == [("img", "dets")]
    assert len(m) == 0


def test_image_without_detections_released_after_hold():
    m = _matcher(image_hold_s=0.2)
    m.add_image(1 * MS, "a", now=1.0)
    assert m.pop_ready(1.19).pairs == []
    assert m.next_deadline() == pytest.approx(1.2)
    pairs = m.pop_ready(1.2).pairs
    assert [(p.image, p.detections) for p in pairs] == [("a", None)]


def test_hold_adapts_to_the_observed_detector_lag():
    m = _matcher(image_hold_s=0.25, hold_margin_s=0.01)
    assert m.image_hold == 0.25  # nothing observed yet: the full hold
    m.add_image(100 * MS, "a", now=0.0)
    m.add_detections(100 * MS, "d", now=0.02)  # detector answered 20 ms after the image
    assert m.pop_ready(0.02).pairs[0].detections == "d"
    assert m.image_hold == pytest.approx(0.05)
    m.add_image(200 * MS, "b", now=1.0)
    assert m.pop_ready(1.04).pairs == []
    assert [p.image for p in m.pop_ready(1.05).pairs] == ["b"]  # not 0.25 s later
    m.add_image(300 * MS, "c", now=2.0)
    assert [p.image for p in m.pop_ready(2.05).pairs] == ["c"]
    m.add_image(400 * MS, "e", now=2.1)
    m.add_detections(300 * MS, "slow", now=2.2)  # the detector got slower: too late for "c" ...
    out = m.pop_ready(2.2)
    assert [d.stamp_ns for d in out.dropped_detections] == [300 * MS] and out.pairs == []
    assert m.image_hold == pytest.approx(0.25)  # ... but the lag is learnt (2 * 0.2 + 0.01, capped)


def test_patient_matcher_waits_the_full_hold_despite_a_fast_detector_history():
    m = _matcher(image_hold_s=0.25, hold_margin_s=0.01)
    m.add_image(100 * MS, "a", now=0.0)
    m.add_detections(100 * MS, "d", now=0.01)  # learnt: the detector answers in 10 ms
    m.pop_ready(0.01)
    assert m.image_hold == pytest.approx(0.03)
    m.patient = True  # nothing is tracked (e.g. after reset): a new scene's first answer may be slower
    assert m.image_hold == 0.25
    m.add_image(200 * MS, "first", now=1.0)
    assert m.pop_ready(1.04).pairs == []  # the adaptive 30 ms would have released it without detections
    m.add_detections(200 * MS, "boxes", now=1.05)
    assert [(p.image, p.detections) for p in m.pop_ready(1.05).pairs] == [("first", "boxes")]
    m.patient = False
    assert m.image_hold == pytest.approx(0.11)  # adaptive again: 2 * 50 ms + 10 ms


def test_outside_tolerance_does_not_match():
    m = _matcher(tolerance_s=0.01)
    m.add_image(100 * MS, "img", now=0.0)
    m.add_detections(120 * MS, "dets", now=0.0)
    # newer detections exist -> older image released at once, without detections
    out = m.pop_ready(0.0)
    assert [(p.image, p.detections) for p in out.pairs] == [("img", None)]
    assert len(m) == 1  # the detections still wait for their own image


def test_newer_matched_image_releases_older_waiting_images_in_order():
    m = _matcher()
    m.add_image(1 * MS, "a", now=0.0)
    m.add_image(50 * MS, "b", now=0.0)
    m.add_detections(50 * MS, "db", now=0.0)
    pairs = m.pop_ready(0.0).pairs
    assert [(p.image, p.detections) for p in pairs] == [("a", None), ("b", "db")]


def test_unknown_stamp_detections_held_then_dropped():
    m = _matcher(detection_hold_s=1.0)
    m.add_detections(999 * MS, "ghost", now=0.0)
    out = m.pop_ready(0.5)
    assert out.dropped_detections == [] and len(m) == 1
    out = m.pop_ready(1.0)
    assert [d.stamp_ns for d in out.dropped_detections] == [999 * MS]
    assert "1 s" in out.dropped_detections[0].reason
    assert len(m) == 0


def test_detections_older_than_newest_image_dropped_at_once():
    m = _matcher()
    m.add_image(500 * MS, "img", now=0.0)
    m.add_detections(100 * MS, "late", now=0.0)
    out = m.pop_ready(0.0)
    assert [d.stamp_ns for d in out.dropped_detections] == [100 * MS]
    assert "late" in out.dropped_detections[0].reason


def test_waiting_detections_dropped_when_newer_image_arrives():
    m = _matcher()
    m.add_detections(100 * MS, "d", now=0.0)
    m.add_image(300 * MS, "img", now=0.0)
    out = m.pop_ready(0.0)
    assert [d.stamp_ns for d in out.dropped_detections] == [100 * MS]


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
    assert [d.reason for d in out.dropped_detections] == ["detection buffer full"] * 2
    assert len(m) == 2


def test_a_detection_matches_only_one_image():
    m = _matcher(tolerance_s=0.01)
    m.add_image(100 * MS, "a", now=0.0)
    m.add_image(105 * MS, "b", now=0.0)
    m.add_detections(103 * MS, "d", now=0.0)
    pairs = m.pop_ready(0.3).pairs
    assert [(p.image, p.detections) for p in pairs] == [("a", "d"), ("b", None)]


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="tolerance_s"):
        StampMatcher(tolerance_s=-1)
    with pytest.raises(ValueError, match="buffer"):
        StampMatcher(tolerance_s=0.0, max_images=0)


def test_latest_first_replaces_waiting_frame_and_counts_drop():
    q = LatestFirst()
    q.put(Pair(1, "a"))
    q.put(Pair(2, "b"))
    assert q.dropped == 1
    assert q.take().image == "b"
    assert q.take() is None


def test_latest_first_keeps_frame_with_detections_then_latest():
    q = LatestFirst()
    q.put(Pair(1, "a", detections="d"))
    q.put(Pair(2, "b"))
    q.put(Pair(3, "c"))
    assert q.dropped == 1  # only "b"
    assert [q.take().image, q.take().image] == ["a", "c"]
    q.put(Pair(4, "e"))
    q.put(Pair(5, "f", detections="d5"))  # newer detections replace everything waiting
    assert q.dropped == 2
    assert q.take().image == "f" and q.take() is None


def test_latest_first_refuses_frames_older_than_last_taken():
    q = LatestFirst()
    q.put(Pair(10, "a"))
    q.take()
    assert q.put(Pair(5, "old")) is False
    assert q.dropped == 1 and len(q) == 0
    q.clear()
    assert q.put(Pair(5, "after reset")) is True
