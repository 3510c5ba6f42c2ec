"""TrackBook: the track state the lifecycle steps share, without a model."""

from __future__ import annotations

import numpy as np

from savi_core.tracking.datatypes import Prompt
from savi_core.tracking.live_track import LiveTrack, TrackBook


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
