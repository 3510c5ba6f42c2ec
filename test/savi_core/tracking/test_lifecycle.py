"""The lost rule's bookkeeping of looks (`savi_core.tracking.lifecycle.update_tracks`), driven with label maps
and stats rows as the Tracker makes them, without a model."""

from __future__ import annotations

import numpy as np

from savi_core.tracking.appearance import AppearanceMemory
from savi_core.tracking.lifecycle import Seen, update_tracks
from savi_core.tracking.live_track import LiveTrack, TrackBook
from savi_core.tracking.reid import VIEW_EVERY
from savi_core.tracking.tracker_config import TrackerConfig

RED_AT, GREEN_AT = (4, 4, 12, 12), (12, 4, 18, 12)


def _frame(book: TrackBook, mask_box: tuple[int, int, int, int]) -> None:
    """Red beside green (untracked); track 1's mask covers ``mask_box``."""
    image = np.full((32, 32, 3), 128, np.uint8)
    image[4:12, 4:12], image[4:12, 12:18] = (220, 30, 30), (40, 200, 40)
    labels = np.zeros((32, 32), np.uint16)
    x0, y0, x1, y1 = mask_box
    labels[y0:y1, x0:x1] = 1
    stats = np.array([[(x1 - x0) * (y1 - y0), x0, y0, x1, y1, 1.0]], np.float32)
    config = TrackerConfig(min_mask_area=10, dormant_seconds=2.0)
    update_tracks(book, AppearanceMemory(), config, Seen(image, labels, 0.0, None), stats)


def test_a_track_whose_mask_spread_over_a_neighbour_takes_no_look():
    """A mask box much wider than the detection that anchored the track holds another object too (in the
    bench's 3D scenes a slot spread onto an untracked neighbour, and that look later claimed the neighbour):
    no look then, while the next fitting frame takes one."""
    book = TrackBook(lambda _: None)
    track = LiveTrack(1, "", np.array(RED_AT, float))
    track.anchor_to(np.array(RED_AT, float))
    book.tracks[0] = track
    book.refresh()
    _frame(book, RED_AT)
    assert len(book.dormancy.gallery[1]) == 1
    for _ in range(VIEW_EVERY):
        _frame(book, (4, 4, 18, 12))  # red and green: 14 px wide for an 8 px anchor
    assert len(book.dormancy.gallery[1]) == 1 and book.tracks[0].whole
    _frame(book, RED_AT)
    assert len(book.dormancy.gallery[1]) == 2
