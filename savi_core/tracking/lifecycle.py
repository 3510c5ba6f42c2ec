"""After the model ran on a frame: provisional starts reclaim dormant or lost ids by look (`revive`), then
the lost rule moves tracks to lost, dormant or ended and the visible tracks list is built (`update_tracks`);
docs/INTERFACE.md "lost", "dormant". Slots left or freed are returned for the Tracker to restart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from savi_core.tracking.appearance import AppearanceMemory
from savi_core.tracking.datatypes import Track
from savi_core.tracking.geometry import box_iou_xyxy
from savi_core.tracking.live_track import TrackBook
from savi_core.tracking.reid import Candidate, Looks
from savi_core.tracking.trades import undo_trades
from savi_core.tracking.tracker_config import TrackerConfig

WHOLE = 0.75  # a mask box this share of its anchor box's width and height shows the whole object


@dataclass
class Seen:
    """A step's camera image, the label map made of it (both steps edit it in place), the step's time and
    the backbone's features (None without a pretrained encoder)."""

    image: np.ndarray
    label_map: np.ndarray
    now: float
    features: Optional[torch.Tensor]

    def looks(self) -> Looks:
        return Looks(self.image, self.label_map, self.features)


@dataclass
class Revival:
    """What `revive` did: {provisional or misled id: revived or taken id}, the lost ids taken, the stats rows
    without those of the slots ``left`` (the taken lost tracks' slots, to restart unconditioned), the
    misled lost tracks put to sleep, and the new ids their slots took (``started``: another object)."""

    renamed: dict[int, int]
    taken: list[int]
    stats: np.ndarray
    left: list[int] = field(default_factory=list)
    slept: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)


@dataclass
class Update:
    """What `update_tracks` did: ids ended, visible tracks, ids that became dormant, and the slots they left."""

    ended: list[int]
    tracks: list[Track]
    slept: list[int]
    freed: list[int]


