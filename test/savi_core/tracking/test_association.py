"""Detections against live tracks: one-to-one, class-aware, shrunken tracks kept, duplicates dropped."""

import numpy as np

from savi_core.tracking.association import COVERED, SAME_OBJECT_IOU, associate
from savi_core.tracking.geometry import box_iou_xyxy


def test_one_to_one_beats_greedy_best_overlap():
    """Detection 0 overlaps both tracks, best with track 0; detection 1 overlaps only track 0. Greedy would
    give track 0 to detection 0 and start a duplicate of track 0's object; the assignment pairs both."""
    tracks = np.array([[0, 0, 10, 10], [6, 0, 16, 10]], float)
    dets = np.array([[3, 0, 13, 10], [0, 0, 9, 10]], float)
    found = associate(dets, ["", ""], tracks, ["", ""], 0.3)
    assert found.matches == {0: 1, 1: 0} and found.new == [] and found.duplicates == []


def test_a_shrunken_track_inside_a_fresh_box_is_its_object_but_a_tracked_big_object_keeps_its_own():
    # A track whose mask shrank to a corner of its object: IoU 0.16 with the fresh box, all inside it.
    shrunk = associate(np.array([[0, 0, 20, 20]], float), ["cup"], np.array([[0, 0, 8, 8]], float), ["cup"], 0.3)
    assert shrunk.matches == {0: 0} and shrunk.new == []
    # A person (tracked) holding a cup (tracked) in front: the person's box takes the person's track.
    tracks = np.array([[0, 0, 40, 80], [10, 30, 18, 38]], float)
    dets = np.array([[1, 0, 40, 80], [10, 30, 19, 38]], float)
    found = associate(dets, ["person", "cup"], tracks, ["person", "cup"], 0.3)
    assert found.matches == {0: 0, 1: 1}
    # Less than COVERED of the track inside: a new object.
    part = associate(np.array([[0, 0, 10, 20]], float), [""], np.array([[5, 0, 20, 20]], float), [""], 0.4)
    assert 5 / 15 < COVERED and part.matches == {} and part.new == [0]


def test_classes_never_match_across_but_an_overlap_of_any_class_starts_nothing():
    tracks = np.array([[0, 0, 10, 10]], float)
    found = associate(np.array([[0, 0, 10, 10]], float), ["dog"], tracks, ["cat"], 0.3)
    assert found.matches == {} and found.new == [] and found.duplicates == [0]
    unlabelled = associate(np.array([[0, 0, 10, 10]], float), [""], tracks, ["cat"], 0.3)
    assert unlabelled.matches == {0: 0}


def test_two_detections_of_one_new_object_start_one_track_and_distinct_ones_each_start():
    dets = np.array([[50, 50, 60, 60], [51, 50, 61, 60], [80, 80, 90, 90]], float)
    found = associate(dets, ["", "", ""], np.zeros((0, 4)), [], 0.3)
    assert found.new == [0, 2] and found.duplicates == [1] and found.matches == {}


def test_overlaps_under_the_threshold_do_not_steer_the_assignment():
    """A overlaps T1 at 0.91 and T2 at 0.17, B overlaps T1 at 0.8 (threshold 0.3). Counting the 0.17, the
    best total pairs A with T2 (dropped: under the threshold) and B with T1, leaving A, the better match
    of T1, a duplicate. Pairs under the threshold are no candidates: A takes T1."""
    t1, t2 = [0, 0, 10, 10], [8, 0, 18, 10]
    a, b = [0, 0, 11, 10], [0, 0, 8, 10]
    found = associate(np.array([a, b], float), ["", ""], np.array([t1, t2], float), ["", ""], 0.3)
    assert found.matches == {0: 0} and found.duplicates == [1]


