"""Which detections a step acts on (`accepted`: score, class, box), and which of them belong to live tracks:
a robot's detector keeps re-detecting what is tracked, and a re-detection must never start a second track of
the same object.

Three passes over boxes in pixels (a track's box is its mask's box on the last frame):
1. one-to-one by IoU (Hungarian, `scipy.optimize.linear_sum_assignment`), class-aware (a labelled
   detection never takes a track of another class; unlabelled ones go with any), pairs at IoU >=
   the threshold;
2. a detection left over takes a left-over track whose box lies mostly inside it (`COVERED`): the mask
   of a track that shrank to part of its object, or lost some frames, has a low IoU with a fresh box;
3. a detection still left over overlapping a live track (of any class: detectors flicker between
   classes) at IoU >= the threshold, or another new detection at `SAME_OBJECT_IOU`, is a duplicate: it
   starts nothing. Not so when another detection took that track and this one does not overlap that
   detection at `SAME_OBJECT_IOU`: it is a second object the track's mask spread over (seen on the
   re-identification bench: an object coming back beside another whose mask covered both was dropped as a
   duplicate, and its id was not revived). Two detections of one frame are compared at the IoU a detector
   suppresses its own duplicates at (NMS, about 0.5), not at the new-object threshold: two of its boxes
   overlapping less are two objects, one partly in front of the other (bench dev seed 3D 7011: at 0.3 the
   second was dropped; dev 7000-7029 3D resumed 49 -> 50 of 56, IDF1 90.4 -> 90.6, ID switches 6 -> 4;
   2D resumed the same, IDF1 89.4 -> 89.5; no false revival);
4. a track left without a detection whose box lies mostly inside a matched detection and overlaps that
   detection's track at IoU >= the threshold is a duplicate track of it: two slots that split one object
   (one drifted onto its neighbour's object). The detector saw one object there, so one track ends.
Pass 1 running first keeps a large detection (a person) from taking a small track inside it (a cup
held in front) when the large object has its own track.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from savi_core.tracking.datatypes import Detection
from savi_core.tracking.geometry import box_iou_xyxy
from savi_core.tracking.tracker_config import TrackerConfig

COVERED = 0.6  # share of a left-over track's box inside a detection for the detection to take it
SAME_OBJECT_IOU = 0.5  # two detections of one frame overlapping at least this much are one object seen twice


@dataclass
class Association:
    """Indices into the detections given: matched to a track, new objects, duplicates (ignored)."""

    matches: dict[int, int] = field(default_factory=dict)  # detection -> track
    new: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    duplicate_tracks: dict[int, int] = field(default_factory=dict)  # track -> the matched track it doubles
    iou: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [N, M] detection-track IoU, any class


def accepted(
    detections: list[Detection], config: TrackerConfig, height: int, width: int
) -> list[tuple[np.ndarray, Detection]]:
    """The detections a step acts on, with their boxes clipped to the ``height x width`` image: score and
    class as ``config`` allows, a non-empty box once clipped; highest score first. ValueError for a box that
    is not 4 finite numbers."""
    kept: list[tuple[np.ndarray, Detection]] = []
    for det in detections:
        box = np.asarray(det.box_xyxy, dtype=np.float64)
        if box.shape != (4,) or not np.isfinite(box).all():
            raise ValueError(f"detection box_xyxy must be 4 finite numbers (x0, y0, x1, y1), got {det.box_xyxy!r}")
        if det.score < config.score_threshold or (config.class_ids and det.class_id not in config.class_ids):
            continue
        box = np.clip(box, 0.0, [width, height, width, height])
        if box[2] > box[0] and box[3] > box[1]:
            kept.append((box, det))
    kept.sort(key=lambda item: -item[1].score)
    return kept


def _compatible(a: str, b: str) -> bool:
    return not a or not b or a == b


def _inside_share(boxes: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """``[N, M]``: the share of each track box's area inside each detection box."""
    iw = np.clip(
        np.minimum(boxes[:, None, 2], tracks[None, :, 2]) - np.maximum(boxes[:, None, 0], tracks[None, :, 0]), 0, None
    )
    ih = np.clip(
        np.minimum(boxes[:, None, 3], tracks[None, :, 3]) - np.maximum(boxes[:, None, 1], tracks[None, :, 1]), 0, None
    )
    area = (tracks[:, 2] - tracks[:, 0]) * (tracks[:, 3] - tracks[:, 1])
    return np.divide(iw * ih, area[None, :], out=np.zeros_like(iw), where=area[None, :] > 0)


def associate(
    boxes: np.ndarray, classes: list[str], track_boxes: np.ndarray, track_classes: list[str], iou_threshold: float
) -> Association:
    """Detections ``boxes [N, 4]`` (highest priority first) against live tracks ``track_boxes [M, 4]``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    track_boxes = np.asarray(track_boxes, np.float64).reshape(-1, 4)
    n, m = len(boxes), len(track_boxes)
    any_class_iou = box_iou_xyxy(boxes, track_boxes)
    result = Association(iou=any_class_iou)
    compatible = np.array([[_compatible(c, t) for t in track_classes] for c in classes], bool).reshape(n, m)
    # Pairs under the threshold are not candidates at all: left in, they would steer the assignment.
    iou = np.where(compatible & (any_class_iou >= iou_threshold), any_class_iou, 0.0)
    if n and m:
        rows, cols = linear_sum_assignment(-iou)
        result.matches = {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] > 0}
        inside = np.where(compatible, _inside_share(boxes, track_boxes), 0.0)
        taken = set(result.matches.values())
        for det in range(n):
            if det in result.matches:
                continue
            free = [t for t in range(m) if t not in taken]
            if free:
                best = max(free, key=lambda t: inside[det, t])
                if inside[det, best] >= COVERED:
                    result.matches[det] = best
                    taken.add(best)
    accepted: list[int] = []
    taker = {t: d for d, t in result.matches.items()}
    for det in range(n):
        if det in result.matches:
            continue
        # A track another detection took is that detection's object: a detection overlapping its box but
        # not that detection is a second object its mask spread over.
        against_tracks = any(
            any_class_iou[det, t] >= iou_threshold
            and (t not in taker or box_iou_xyxy(boxes[det], boxes[taker[t]])[0, 0] >= SAME_OBJECT_IOU)
            for t in range(m)
        )
        against_new = accepted and (box_iou_xyxy(boxes[det], boxes[accepted])[0] >= SAME_OBJECT_IOU).any()
        if against_tracks or against_new:
            result.duplicates.append(det)
        else:
            accepted.append(det)
    result.new = accepted
    if result.matches:
        track_iou = box_iou_xyxy(track_boxes, track_boxes)
        taken = set(result.matches.values())
        for track in range(m):
            if track in taken:
                continue
            for det, kept in result.matches.items():
                if (
                    _compatible(track_classes[track], track_classes[kept])
                    and inside[det, track] >= COVERED
                    and track_iou[track, kept] >= iou_threshold
                ):
                    result.duplicate_tracks[track] = kept
                    break
    return result
