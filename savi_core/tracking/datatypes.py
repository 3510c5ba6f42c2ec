"""What goes into and comes out of the Tracker (detections, prompts, tracks, a step's result): plain data,
apart from the Tracker so that the message decoders and the ROS side can name them without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Detection:
    """A detector box in input-image pixels, exclusive right/bottom edges."""

    box_xyxy: tuple[float, float, float, float]
    class_id: str = ""
    score: float = 1.0
    det_id: str = ""


@dataclass(frozen=True)
class Track:
    """A live track visible in this frame; ``box_xyxy`` is the tight box of its mask (exclusive edges)."""

    track_id: int
    class_id: str
    box_xyxy: tuple[float, float, float, float]
    score: float  # mean probability of the track's slot inside its mask
    area: int  # mask pixels at input size


@dataclass
class TrackResult:
    label_map: np.ndarray  # uint16 [H, W], track id per pixel, 0 = none
    tracks: list[Track] = field(default_factory=list)
    live_track_ids: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)  # expired dormant tracks included
    dormant_track_ids: list[int] = field(default_factory=list)  # after this step
    slept: list[int] = field(default_factory=list)  # live tracks that became dormant on this step
    revived: list[int] = field(default_factory=list)  # dormant tracks live again on this step
    reclaimed: list[int] = field(default_factory=list)  # lost tracks moved onto a new detection's slot by look
    expired: list[int] = field(default_factory=list)  # dormant tracks whose time ran out (also in ended)
    tracks_changed: bool = False
    ignored_detections: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # ms: preprocess, model, postprocess, total


@dataclass(frozen=True, eq=False)
class Prompt:
    """An object a person points out, to start on the next step: exactly one of a box (pixels, exclusive
    edges), a point (pixels: ``(x, y)`` with pixel ``i`` spanning ``[i, i + 1)``) or a mask (bool
    ``[H, W]`` of that image). ``track_id`` optionally asks for an id, as a detection's ``det_id`` does."""

    box_xyxy: Optional[tuple[float, float, float, float]] = None
    point_xy: Optional[tuple[float, float]] = None
    mask: Optional[np.ndarray] = None
    class_id: str = ""
    track_id: str = ""

    @property
    def kind(self) -> str:
        return "boxes" if self.box_xyxy is not None else "points" if self.point_xy is not None else "masks"