def test_two_tracks_splitting_one_detected_object_are_one_track_too_many():
    """Tracks 0 and 1 both sit on the object detected at [10, 10, 30, 30] (a slot drifted onto its
    neighbour's object); the one left without a detection doubles the matched one. Track 2 has no
    detection either, but lies elsewhere: kept (detectors miss objects)."""
    tracks = np.array([[10, 10, 30, 30], [12, 11, 29, 30], [60, 60, 70, 70]], float)
    found = associate(np.array([[10, 10, 30, 30]], float), [""], tracks, ["", "", ""], 0.3)
    assert found.matches == {0: 0} and found.duplicate_tracks == {1: 0}
    # A cup held in front of a tracked person whose detection came alone: the cup's box is inside the
    # person's box but barely overlaps the person's track, so it is no duplicate.
    person_and_cup = np.array([[0, 0, 40, 80], [10, 30, 18, 38]], float)
    alone = associate(np.array([[1, 0, 40, 80]], float), [""], person_and_cup, ["", ""], 0.3)
    assert alone.matches == {0: 0} and alone.duplicate_tracks == {}
    # Another class never doubles a track.
    labelled = associate(np.array([[10, 10, 30, 30]], float), ["cup"], tracks[:2], ["cup", "bowl"], 0.3)
    assert labelled.matches == {0: 0} and labelled.duplicate_tracks == {}


def test_the_association_keeps_each_detection_track_iou_as_the_pairwise_iou_gives_it():
    """`starts` reads a matched pair's IoU (re-anchoring) from the association instead of recomputing it: it
    must be the same number as the IoU of that one pair, track box first."""
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 100, (9, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    dets, tracks = boxes[:5], boxes[5:] + rng.uniform(-5, 5, (4, 4))
    found = associate(dets, [""] * 5, tracks, ["a", "b", "", "a"], 0.3)
    assert found.iou.shape == (5, 4)
    for d in range(5):
        for t in range(4):
            assert found.iou[d, t] == box_iou_xyxy(tracks[t], dets[d])[0, 0]


def test_a_second_object_under_a_track_another_detection_took_starts():
    """A track's mask spread over its object and a neighbour come back beside it ([0, 0, 40, 20]); the
    detector sees both. The track's own object takes the track; the neighbour's box overlaps the track's at
    0.5 but not the other detection: a new object, not a duplicate. A detection overlapping that detection
    too is one."""
    track = np.array([[0, 0, 40, 20]], float)
    dets = np.array([[0, 0, 20, 20], [20, 0, 40, 20]], float)
    found = associate(dets, ["", ""], track, [""], 0.3)
    assert len(found.matches) == 1 and found.new == [1 - next(iter(found.matches))] and found.duplicates == []
    twice = associate(np.array([[0, 0, 20, 20], [4, 0, 24, 20]], float), ["", ""], track, [""], 0.3)
    assert twice.matches == {0: 0} and twice.duplicates == [1]


def test_two_detections_of_one_frame_overlapping_under_same_object_iou_are_two_objects():
    """A detector suppresses its own duplicate boxes (NMS, at about 0.5 IoU): two of its boxes overlapping at
    0.4 are two objects, one partly in front of the other. The track spread over both takes one; the other
    starts (bench dev seed 3D 7011: it was dropped as a duplicate at the new-object threshold 0.3, and the
    hidden object came back under a new id). Two new detections at 0.4 both start too."""
    track = np.array([[220, 54, 271, 97]], float)
    dets = np.array([[223, 51, 282, 95], [236, 65, 276, 106]], float)  # IoU 0.4 with each other
    assert 0.3 < box_iou_xyxy(dets[:1], dets[1:])[0, 0] < SAME_OBJECT_IOU
    found = associate(dets, ["", ""], track, [""], 0.3)
    assert found.matches == {0: 0} and found.new == [1] and found.duplicates == []
    fresh = associate(dets, ["", ""], np.zeros((0, 4)), [], 0.3)
    assert fresh.new == [0, 1] and fresh.duplicates == []
