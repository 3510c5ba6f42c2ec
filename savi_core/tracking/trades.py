"""Crossings: two slots that traded objects give the ids back (`savi_core.tracking.appearance` finds the
trades by look), so ids stay with objects."""

from __future__ import annotations

import numpy as np

from savi_core.tracking.appearance import AppearanceMemory
from savi_core.tracking.live_track import TrackBook


def undo_trades(
    book: TrackBook,
    appearance: AppearanceMemory,
    image: np.ndarray,
    label_map: np.ndarray,
    stats: np.ndarray,
    swap_margin: float,
) -> None:
    """Move the ids of tracks whose slots traded objects to the slots now on their objects, in this frame's
    ``label_map`` too (``stats``: this frame's rows in ``book.order``)."""
    visible = [(book.tracks[slot], row) for row, slot in zip(stats, book.order) if row[0] > 0]
    trades = appearance.trades(
        image,
        label_map,
        {t.track_id: row[1:5] for t, row in visible},
        {t.track_id: float(row[0]) for t, row in visible},
        {t.track_id: t.anchor_area for t, row in visible},
        swap_margin,
    )
    if not trades:
        return
    slot_of = {track.track_id: slot for slot, track in book.tracks.items()}
    for a, b in trades:
        first, second = label_map == a, label_map == b
        label_map[first], label_map[second] = b, a
        book.tracks[slot_of[a]].trade_objects(book.tracks[slot_of[b]])
    book.refresh()