def revive(book: TrackBook, config: TrackerConfig, seen: Seen, stats: np.ndarray) -> Revival:
    """Provisional tracks (started id-less this step while tracks are dormant or live) whose first mask looks
    like a dormant track, or like a lost track that no detection re-anchored (`savi_core.tracking.reid`), or
    else like an undetected live track whose box overlaps theirs or whose slot finds no pixels on this frame,
    take its id and class, in the label map too;
    the id a detection's track had is freed (never published). A lost or live track so taken leaves its slot:
    the new slot holds its object now. So do misled tracks: tracks
    that a detection matched (by a stale box of a lost track, or the box of the object a live track's
    slot moved onto) whose mask in the detection's box looks unlike their object but like a dormant or another
    lost track; they sleep, and a provisional track that looks like one of them takes its id at once (the two
    slots had traded objects); a misled track that was lost and looks like none of them sleeps, its slot takes a
    new id (``started``), and a provisional track that looks like it takes its id. A matched track need not be
    re-anchored to be misled: a slot that followed its object out of view onto another coming in where it left
    matches that one's detection well (bench dev seed 2D 7017)."""
    if config.dormant_seconds <= 0:
        return Revival({}, [], stats)
    label_map, now = seen.label_map, seen.now
    looks = seen.looks()
    found, misled = [], set()
    empty = {slot for row, slot in zip(stats, book.order) if row[0] < max(config.min_mask_area, 1)}  # lost now
    # A detected track's look is worth taking when it was re-anchored (lost or drifted) or a dormant or lost
    # track could take its object.
    others = bool(book.dormancy.dormant) or any(
        (t.lost_frames or s in empty) and s not in book.anchored for s, t in book.tracks.items()
    )
    for row, slot in zip(stats, book.order):
        if slot in empty:
            continue
        track = book.tracks[slot]
        if slot in book.provisional:
            # A fresh slot's first mask often spills past its object: the starting box (still the
            # track's box, not a point's) bounds the look and gives the size.
            box = track.box.copy() if track.anchor_size is not None else row[1:5].copy()
            look = looks.of(track.track_id, box)
            if look is not None:
                found.append(Candidate(track.track_id, track.class_id, box, look))
        elif slot in book.detected and (others or slot in book.anchored):
            look = looks.of(track.track_id, track.box)
            if not book.dormancy.recognises(track.track_id, look, config.reid_threshold):
                found.append(Candidate(track.track_id, track.class_id, track.box.copy(), look))
                misled.add(track.track_id)
    if not found:
        return Revival({}, [], stats)
    lost = {
        t.track_id: slot
        for slot, t in book.tracks.items()
        if t.lost_frames and slot not in book.provisional and slot not in book.anchored
    }
    waiting = [
        book.dormancy.stand_in(t.track_id, t.class_id, t.box, t.anchor_size, now)
        for t in book.tracks.values()
        if t.track_id in lost
    ]
    diagonal = float(np.hypot(*label_map.shape))
    renamed = book.dormancy.match(found, config.reid_threshold, diagonal, waiting)
    slot_of = {t.track_id: s for s, t in book.tracks.items()}
    was_lost = {s: t.lost_frames > 0 for s, t in book.tracks.items()}  # before this frame
    taken: list[int] = []
    slept: list[int] = []

    def rename(pairs: dict[int, int]) -> None:
        for new, old in pairs.items():
            slot = slot_of[new]
            if old in lost:
                label_map[label_map == old] = 0
                del book.tracks[lost[old]]
                taken.append(old)
            elif old in slept:  # a misled track's id, moved to the slot on its object
                slept.remove(old)
                taken.append(old)
            label_map[label_map == new] = old
            track = book.tracks[slot]
            if new in misled:  # its object is still gone: it sleeps, sized by its looks
                book.dormancy.sleep(new, track.class_id, track.box, None, now)
                slept.append(new)
            woken = book.dormancy.wake(old)
            track.track_id, track.class_id = old, (woken.class_id if woken else "") or track.class_id
            if book.provisional.get(slot):
                book.ids.release(new)

    rename(renamed)
    # A detector sees each object once: a live track that no detection matched may be the object of a
    # detection that went to a new or misled track matching no sleeper, its slot having kept part of it or
    # lagged behind (bench dev seed 3D 7026: a second track started on the object, the first slept with its
    # looks and later revived on another object), or a misled track's stale box may have taken the detection
    # of its object (3D 7017). Such a track is compared when its box overlaps the detection's, or wherever its
    # box is when its slot finds no pixels on this frame (it is lost from this frame on): its object came out
    # elsewhere (3D 7013: a slot left on a sliver of its object beside the pillar lost it on the frame the
    # object was detected away from the sliver, and the object started a new id). A track showing pixels
    # elsewhere is not: a detector may send only some objects (new ones), and a look-alike is another object.
    # Unless those pixels look like none of its object's looks: its slot stayed on whatever took its object's
    # place and was never lost (bench dev seeds 3D 7000-7099: 5 of 11 failed reappearances; compared too, 3D
    # resumed 167 -> 168 of 178, 2D 419 -> 420 of 432, no false revival more).
    # A prompt's track is not a re-detection, and a detection that gave its own id named a new track: neither
    # takes a live track's id.
    detections = [
        c for c in found if c.track_id not in renamed and book.provisional.get(slot_of[c.track_id]) is not False
    ]
    rows = dict(zip(book.order, stats))
    strays: dict[int, bool] = {}

    def stray(slot: int) -> bool:
        """Whether a live slot's mask on this frame looks like none of its track's looks (computed once)."""
        if slot not in strays:
            track_id = book.tracks[slot].track_id
            look = looks.of(track_id, rows[slot][1:5])
            strays[slot] = not book.dormancy.recognises(track_id, look, config.reid_threshold)
        return strays[slot]

    for cand in detections:
        near = {
            t.track_id: slot
            for slot, t in book.tracks.items()
            if not t.lost_frames
            and slot not in book.anchored
            and slot not in book.detected
            and (slot in empty or box_iou_xyxy(t.box, cand.box)[0, 0] > 0 or stray(slot))
        }
        if near:
            lost.update(near)
            stand_ins = [
                book.dormancy.stand_in(i, book.tracks[s].class_id, book.tracks[s].box, book.tracks[s].anchor_size, now)
                for i, s in near.items()
            ]
            more = book.dormancy.match([cand], config.reid_threshold, diagonal, stand_ins)
            renamed.update(more)
            rename(more)
    # A lost track whose stale box took the detection of an object that looks like neither its own nor any
    # other track's is on another object (bench dev seed 3D 7006: a lost track's box took the detection of
    # an object never tracked, and the returning object then started a new id): the track sleeps with its
    # looks and its slot, re-anchored on that object, takes a new id.
    started: list[int] = []
    for cand in found:
        slot = slot_of[cand.track_id]
        if cand.track_id in misled and cand.track_id not in renamed and was_lost[slot]:
            track_id = book.ids.claim()
            if track_id is None:  # no id left: the track keeps the object, as before
                continue
            track = book.tracks[slot]
            book.dormancy.sleep(track.track_id, track.class_id, track.box, None, now)
            slept.append(track.track_id)
            label_map[label_map == track.track_id] = track_id
            track.track_id = track_id
            started.append(track_id)
    if slept:  # a new track may be the object of a misled track that slept just now (bench dev seed 3D 7109)
        rest = [c for c in found if c.track_id not in renamed and c.track_id not in misled]
        more = book.dormancy.match(
            rest, config.reid_threshold, diagonal, [w for w in waiting if w.track_id not in taken]
        )
        renamed.update(more)
        rename(more)
    left = [lost[old] for old in taken if old in lost]
    if left:
        stats = stats[[i for i, slot in enumerate(book.order) if slot not in left]]
    if renamed or started:
        book.refresh()
    return Revival(renamed, sorted(taken), stats, left, sorted(slept), started)


