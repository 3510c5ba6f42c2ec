"""Track ids as the node's users see them: 1..65535, a detector's proposal honoured when it is free."""

from __future__ import annotations

MAX_TRACK_ID = 65535
MAX_ID_DIGITS = len(str(MAX_TRACK_ID))


def parse_track_id(text: str) -> int | None:
    """The id a detection or prompt asks for, by the contract's rule (ASCII decimal digits, 1..65535), else
    None. The length is checked before ``int()``: a detector's id may be any string, and ``int()`` of a few
    thousand digits raises instead of answering."""
    if not (0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit()):
        return None  # isdigit alone would pass other scripts' digits; int() would take "1_0", "+3", " 7 "
    value = int(text)
    return value if 1 <= value <= MAX_TRACK_ID else None


class TrackIdAllocator:
    """Track ids 1..65535, never reused until ``reset``: a valid unused requested id wins, else the
    smallest never-used id."""

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._next = 1

    def reset(self) -> None:
        self._used.clear()
        self._next = 1

    def claim(self, requested: str = "") -> int | None:
        """The id for a new track, or None when all 65535 ids were used."""
        wanted = parse_track_id(requested)
        if wanted is not None and wanted not in self._used:
            self._used.add(wanted)
            return wanted
        while self._next in self._used:
            self._next += 1
        if self._next > MAX_TRACK_ID:
            return None
        self._used.add(self._next)
        return self._next

    def release(self, track_id: int) -> None:
        """Give back an id that was claimed but never shown to anyone (a track that revived a dormant one)."""
        self._used.discard(track_id)
        self._next = min(self._next, track_id)
