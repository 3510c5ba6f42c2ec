"""Track ids as the node's users see them: 1..65535, a detector's proposal honoured when it is free."""
from __future__ import annotations

MAX_TRACK_ID = 65535


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
        text = requested.strip()
        # ASCII decimal digits only: int() would also take "1_0", "+3" and other scripts' digits.
        wanted = int(text) if text.isascii() and text.isdigit() else 0
        if 1 <= wanted <= MAX_TRACK_ID and wanted not in self._used:
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
