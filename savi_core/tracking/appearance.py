"""Track appearance: colour histograms that tell two tracks apart after their slots traded objects.

When one object passes in front of another, their two slots can trade objects: each ends up following
the other's object, and each track id moves with its slot to the wrong object. Motion cannot undo
that (after a crossing, or a bounce, both paths are plausible); colour can. A track's reference
histogram is taken on its first frame showing the whole object (a fresh slot holds its object best)
and refreshed while the object shows whole and touches no other track. Two tracks whose boxes
touched are watched until they have been apart for `APART_FRAMES` frames; while watched, they trade
ids when each one's mask looks more like the other's reference than like its own by the margin.
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = 8  # per RGB channel: coarse enough for shading and noise, fine enough for two colours
HUE_BINS, SATURATION_BINS = 16, 8  # the hue-saturation histogram's
EMA = 0.1  # weight of a new view in a reference: the object's look drifts slowly (light, turning)
APART_FRAMES = 5  # a watched pair whose boxes were apart this many frames is released
MAX_AREA_RATIO = 2.0  # a mask over this many times the area of a track's anchor box is not its object
SAMPLES = 1024  # at most about this many pixels of a box are read: the cost does not grow with the camera


def _sample(
    image: np.ndarray, labels: np.ndarray, track_id: int, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The pixels of ``box`` (x0, y0, x1, y1, exclusive edges) on a regular grid of about `SAMPLES` of them and
    the uint8 mask of those labelled ``track_id``; None when there are none."""
    x0, y0, x1, y1 = (int(v) for v in np.round(box))
    step = max(1, int(np.sqrt((x1 - x0) * (y1 - y0) / SAMPLES)))  # a colour histogram needs no more pixels
    roi = labels[y0:y1:step, x0:x1:step] == track_id
    if not roi.any():
        return None
    return np.ascontiguousarray(image[y0:y1:step, x0:x1:step]), roi.view(np.uint8)


def _rgb(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hist = cv2.calcHist([pixels], [0, 1, 2], mask, [BINS] * 3, [0, 256] * 3)
    return hist / hist.sum()


def colour_histogram(image: np.ndarray, labels: np.ndarray, track_id: int, box: np.ndarray) -> np.ndarray | None:
    """The normalised RGB histogram ``[BINS, BINS, BINS]`` of the pixels labelled ``track_id`` inside
    ``box`` (x0, y0, x1, y1, exclusive edges), on a regular grid of about `SAMPLES` of them; None when
    there are none."""
    sample = _sample(image, labels, track_id, box)
    return None if sample is None else _rgb(*sample)


def colour_histograms(
    image: np.ndarray, labels: np.ndarray, track_id: int, box: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """`colour_histogram` and, of the same pixels, the normalised hue-saturation histogram ``[HUE_BINS,
    SATURATION_BINS]``, which leaves out brightness: a face of an object turned into shade keeps it."""
    sample = _sample(image, labels, track_id, box)
    if sample is None:
        return None
    pixels, mask = sample
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)  # 8-bit hue in 0..179
    shade_free = cv2.calcHist([hsv], [0, 1], mask, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256])
    return _rgb(pixels, mask), shade_free / shade_free.sum()


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance: 0 for the same colours, 1 for none in common."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def _touch(a: np.ndarray, b: np.ndarray) -> bool:
    """Boxes (exclusive edges) that overlap or share an edge."""
    return bool(min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1]))


class AppearanceMemory:
    """References and watched pairs, keyed by track id (the Tracker forgets them on reset)."""

    def __init__(self) -> None:
        self.references: dict[int, np.ndarray] = {}
        self.watched: dict[tuple[int, int], int] = {}  # (smaller id, larger id) -> frames apart since touching

    def reset(self) -> None:
        self.references.clear()
        self.watched.clear()

    def trades(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        boxes: dict[int, np.ndarray],
        areas: dict[int, float],
        anchor_areas: dict[int, float | None],
        margin: float,
    ) -> list[tuple[int, int]]:
        """Watched pairs of visible tracks (``boxes``: id -> mask box, ``areas``: its pixels) whose slots traded
        objects: the sum of each mask's distance to its own reference exceeds the sum of its distances to
        the other's by more than ``margin``, and neither mask is too large to be the other's object (over
        `MAX_AREA_RATIO` times the box that anchored it: a slot spread over the background looks like
        anything). The strongest first; a track trades at most once per frame."""
        current: dict[int, np.ndarray | None] = {}

        def look(track_id: int) -> np.ndarray | None:
            if track_id not in current:
                current[track_id] = colour_histogram(image, labels, track_id, boxes[track_id])
            return current[track_id]

        found = []
        for a, b in self.watched:
            if not (a in boxes and b in boxes and a in self.references and b in self.references):
                continue
            if any(
                anchor_areas.get(other) and areas[mine] > MAX_AREA_RATIO * anchor_areas[other]
                for mine, other in ((a, b), (b, a))
            ):
                continue
            seen_a, seen_b = look(a), look(b)
            if seen_a is None or seen_b is None:
                continue
            ref_a, ref_b = self.references[a], self.references[b]
            evidence = (
                _distance(seen_a, ref_a)
                + _distance(seen_b, ref_b)
                - _distance(seen_a, ref_b)
                - _distance(seen_b, ref_a)
            )
            if evidence > margin:
                found.append((evidence, a, b))
        traded: list[tuple[int, int]] = []
        busy: set[int] = set()
        for _, a, b in sorted(found, reverse=True):
            if a not in busy and b not in busy:
                traded.append((a, b))
                busy.update((a, b))
        return traded

    def update(
        self, image: np.ndarray, labels: np.ndarray, boxes: dict[int, np.ndarray], whole: set[int], live: set[int]
    ) -> None:
        """After a frame: watch pairs of visible tracks whose boxes touch, release pairs apart long enough,
        forget tracks no longer live; take the references of new whole tracks, refresh those of whole, unwatched
        tracks touching none."""
        self.references = {k: v for k, v in self.references.items() if k in live}
        self.watched = {p: n for p, n in self.watched.items() if p[0] in live and p[1] in live}
        ids = sorted(boxes)
        touching: set[int] = set()
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if _touch(boxes[a], boxes[b]):
                    self.watched[(a, b)] = 0
                    touching.update((a, b))
                elif (a, b) in self.watched:
                    self.watched[(a, b)] += 1
                    if self.watched[(a, b)] >= APART_FRAMES:
                        del self.watched[(a, b)]
        watched = {t for pair in self.watched for t in pair}
        for track_id in ids:
            old = self.references.get(track_id)
            if track_id not in whole or (old is not None and (track_id in touching or track_id in watched)):
                continue
            hist = colour_histogram(image, labels, track_id, boxes[track_id])
            if hist is not None:
                self.references[track_id] = hist if old is None else (1 - EMA) * old + EMA * hist
