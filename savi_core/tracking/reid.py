"""Re-identification: a track whose object is gone sleeps with its id and its look, and wakes when a new
object that looks like it is detected.

Slots follow pixels, not identities: once an object is fully hidden or out of view its slot has nothing
to follow, so the Tracker frees it. Without memory the object's return would start a new id. Here each
track keeps a small gallery of *looks* while its object shows whole and alone, a lost track, or (while a
detector feeds the Tracker) one whose mask stops looking like its object, becomes *dormant* (id and gallery
kept, no slot), and a new track's first mask is compared with the dormant tracks' galleries: a confident
match gives it the dormant id back. Only a detection or a prompt starts a
slot, so a slot never wanders onto a dormant track's object and takes its id on its own. Lost tracks (still
on their slots, not yet dormant) are compared too: an object often comes back before its track sleeps,
away from the stale box that association would match it by (measured on the bench's dev seeds, that was
the largest class of failures).

A look is a unit vector, and two looks compare by their dot product (1 = the same). Its parts are the square
roots of the mask's RGB histogram and of its hue-saturation histogram (`savi_core.tracking.appearance`), whose
dot products are the Bhattacharyya coefficients of two histograms, and for models that compute features the
mask's pooled backbone features (unit length); each part is scaled by 1/sqrt(number of parts), so the dot
product is the mean of the parts' similarities. Measured on the re-identification scenes' dev seeds
7000-7014 with ground-truth masks (pairs of looks of one object at least 14 frames apart against pairs of two
objects of a scene), features alone barely tell objects apart (different-object pairs reach 0.83), RGB
alone fails under 3D shading (5% of same-object pairs under 0.56); RGB and features side by side put 5% of
same-object pairs under 0.74 / 0.59 (2D / 3D) with different-object pairs up to 0.61 / 0.46, and the
hue-saturation part added, which keeps an object's colour when a face turns into shade, 0.83 / 0.70 with
different-object pairs up to 0.41 / 0.48. In the Tracker, with the masks and looks it has (bench/bench_reid.py
--verbose prints each new track's look against each sleeper's), the revivals (none false) of dev seeds
7000-7029 scored from 0.5 in 3D, a fifth of them under 0.65 after the camera turned away and back, and
from 0.69 in 2D. `reid_threshold` 0.58: with the Tracker's later rules, on dev seeds 3D 7000-7299, 0.5 / 0.55 /
0.58 resumed 448 / 446 / 447 of 497 reappearances with 8 / 7 / 4 false revivals, and 0.62 lost seven on 7000-7099
(2D 7000-7099 the same at 0.5 and 0.58); false revivals of look-alikes cluster at 0.53-0.57, right ones under
0.6 are rare (docs/RESULTS.md, "Re-identification").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import torch

from savi_core.tracking.appearance import colour_histograms
from savi_core.tracking.geometry import centre_distance
from savi_core.tracking.track_ids import parse_track_id

VIEWS = 4  # looks kept per track, the newest: an object that turns or moves into other light keeps matching
VIEW_EVERY = 5  # processed frames between two looks of a track: neighbouring frames add nothing new
# A new box whose longer side is over this many times the object's longest is not it. An object seen only as a
# sliver comes back whole, and nearer the camera: bench dev seeds 3D 7006 / 7013 came back 3.26x / 3.08x the
# sliver's longest side (dev 7000-7029 against 3.0: 3D resumed 49 -> 49 of 56 and under the object's own id
# 52 -> 53, IDF1 90.2 -> 90.4, ID switches 8 -> 6; 2D the same; no false revival).
SIZE_RATIO = 4.0
DISTANCE_WEIGHT = 0.1  # ranking only: among confident matches the one nearer the dormant track's last box wins


def _touch(a: np.ndarray, b: np.ndarray) -> bool:
    """Boxes (exclusive edges) that overlap or share an edge."""
    return bool(min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1]))


class Looks:
    """Computes looks on one frame; the features come to the host once, and only when a look is needed."""

    def __init__(self, image: np.ndarray, labels: np.ndarray, features: Optional[torch.Tensor]) -> None:
        self._image, self._labels, self._features = image, labels, features
        self._host: Optional[np.ndarray] = None

    def of(self, track_id: int, box: np.ndarray) -> Optional[np.ndarray]:
        """The unit-length look of the pixels labelled ``track_id`` in ``box``; None when there are none."""
        hists = colour_histograms(self._image, self._labels, track_id, box)
        if hists is None:
            return None
        parts = [np.sqrt(hist).ravel().astype(np.float32) for hist in hists]
        if self._features is not None:
            if self._host is None:
                self._host = self._features[0].float().cpu().numpy()  # [h, w, C]
            pooled = self._pooled(track_id, box)
            if pooled is None:
                return None
            parts.append(pooled.astype(np.float32))
        return np.concatenate(parts) / np.float32(np.sqrt(len(parts)))

    def _pooled(self, track_id: int, box: np.ndarray) -> Optional[np.ndarray]:
        """Features of the cells under the box, weighted by the share of each cell the track's mask covers."""
        height, width = self._labels.shape
        h, w, _ = self._host.shape
        cx0, cy0 = int(box[0] * w // width), int(box[1] * h // height)
        cx1, cy1 = int(np.ceil(box[2] * w / width)), int(np.ceil(box[3] * h / height))
        px0, px1 = round(cx0 * width / w), round(cx1 * width / w)
        py0, py1 = round(cy0 * height / h), round(cy1 * height / h)
        mask = (self._labels[py0:py1, px0:px1] == track_id).astype(np.float32)
        if not mask.any() or cx1 <= cx0 or cy1 <= cy0:
            return None
        weights = cv2.resize(mask, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA)
        pooled = np.tensordot(weights, self._host[cy0:cy1, cx0:cx1], axes=([0, 1], [0, 1]))
        norm = float(np.linalg.norm(pooled))
        return pooled / norm if norm > 0 else None


@dataclass
class DormantTrack:
    """A track whose object is gone: its id stays reserved until ``since + dormant_seconds``."""

    track_id: int
    class_id: str
    box: np.ndarray  # its last mask box, input pixels (often a sliver: the object went behind something)
    size: tuple[float, float]  # (w, h) of the whole object: the box that last anchored it
    since: float  # stamp (s) of the frame it became dormant


@dataclass
class Candidate:
    """A track started this step by an id-less detection or prompt: its first mask's look and box."""

    track_id: int
    class_id: str
    box: np.ndarray
    look: np.ndarray


@dataclass
class Dormancy:
    """The tracks' galleries and the dormant tracks, keyed by track id (the Tracker clears them on reset)."""

    dormant: dict[int, DormantTrack] = field(default_factory=dict)
    gallery: dict[int, deque[np.ndarray]] = field(default_factory=dict)
    due: dict[int, int] = field(default_factory=dict)  # track id -> frames until its next look
    sizes: dict[int, tuple[float, float]] = field(default_factory=dict)  # track id -> largest (w, h) at its looks

    def reset(self) -> list[int]:
        """Forget everything; returns the dormant ids (they end)."""
        ended = sorted(self.dormant)
        self.dormant.clear()
        self.gallery.clear()
        self.due.clear()
        self.sizes.clear()
        return ended

    def sleep(
        self, track_id: int, class_id: str, box: np.ndarray, size: tuple[float, float] | None, stamp: float
    ) -> None:
        self.dormant[track_id] = self.stand_in(track_id, class_id, box, size, stamp)

    def stand_in(
        self, track_id: int, class_id: str, box: np.ndarray, size: tuple[float, float] | None, stamp: float
    ) -> DormantTrack:
        """A track as a dormant one. Its size is the larger of ``size`` (its anchor box's, which can be a
        detection of the object half out of view) and the largest box it had at its looks, side by side."""
        sizes = [s for s in (size, self.sizes.get(track_id)) if s is not None]
        size = tuple(np.max(sizes, axis=0).tolist()) if sizes else (float(box[2] - box[0]), float(box[3] - box[1]))
        return DormantTrack(track_id, class_id, box.copy(), size, stamp)

    def wake(self, track_id: int) -> Optional[DormantTrack]:
        """Take a dormant track back (it lives again on a slot); None when ``track_id`` is not dormant."""
        return self.dormant.pop(track_id, None)

    def named(self, requested: str) -> int:
        """The dormant id a detection's or prompt's id names (the contract's rule, `parse_track_id`); 0 if none."""
        wanted = parse_track_id(requested)
        return wanted if wanted in self.dormant else 0

    def expire(self, stamp: float, seconds: float) -> list[int]:
        """End the dormant tracks whose window is over at ``stamp``; returns their ids."""
        expired = sorted(i for i, t in self.dormant.items() if stamp - t.since >= seconds)
        for track_id in expired:
            del self.dormant[track_id]
        return expired

    def forget(self, keep: set[int]) -> None:
        """Drop the galleries of tracks that are neither live nor dormant."""
        for track_id in [i for i in self.gallery if i not in keep]:
            del self.gallery[track_id]
            self.due.pop(track_id, None)
            self.sizes.pop(track_id, None)

    def observe(self, looks: Looks, boxes: dict[int, np.ndarray], whole: set[int], threshold: float) -> None:
        """Add a look of each track in ``whole`` (its object shows whole) whose box touches no other visible
        track's box (its mask is its object alone), at most every `VIEW_EVERY` frames. A track without looks
        takes one whatever it shows: objects that start beside others and leave soon (a camera panning past
        them) would have none, and a look of part of its object is better than none. A look that none of
        the track's looks match at ``threshold`` is not kept: its slot moved onto another object without being
        lost, and the gallery must still recognise its own object when it comes back (bench dev seeds 3D
        7141, 7148: slots that moved onto another object filled their galleries with its looks; over dev seeds
        3D 7000-7199 the rule left the resumed reappearances at 298 of 330 and took false revivals from 8 to 7;
        2D 7000-7099 unchanged)."""
        for track_id, box in boxes.items():
            self.due[track_id] = self.due.get(track_id, 0) - 1
            if track_id in self.gallery:
                if track_id not in whole or self.due[track_id] > 0:
                    continue
                if any(_touch(box, other) for i, other in boxes.items() if i != track_id):
                    continue
            look = looks.of(track_id, box)
            if look is None:
                continue
            self.due[track_id] = VIEW_EVERY
            if not self.recognises(track_id, look, threshold):
                continue
            self.gallery.setdefault(track_id, deque(maxlen=VIEWS)).append(look)
            w, h = self.sizes.get(track_id, (0.0, 0.0))
            self.sizes[track_id] = (max(w, float(box[2] - box[0])), max(h, float(box[3] - box[1])))

    def similarity(self, track_id: int, look: np.ndarray) -> float:
        """The best match of ``look`` among the track's looks (dot product); -1 when it has none."""
        views = self.gallery.get(track_id)
        if not views or views[0].shape != look.shape:
            return -1.0
        return float(max(np.dot(view, look) for view in views))

    def recognises(self, track_id: int, look: Optional[np.ndarray], threshold: float) -> bool:
        """Whether ``look`` may be the track's object: similar enough to one of its looks, or there is
        nothing to tell (no look, or the track has none)."""
        return look is None or track_id not in self.gallery or self.similarity(track_id, look) >= threshold

    def match(
        self, candidates: list[Candidate], threshold: float, diagonal: float, lost: list[DormantTrack] = ()
    ) -> dict[int, int]:
        """New track id -> the dormant id it revives, or the ``lost`` (live, slotted) track's id it takes. A pair
        needs compatible classes (equal, or either unlabelled), a new box whose longer side is at most `SIZE_RATIO`
        times the longer side of the object's size (side by side, a sliver recorded while the object was half
        hidden would refuse the whole object; smaller is fine: a returning object shows in part) and a similarity of
        at least ``threshold``; pairs are taken one to one, best first (similarity less `DISTANCE_WEIGHT` x
        the distance from the sleeper's last box, as a share of the image diagonal)."""
        pairs = []
        for cand in candidates:
            width, height = cand.box[2] - cand.box[0], cand.box[3] - cand.box[1]
            for sleeper in [*self.dormant.values(), *lost]:
                if cand.class_id and sleeper.class_id and cand.class_id != sleeper.class_id:
                    continue
                if max(width, height) > SIZE_RATIO * max(sleeper.size):
                    continue
                sim = self.similarity(sleeper.track_id, cand.look)
                if sim < threshold:
                    continue
                shift = centre_distance(cand.box, sleeper.box)
                pairs.append((sim - DISTANCE_WEIGHT * shift / diagonal, cand.track_id, sleeper.track_id))
        revived: dict[int, int] = {}
        for _, new, old in sorted(pairs, reverse=True):
            if new not in revived and old not in revived.values():
                revived[new] = old
        return revived
