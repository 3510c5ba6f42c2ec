"""TrackBook: the track state the lifecycle steps share, without a model."""

from __future__ import annotations

import numpy as np

from savi_core.tracking.datatypes import Detection, Prompt
from savi_core.tracking.live_track import LiveTrack, TrackBook
from savi_core.tracking.starts import start_tracks
from savi_core.tracking.tracker_config import TrackerConfig


def _book() -> tuple[TrackBook, list[list[tuple[int, int]]]]:
    published: list[list[tuple[int, int]]] = []
    return TrackBook(published.append), published


def test_refresh_publishes_slot_and_id_in_slot_order_and_reset_ends_live_and_dormant_ids():
    book, published = _book()
    book.tracks[3] = LiveTrack(7, "", np.zeros(4))
    book.tracks[1] = LiveTrack(9, "", np.zeros(4))
    book.dormancy.sleep(4, "", np.array([0.0, 0.0, 2.0, 2.0]), None, 0.0)
    book.refresh()
    assert book.order == [1, 3] and published[-1] == [(1, 9), (3, 7)]
    assert book.slot_of(7) == 3 and book.slot_of(8) is None
    assert book.reset() == [4, 7, 9]
    assert book.tracks == {} and book.dormancy.dormant == {} and published[-1] == []


def test_a_prompt_naming_a_dormant_id_reserves_it_once_then_gets_a_new_id():
    book, _ = _book()
    first = book.ids.claim("")
    book.dormancy.sleep(first, "cup", np.array([0.0, 0.0, 2.0, 2.0]), None, 0.0)
    assert book.reserve(str(first)) == first
    book.pending.append((Prompt(box_xyxy=(0, 0, 2, 2), track_id=str(first)), first))
    second = book.reserve(str(first))  # a second prompt for the same dormant id does not take it again
    assert second is not None and second != first


def test_a_new_start_restarts_every_detected_track_from_its_detection_and_none_without_one():
    config = TrackerConfig()
    book, _ = _book()
    kept, other = np.array([10.0, 10.0, 30.0, 30.0]), np.array([50.0, 10.0, 70.0, 30.0])
    for slot, box in ((0, kept), (1, other)):
        book.tracks[slot] = LiveTrack(book.ids.claim(""), "", box.copy())
        book.tracks[slot].anchor_to(box.copy())
    seen = np.array([11.0, 10.0, 31.0, 30.0])  # overlaps track 1's box well: no re-anchor on its own
    alone = start_tracks(book, [(seen, Detection(tuple(seen)))], config, 4, False, 100, 100)
    assert alone.new_boxes == {} and alone.started == []
    new = np.array([10.0, 60.0, 30.0, 80.0])
    both = start_tracks(
        book, [(seen, Detection(tuple(seen))), (new, Detection(tuple(new)))], config, 4, False, 100, 100
    )
    assert both.started == [3] and sorted(both.new_boxes) == [0, 2]  # track 2 had no detection: untouched
    assert both.new_boxes[0].box.tolist() == seen.tolist() and book.anchored == {0, 2}


def test_a_re_anchored_track_restarts_every_detected_track_from_its_detection():
    """No new track, but one detection re-anchors its drifted track: the background slot restarts with it, so
    the well-matched track restarts from its detection too (bench dev seed 2D 7024: it lost its object)."""
    book, _ = _book()
    kept, drifted = np.array([10.0, 10.0, 30.0, 30.0]), np.array([50.0, 10.0, 70.0, 30.0])
    for slot, box in ((0, kept), (1, drifted)):
        book.tracks[slot] = LiveTrack(book.ids.claim(""), "", box.copy())
        book.tracks[slot].anchor_to(box.copy())
    seen, moved = np.array([11.0, 10.0, 31.0, 30.0]), np.array([52.0, 10.0, 72.0, 30.0])
    book.tracks[1].box = np.array([50.0, 10.0, 62.0, 30.0])  # its mask kept part of its object: IoU 0.45
    out = start_tracks(
        book, [(seen, Detection(tuple(seen))), (moved, Detection(tuple(moved)))], TrackerConfig(), 4, False, 100, 100
    )
    assert out.started == [] and sorted(out.new_boxes) == [0, 1] and book.anchored == {0, 1}
    assert out.new_boxes[0].box.tolist() == seen.tolist()
