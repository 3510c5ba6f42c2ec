"""A live track's state between frames (where its object is, what last anchored it, how long it is lost) and
the two changes made to it from outside the lost rule: anchoring to a box, trading objects in a crossing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


def _box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


@dataclass
class LiveTrack:
    track_id: int
    class_id: str
    box: np.ndarray  # last mask box seen (or the starting detection box) in input pixels, kept while lost
    lost_frames: int = 0
    anchor_area: Optional[float] = None  # area of the box that last anchored it (None: its first mask's)
    anchor_size: Optional[tuple[float, float]] = None  # (w, h) of that box (or of its first mask's box)
    velocity: tuple[float, float] = (0.0, 0.0)  # box-centre shift (x, y) per processed frame, for the gate
    score: float = 1.0  # mean probability of its slot over its mask on the last frame it was seen
    whole: bool = False  # the last box showed the whole object (tracker.WHOLE of the anchor box's sides)

    def anchor_to(self, box: np.ndarray) -> None:
        """A detection or prompt box fixes where the track is and how big it is (the growth rule, the gate)."""
        self.box = box
        self.anchor_area = _box_area(box)
        self.anchor_size = (float(box[2] - box[0]), float(box[3] - box[1]))

    def trade_objects(self, other: "LiveTrack") -> None:
        """Two slots traded objects: the object's identity (id, class, anchor) moves to the slot now on it;
        where each slot is (box, lost frames, score) stays. No motion is measured across the trade."""
        for name in ("track_id", "class_id", "anchor_area", "anchor_size"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs)
            setattr(other, name, mine)
        self.whole = other.whole = False
        self.velocity = other.velocity = (0.0, 0.0)
