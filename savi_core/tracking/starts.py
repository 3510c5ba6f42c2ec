"""Starting tracks (docs/INTERFACE.md "How tracks start"): pending `add_objects` prompts and new detections
take free slots, detections of live tracks re-anchor them when needed, duplicate tracks end; a start naming
a dormant id revives it, an id-less one is provisional while tracks sleep (`lifecycle.revive`). The slots
themselves are (re)initialised by the Tracker from what `start_tracks` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from savi_core.tracking.association import associate
from savi_core.tracking.conditioning import Start, prompt_start
from savi_core.tracking.datatypes import Detection
from savi_core.tracking.geometry import box_iou_xyxy
from savi_core.tracking.live_track import LiveTrack, TrackBook
from savi_core.tracking.track_ids import parse_track_id
from savi_core.tracking.tracker_config import TrackerConfig

REANCHOR_IOU = 0.5  # a matched track whose mask box overlaps its detection less than this is re-anchored
REANCHOR_SCORE = 0.8  # ... or whose slot's mean probability over its mask fell under this (it is fading)


@dataclass
class Starts:
    """What one step's starts did: ids started, ended (duplicates), revived; detections and prompts ignored;
    the slots to condition (``new_boxes``) and those to restart unconditioned (``cleared``)."""

    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    revived: list[int] = field(default_factory=list)
    ignored: int = 0
    new_boxes: dict[int, Start] = field(default_factory=dict)
    cleared: list[int] = field(default_factory=list)


def start_tracks(
    book: TrackBook,
    candidates: list[tuple[np.ndarray, Detection]],
    config: TrackerConfig,
    max_tracks: int,
    bootstrap: bool,
    height: int,
    width: int,
) -> Starts:
    """Start the pending prompts, then tracks for non-duplicate ``candidates`` (accepted detections), in free
    slots among the first ``max_tracks``; end duplicate tracks. ``bootstrap``: no slot state yet (with
    ``reinit`` "first", detections only start tracks then). Sets the book's provisional, anchored and
    detected slots."""
    if not bootstrap and config.reinit == "first":
        candidates = []
    prompts, book.pending = book.pending, []
    book.provisional, book.anchored, book.detected = {}, set(), set()
    # A new object may be a dormant track's, or (with dormancy on) a lost one's whose stale box it missed or
    # a live one's whose slot kept only part of it (`lifecycle.revive`).
    sleepers = bool(book.dormancy.dormant) or (config.dormant_seconds > 0 and bool(book.tracks))
    out = Starts()
    if not candidates and not prompts:
        return out
    free = [s for s in range(max_tracks) if s not in book.tracks]
    for prompt, track_id in prompts:
        start = prompt_start(prompt, height, width)
        if not free or start is None:  # taken meanwhile, or not on this image
            out.ignored += 1
            continue
        slot = free.pop(0)
        track = LiveTrack(track_id, prompt.class_id, start.box)
        if start.point is None:
            track.anchor_to(start.box)
        book.tracks[slot] = track
        out.new_boxes[slot] = start
        if book.dormancy.wake(track_id):
            out.revived.append(track_id)
            continue
        out.started.append(track_id)
        if not prompt.track_id.strip() and sleepers:
            book.provisional[slot] = False  # its id was given out by add_objects: never freed
    if candidates:
        _detections(book, candidates, config, free, sleepers, out)
    book.anchored = set(out.new_boxes)
    return out


def _detections(
    book: TrackBook,
    candidates: list[tuple[np.ndarray, Detection]],
    config: TrackerConfig,
    free: list[int],
    sleepers: bool,
    out: Starts,
) -> None:
    """Associate ``candidates`` with the live tracks: re-anchor matched ones, end duplicates (their slots join
    ``free``), start new ones in ``free`` slots; records all of it in ``out``."""
    live = list(book.tracks.items())
    found = associate(
        np.stack([box for box, _ in candidates]),
        [det.class_id for _, det in candidates],
        np.stack([t.box for _, t in live]) if live else np.zeros((0, 4)),
        [t.class_id for _, t in live],
        config.new_object_iou,
    )
    doubled = set(found.duplicate_tracks.values())
    restarted: set[int] = set()
    for det_index, track_index in found.matches.items():
        # A detection of a lost or doubled track, of one whose mask has left most of its box, or of one
        # whose slot is fading, re-anchors its slot (same id); with refresh, of any live track.
        slot, track = live[track_index]
        box = candidates[det_index][0]
        drifted = found.iou[det_index, track_index] < REANCHOR_IOU or track.score < REANCHOR_SCORE
        track.anchor_to(box)
        if config.reinit == "refresh" or track.lost_frames > 0 or track_index in doubled or drifted:
            out.new_boxes[slot] = Start(box)
            restarted.add(slot)
    for track_index in found.duplicate_tracks:
        # Its slot restarts unconditioned, so it stops taking the kept track's pixels.
        slot, track = live[track_index]
        del book.tracks[slot]
        out.ended.append(track.track_id)
        out.cleared.append(slot)
        free.append(slot)
    for det_index in found.new:
        box, det = candidates[det_index]
        named = book.dormancy.named(det.det_id) if free else 0
        track_id = named or (book.ids.claim(det.det_id) if free else None)
        if track_id is None:
            out.ignored += 1
            continue
        slot = free.pop(0)
        book.tracks[slot] = LiveTrack(track_id, det.class_id, box)
        book.tracks[slot].anchor_to(box)
        out.new_boxes[slot] = Start(box)
        if named:
            book.dormancy.wake(named)
            out.revived.append(named)
            continue
        out.started.append(track_id)
        if sleepers:
            # An id the detector gave is never freed, and never swapped for a live track's (`lifecycle.revive`).
            book.provisional[slot] = parse_track_id(det.det_id) != track_id
    # A slot restarted from its detection takes pixels from a neighbour's slot that was not: a detected track
    # whose detection overlaps a restarted slot's restarts from its own detection too, so the two compete from
    # their boxes (bench dev seed 2D 7001: a re-anchored slot took the whole of the object beside it).
    boxes = {live[t][0]: candidates[d][0] for d, t in found.matches.items()}
    fresh = [boxes[s] for s in restarted]
    for slot in sorted(set(boxes) - restarted):
        if fresh and (box_iou_xyxy(boxes[slot], np.stack(fresh)) > 0).any():
            out.new_boxes[slot] = Start(boxes[slot])
            restarted.add(slot)
    if len(out.new_boxes) > len(restarted):
        # On a frame that starts a track every detected track restarts from its detection too (dev videos,
        # detector every 6th frame: mIoU 2D / 3D 87.9 / 76.3 without, 88.6 / 77.5 with; doing it on every
        # re-anchoring frame as well scored the same and restarts more slots).
        for det_index, track_index in found.matches.items():
            out.new_boxes.setdefault(live[track_index][0], Start(candidates[det_index][0]))
    book.detected = {live[track_index][0] for track_index in found.matches.values()}
