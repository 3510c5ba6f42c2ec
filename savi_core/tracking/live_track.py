"""A live track's state between frames (where its object is, what last anchored it, how long it is lost), the
two changes made to it from outside the lost rule (anchoring to a box, trading objects in a crossing), and
`TrackBook`: the tracks and ids the lifecycle steps (`starts`, `lifecycle`, `trades`) edit, without the model."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from savi_core.tracking.datatypes import Prompt
from savi_core.tracking.reid import Dormancy
from savi_core.tracking.track_ids import TrackIdAllocator


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
    whole: bool = False  # the last box showed the whole object (lifecycle.WHOLE of the anchor box's sides)

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


@dataclass
class TrackBook:
    """Which track each object slot holds, the dormant tracks, the ids and this step's start marks: the state
    the lifecycle steps share. ``publish`` gets (slot, track id) in slot order whenever tracks start, end or
    change ids (the label tables follow it)."""

    publish: Callable[[list[tuple[int, int]]], None]
    tracks: dict[int, LiveTrack] = field(default_factory=dict)  # object slot -> track
    dormancy: Dormancy = field(default_factory=Dormancy)  # dormant tracks and every track's looks
    ids: TrackIdAllocator = field(default_factory=TrackIdAllocator)
    pending: list[tuple[Prompt, int]] = field(default_factory=list)  # add_objects prompts and their reserved ids
    provisional: dict[int, bool] = field(default_factory=dict)  # slot started this step that may revive -> free id
    anchored: set[int] = field(default_factory=set)  # slots (re)started from a detection or prompt this step
    detected: set[int] = field(default_factory=set)  # live tracks' slots a detection matched this step
    order: list[int] = field(default_factory=list)  # live object slots in the order of the stats rows
    # Stamps of the last two frames that came with a detection message (empty ones too: the detector ran).
    detection_stamps: deque[float] = field(default_factory=lambda: deque(maxlen=2))

    def reset(self) -> list[int]:
        """End every live and dormant track and restart ids at 1; returns the ended ids."""
        ended = sorted([t.track_id for t in self.tracks.values()] + self.dormancy.reset())
        self.tracks.clear()
        self.detection_stamps.clear()
        self.pending = []
        self.ids.reset()
        self.refresh()
        return ended

    def refresh(self) -> None:
        """Tracks started, ended or changed ids: renew the slot order and publish it (not per frame)."""
        self.order = sorted(self.tracks)
        self.publish([(slot, self.tracks[slot].track_id) for slot in self.order])

    def detector_feeds(self, now: float, window: float) -> bool:
        """Whether a detector keeps sending detections: messages on two frames, the last within ``window``
        seconds of ``now``. Boxes given once, at the start, are no detector: nothing would bring a track back."""
        return len(self.detection_stamps) == 2 and now - self.detection_stamps[-1] <= window

    def slot_of(self, track_id: int) -> Optional[int]:
        """The object slot of live track ``track_id``; None when no live track has it."""
        return next((s for s, t in self.tracks.items() if t.track_id == track_id), None)

    def reserve(self, requested: str) -> Optional[int]:
        """The id for an `add_objects` prompt asking for ``requested``: a dormant track it names (revived on the
        next step, dormant until then) unless a pending prompt has it, else a new or requested id; None when
        no id is left."""
        named = self.dormancy.named(requested)
        if named and named not in {i for _, i in self.pending}:
            return named
        return self.ids.claim(requested)