def update_tracks(
    book: TrackBook, appearance: AppearanceMemory, config: TrackerConfig, seen: Seen, stats: np.ndarray
) -> Update:
    """Undo traded objects, apply the lost rule (a track lost long enough, or whose slot left its object,
    becomes dormant, or ends; a lost track's pixels leave the label map), refresh the tracks' looks and build
    the visible tracks list."""
    image, label_map, now = seen.image, seen.label_map, seen.now
    swapping = config.swap_margin > 0
    if swapping:
        undo_trades(book, appearance, image, label_map, stats, config.swap_margin)
    out = Update([], [], [], [])
    growth = config.max_area_growth
    reid = config.dormant_seconds > 0
    detector = book.detector_feeds(now, config.dormant_seconds)
    looks = seen.looks()
    fitting: set[int] = set()  # shows whole, in a box not over 1/WHOLE of its anchor's sides: its object alone
    for row, slot in zip(stats, book.order):
        track = book.tracks[slot]
        area = int(row[0])
        if track.anchor_area is None and area >= config.min_mask_area:
            track.anchor_area = float(area)
            track.anchor_size = (float(row[3] - row[1]), float(row[4] - row[2]))
        overgrown = bool(growth) and track.anchor_area is not None and area > growth * track.anchor_area
        # A slot that no detection anchored on this frame may have moved onto another object or the
        # background, whether its track was lost first or its object vanished under it (a slot slides onto a
        # neighbour as its object goes behind something, or stays on the background where its object left the
        # view): unless its pixels look like its object, its object is gone and the track sleeps now with its
        # looks, so that its object's return can revive its id. Against checking lost tracks only, bench dev
        # seeds 3D 7000-7199 resumed 300 of 330 reappearances (299), false revivals 4 (3), 2D 7000-7099 424
        # of 432 (420), IDF1 91.9 (91.0), at no measurable cost per step. A track not lost is checked only
        # while a detector feeds the Tracker: with boxes given once, a track put to sleep never comes back, and
        # a slot whose object only changed its look keeps it (20 pretrained-eyes videos per split, first-frame
        # boxes: checking every track cost 0.1-2.2 mIoU on every split).
        stray = (
            reid
            and (track.lost_frames > 0 or detector)
            and slot not in book.anchored
            and area >= config.min_mask_area
            and not overgrown
            and not book.dormancy.recognises(track.track_id, looks.of(track.track_id, row[1:5]), config.reid_threshold)
        )
        if area > 0 and not overgrown and not stray:
            box = row[1:5].copy()
            whole = track.anchor_size is not None and (
                box[2] - box[0] >= WHOLE * track.anchor_size[0] and box[3] - box[1] >= WHOLE * track.anchor_size[1]
            )
            # A partly hidden object's mask box moves with the occluder, not with the object.
            track.velocity = (
                (
                    (box[0] + box[2] - track.box[0] - track.box[2]) / 2,
                    (box[1] + box[3] - track.box[1] - track.box[3]) / 2,
                )
                if whole and track.whole and track.lost_frames == 0
                else (0.0, 0.0)
            )
            track.whole = whole
            if (
                whole
                and box[2] - box[0] <= track.anchor_size[0] / WHOLE
                and box[3] - box[1] <= track.anchor_size[1] / WHOLE
            ):
                fitting.add(track.track_id)
            track.box = box
            track.score = float(row[5])
        lost = area < config.min_mask_area or overgrown or stray
        track.lost_frames = track.lost_frames + 1 if lost else 0
        if track.lost_frames >= config.lost_after_frames or stray:
            if config.dormant_seconds > 0:
                book.dormancy.sleep(track.track_id, track.class_id, track.box, track.anchor_size, now)
                out.slept.append(track.track_id)
            else:
                out.ended.append(track.track_id)
            out.freed.append(slot)
            del book.tracks[slot]
        elif track.lost_frames == 0 and area > 0:
            out.tracks.append(
                Track(track.track_id, track.class_id, tuple(float(v) for v in row[1:5]), float(row[5]), area)
            )
        if track.lost_frames and area > 0:  # a lost or ended track's pixels are not published
            label_map[label_map == track.track_id] = 0
    boxes = {t.track_id: np.asarray(t.box_xyxy) for t in out.tracks}
    whole_ids = {t.track_id for t in book.tracks.values() if t.whole and not t.lost_frames}
    live_ids = {t.track_id for t in book.tracks.values()}
    if swapping:
        appearance.update(image, label_map, boxes, whole_ids, live_ids)
    if reid:
        book.dormancy.observe(looks, boxes, whole_ids & fitting, config.reid_threshold)
    book.dormancy.forget(live_ids | set(book.dormancy.dormant))
    if out.freed:
        book.refresh()
    return out
