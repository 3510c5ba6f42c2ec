"""Benchmark: re-identification through the Tracker, dormancy on vs off (issue 25).

Scenes of the re-identification families, 2D (`savi_scenes.generator` with ``occluder`` and ``exits``:
objects pass whole behind a pillar, leave the view and come back) and 3D (`savi_scenes.physics3d` with
``occluder`` and ``exits``: a static pillar, and a camera that pans away and back), run through the
Tracker with a detector that sends id-less ground-truth boxes of the visible objects every
`DETECT_EVERY` frames. Reported: reappearances (an object back after `GONE` or more frames unseen, that
had an id before) resumed under its original id by `RESUME_WITHIN` frames after the first detection that
sees it, under a new id, or not picked up, the failures split by where the original id was then (a live
but lost track, dormant, ended); false revivals (a revived or reclaimed id on another object: `judge_revival`,
and apart from them those on their own object and on another too); IDF1 and ID
switches (motmetrics, mask IoU >= 0.5); beside "resumed", the reappearances resumed under the object's own id
(`owners`: the last id it showed before the gap that IDF1's id-object matching gives it), which a slot of
another track passing over it for a few frames before it vanished does not change. ``--cost`` adds
``Tracker.step``'s time with 10 dormant tracks beside none. Tune on ``--split dev``, report ``--split held-out``. Run:
``PYTHONPATH=. .venv/bin/python bench/bench_reid.py --split held-out --scenes 15 --threads 1 [--world 2d|3d] [--cost]``;
``--json FILE`` writes the totals for `training.results_tables` (docs/results/reid_held_out.json).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from pathlib import Path
from typing import Iterator

import motmetrics as mm
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from savi_core.model.checkpoint import load_checkpoint
from savi_core.numerics import flush_denormals
from savi_core.tracking.geometry import centre_distance
from savi_core.tracking.reid import VIEWS, Candidate, Looks
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from savi_scenes.generator import Scene, SceneConfig, generate_scene
from savi_scenes.physics3d import PhysicsSceneConfig, generate_physics_scene

DETECT_EVERY = 6  # a detector slower than the camera
RESUME_WITHIN = 2  # frames after the first detection that sees a returning object
GONE = 3  # frames unseen for a comeback to count as a reappearance
MIN_PIXELS = 64  # the detector sees an object with at least this many visible pixels
FPS = 10.0  # stamps
SPLITS = {"dev": 7000, "held-out": 8000}  # first seeds; training's scenes use seeds below 5000
OWN = 0.5  # an id is on an object when it covers at least this share of the object's visible pixels


def overlaps(seg: np.ndarray, labels: np.ndarray, objects: int) -> tuple[np.ndarray, dict[int, int], np.ndarray]:
    """(pixels per (object, id) ``[N+1, ids]``, id -> column, pixels per object) for one frame."""
    ids = np.unique(labels[labels > 0])
    column = {int(i): c for c, i in enumerate(ids)}
    index = np.searchsorted(ids, labels) if ids.size else np.zeros_like(labels, np.int64)
    joint = np.zeros((objects + 1, ids.size), np.int64)
    on = labels > 0
    np.add.at(joint, (seg[on].astype(np.int64), index[on]), 1)
    return joint, column, np.bincount(seg.ravel(), minlength=objects + 1)


STATES = ("lost", "dormant", "ended")  # where the original id was when the returning object was detected


def _state(track_id: int, live: set[int], dormant: set[int]) -> str:
    return "lost" if track_id in live else "dormant" if track_id in dormant else "ended"


def detections(scene: Scene, t: int) -> list[Detection]:
    """Id-less ground-truth boxes of the objects showing at least `MIN_PIXELS` pixels on frame ``t``."""
    _, height, width = scene.segmentations.shape
    pixels = np.bincount(scene.segmentations[t].ravel(), minlength=scene.num_objects + 1)
    return [
        Detection(tuple(float(v) for v in scene.boxes[t, k][[1, 0, 3, 2]] * [width, height, width, height]))
        for k in range(scene.num_objects)
        if pixels[k + 1] >= MIN_PIXELS
    ]


def scenes(world: str, first: int, count: int, height: int, width: int, frames: int) -> Iterator[Scene]:
    """The family's scenes, one at a time (a hundred 3D scenes of 60 frames at 320x240 held at once take
    about 8 GB): 2D (a pillar, exits through the image border) or 3D (a pillar, a camera pan)."""
    if world == "2d":
        config = SceneConfig(
            height=height, width=width, num_frames=frames, min_objects=2, max_objects=4, occluder=True, exits=True
        )
        return (generate_scene(seed, config) for seed in range(first, first + count))
    physics = PhysicsSceneConfig(
        height=height, width=width, num_frames=frames, min_objects=2, max_objects=4, occluder=True, exits=True
    )
    return (generate_physics_scene(seed, physics) for seed in range(first, first + count))


def run(model: torch.nn.Module, scene: Scene, tracker_config: TrackerConfig, verbose: bool = False) -> dict[str, float]:
    """One scene's counts; ``verbose`` prints each failure and each revival (frame, object, ids)."""
    tracker = Tracker(model, tracker_config, device="cpu")
    frame = [0]
    if verbose:
        _print_matches(tracker, frame)
    n = scene.num_objects
    num_frames, height, width = scene.segmentations.shape
    id_on = np.zeros((num_frames, n), np.int64)  # the id covering an object, 0 = none
    states: list[tuple[set[int], set[int]]] = []  # per frame: (live ids, dormant ids) after the step
    revivals: list[tuple[int, int]] = []
    acc = mm.MOTAccumulator(auto_id=True)
    for t in range(num_frames):
        frame[0] = t
        seg = scene.segmentations[t]
        dets = detections(scene, t) if t % DETECT_EVERY == 0 else None
        result = tracker.step(scene.video[t], dets, stamp=t / FPS)
        joint, column, area = overlaps(seg, result.label_map, n)
        ids = sorted(column)
        for k in range(n):
            if area[k + 1] and ids:
                best = int(np.argmax(joint[k + 1]))
                if joint[k + 1, best] >= OWN * area[k + 1]:
                    id_on[t, k] = ids[best]
        revivals += [(t, i) for i in result.revived + result.reclaimed]
        states.append((set(result.live_track_ids), set(result.dormant_track_ids)))
        gt = [k for k in range(n) if area[k + 1]]
        dist = np.full((len(gt), len(ids)), np.nan)
        for a, k in enumerate(gt):
            for b, i in enumerate(ids):
                inter = joint[k + 1, column[i]]
                iou = inter / (area[k + 1] + joint[:, column[i]].sum() - inter)
                if iou >= 0.5:
                    dist[a, b] = 1 - iou
        acc.update(gt, ids, dist)
    counts = dict(
        reappearances=0,
        resumed=0,
        resumed_own=0,
        new_id=0,
        missed=0,
        revivals=len(revivals),
        false_revivals=0,
        merged_revivals=0,
        original_anothers=0,
        original_nobodys=0,
    )
    counts.update({f"{outcome} {state}": 0 for outcome in ("new_id", "missed") for state in STATES})
    visible_all = scene.visible
    visible = scene.visible & (
        np.stack([np.bincount(s.ravel(), minlength=n + 1)[1:] for s in scene.segmentations]) >= MIN_PIXELS
    )
    if verbose:
        for k in range(n):
            print(f"    object {k}: {_runs(id_on[:, k], visible_all[:, k])}")
        print(f"    frames of visible objects without an id: {_uncovered(id_on, visible_all, visible)}")
    own = owners(id_on)
    for k in range(n):
        unseen, original, own_original = 0, 0, 0
        for t in range(num_frames):
            if not visible[t, k]:
                unseen += 1
                continue
            if unseen >= GONE and original:
                detected = next((f for f in range(t, num_frames) if f % DETECT_EVERY == 0 and visible[f, k]), None)
                if detected is not None:
                    window = id_on[detected : detected + RESUME_WITHIN + 1, k]
                    counts["reappearances"] += 1
                    if (window == (own_original or original)).any():
                        counts["resumed_own"] += 1
                    if (window == original).any():
                        counts["resumed"] += 1
                    else:
                        outcome = "new_id" if window.any() else "missed"
                        state = _state(original, *states[detected])
                        counts[outcome] += 1
                        counts[f"{outcome} {state}"] += 1
                        holder = whose(original, own)
                        if holder is None:
                            counts["original_nobodys"] += 1
                        elif holder != k:
                            counts["original_anothers"] += 1
                        if verbose:
                            print(
                                f"    {outcome}: object {k} (id {original}, own {own_original}, {state}) back on "
                                f"frame {t}, detected on {detected}, ids on it then {window.tolist()}"
                            )
            unseen = 0
            original = int(id_on[t, k]) or original
            own_original = original if original == own[k] else own_original
    for t, track_id in revivals:
        before = [k for k in range(n) if (id_on[:t, k] == track_id).any()]
        now = [k for k in range(n) if id_on[t, k] == track_id]
        verdict = judge_revival(before, now)
        if verdict in ("false", "merged"):
            counts[f"{verdict}_revivals"] += 1
        if verbose:
            print(f"    revival: id {track_id} on frame {t}: objects before {before}, now {now}")
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches"], name="scene")
    counts["idf1"] = float(summary["idf1"].iloc[0])
    counts["switches"] = int(summary["num_switches"].iloc[0])
    return counts


def owners(id_on: np.ndarray) -> list[int]:
    """Each object's own id, as IDF1 matches ids to objects (one to one, most object-frames covered, over the
    whole video); 0 for an object no id is matched to. The "own id" column takes as a returning object's
    original id the last id it showed before the gap that is its own, so that another track's slot passing
    over it for a few frames before it vanished (an id that is another object's) does not define it."""
    ids = np.unique(id_on[id_on > 0])
    if not ids.size:
        return [0] * id_on.shape[1]
    frames = np.stack([(id_on == i).sum(axis=0) for i in ids], axis=1)  # [objects, ids]
    rows, cols = linear_sum_assignment(-frames)
    own = [0] * id_on.shape[1]
    for k, c in zip(rows, cols):
        if frames[k, c]:
            own[k] = int(ids[c])
    return own


def whose(track_id: int, own: list[int]) -> int | None:
    """The object whose own id (`owners`) ``track_id`` is; None when it is no object's. A failed reappearance
    whose original id is another object's, or no object's, lost its identity before it vanished (a slot that
    slid over from another object, one mask over two objects): no revival rule can give it back."""
    return next((k for k, i in enumerate(own) if i == track_id), None)


def _runs(ids: np.ndarray, visible: np.ndarray) -> str:
    """An object's ids over the frames as runs: ``first-last:id`` (``-`` unseen, ``0`` seen but no id)."""
    marks = [str(i) if v else "-" for i, v in zip(ids.tolist(), visible.tolist())]
    runs, start = [], 0
    for t in range(1, len(marks) + 1):
        if t == len(marks) or marks[t] != marks[start]:
            runs.append(f"{start}-{t - 1}:{marks[start]}")
            start = t
    return " ".join(runs)


def _uncovered(id_on: np.ndarray, shown: np.ndarray, detectable: np.ndarray) -> str:
    """Why object-frames that show pixels have no id (each an IDF1 miss): under `MIN_PIXELS` (no detector
    sees them), not yet detected since they came into view, or tracked but covered under `OWN`."""
    small = waiting = covered_less = 0
    for k in range(id_on.shape[1]):
        detected = False
        for t in range(id_on.shape[0]):
            if not detectable[t, k]:
                detected = False
            elif t % DETECT_EVERY == 0:
                detected = True
            if not shown[t, k] or id_on[t, k]:
                continue
            if not detectable[t, k]:
                small += 1
            elif not detected:
                waiting += 1
            else:
                covered_less += 1
    return (
        f"under {MIN_PIXELS} px {small}, not yet detected {waiting}, tracked but covered under {OWN:g} {covered_less}"
    )


def _print_matches(tracker: Tracker, frame: list[int]) -> None:
    """Print each comparison the tracker's dormancy makes: frame (``frame[0]``), new track and its box's size,
    each sleeper with the similarity, its size and the distance from its last box (share of the image's
    diagonal), and the result."""
    dormancy = tracker._book.dormancy
    match = dormancy.match

    def logged(candidates, threshold, diagonal, lost=()):
        result = match(candidates, threshold, diagonal, lost)
        for cand in candidates:
            size = (cand.box[2:] - cand.box[:2]).round().tolist()
            rows = []
            for s in [*dormancy.dormant.values(), *lost]:
                shift = centre_distance(cand.box, s.box) / diagonal
                rows.append(
                    f"{s.track_id}{'L' if s in lost else 'D'}:{dormancy.similarity(s.track_id, cand.look):.2f}"
                    f"@{[round(v) for v in s.size]}~{shift:.2f}"
                )
            print(
                f"      frame {frame[0]} compare new {cand.track_id} {size} -> {result.get(cand.track_id)}: "
                + " ".join(rows)
            )
        return result

    dormancy.match = logged


def main() -> None:
    flush_denormals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument(
        "--split", choices=tuple(SPLITS), default="held-out", help="dev: seeds to tune on; held-out: seeds to report"
    )
    parser.add_argument("--first-seed", type=int, default=None, help="instead of the split's first seed")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--size", default="240x320", help="HxW")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--world", choices=("2d", "3d", "both"), default="both")
    parser.add_argument("--dormancy", choices=("on", "off", "both"), default="both", help="on alone when tuning")
    parser.add_argument("--cost", action="store_true", help="and time Tracker.step with 10 dormant tracks vs none")
    parser.add_argument("--reid-threshold", type=float, default=TrackerConfig().reid_threshold)
    parser.add_argument("--verbose", action="store_true", help="print each failure, revival and comparison")
    parser.add_argument("--json", type=Path, default=None, help="write the totals here (results_tables kind reid)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from savi_ros.model_store import resolve_checkpoint

    model, _ = load_checkpoint(resolve_checkpoint(args.checkpoint))
    height, width = (int(v) for v in args.size.lower().split("x"))
    first = SPLITS[args.split] if args.first_seed is None else args.first_seed
    print(f"{args.split if args.first_seed is None else 'custom'} seeds {first}..{first + args.scenes - 1}")
    results = {
        "checkpoint": args.checkpoint,
        "split": args.split if args.first_seed is None else "custom",
        "seeds": [first, first + args.scenes - 1],
        "size": args.size,
        "frames": args.frames,
        "reid_threshold": args.reid_threshold,
        "worlds": {},
    }
    on = TrackerConfig().dormant_seconds
    configs = [
        TrackerConfig(dormant_seconds=dormant, reid_threshold=args.reid_threshold)
        for dormant in {"off": (0.0,), "on": (on,), "both": (0.0, on)}[args.dormancy]
    ]
    for world in ("2d", "3d") if args.world == "both" else (args.world,):
        rows: list[list[dict[str, float]]] = [[] for _ in configs]
        first_scene = None  # --cost times the Tracker on it, after the totals
        for i, scene in enumerate(scenes(world, first, args.scenes, height, width, args.frames)):
            for config, done in zip(configs, rows):
                done.append(_scene_run(model, scene, config, args.verbose, first + i))
            first_scene = first_scene or scene
        for config, done in zip(configs, rows):
            totals = report(world, config.dormant_seconds, done)
            results["worlds"].setdefault(world, {})["on" if config.dormant_seconds > 0 else "off"] = totals
        if args.cost:
            step_cost(model, first_scene)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def _scene_run(
    model: torch.nn.Module, scene: Scene, config: TrackerConfig, verbose: bool, seed: int
) -> dict[str, float]:
    if verbose:
        print(f"  seed {seed} (dormant_seconds {config.dormant_seconds:g})", flush=True)
    return run(model, scene, config, verbose)


def judge_revival(before: list[int], now: list[int]) -> str:
    """A revived (or reclaimed) id, from the objects it covered before and the objects it covers on the revival
    frame: "false" when it covers only objects it never covered (another object), "merged" when it covers its
    own object and one it never covered too (one mask over two objects: a segmentation error, which mIoU and
    IDF1 count, not an identity one), else "right" ("unseen" when either list is empty). Independent of the
    objects' numbering."""
    if not before or not now:
        return "unseen"
    strangers = [k for k in now if k not in before]
    return "right" if not strangers else "false" if len(strangers) == len(now) else "merged"


def report(world: str, dormant: float, rows: list[dict[str, float]]) -> dict[str, float]:
    """One line of totals, one of the failures by where the original id was; returns the totals (IDF1: the
    mean of the scenes')."""
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "idf1"}
    idf1 = 100 * float(np.mean([r["idf1"] for r in rows]))
    share = 100 * total["resumed"] / max(total["reappearances"], 1)
    own = 100 * total["resumed_own"] / max(total["reappearances"], 1)
    print(
        f"{world} dormant_seconds {dormant:g}: reappearances {total['reappearances']}: resumed under the original "
        f"id {total['resumed']} ({share:.0f}%), new id {total['new_id']}, not picked up {total['missed']}; "
        f"revivals {total['revivals']}, false {total['false_revivals']} (on its own object and another too: "
        f"{total['merged_revivals']}); IDF1 {idf1:.1f} (mean of scenes), "
        f"ID switches {total['switches']}; resumed under its own id (IDF1's id-object matching) "
        f"{total['resumed_own']} ({own:.0f}%)"
    )
    failures = [f"{k} {total[k]}" for k in total if " " in k and total[k]]
    print(f"  failures by where the original id was at the detection: {', '.join(failures) or 'none'}")
    print(
        f"  failures whose original id is another object's own id {total['original_anothers']}, no object's "
        f"{total['original_nobodys']} (IDF1's id-object matching)"
    )
    return {**{k: int(v) for k, v in total.items()}, "idf1": idf1 / 100}


def step_cost(model: torch.nn.Module, scene: Scene, sleepers: int = 10) -> None:
    """``Tracker.step`` on one scene with ``sleepers`` dormant tracks beside its own vs none, the two trackers
    stepped on the same frames in alternating order (a loaded machine slows both alike). The sleepers
    are put to sleep through the tracker's dormancy with full galleries of random looks (so every new
    detection is compared with all of them and revives none): the scene plays out the same in both."""
    plain, burdened = (Tracker(model, TrackerConfig(dormant_seconds=1e6), device="cpu") for _ in range(2))
    num_frames, height, width = scene.segmentations.shape
    rng = np.random.default_rng(0)
    times: dict[int, list[float]] = {id(plain): [], id(burdened): []}
    for t in range(num_frames):
        dets = detections(scene, t) if t % DETECT_EVERY == 0 else None
        for tracker in (
            (plain, burdened) if (t + t // DETECT_EVERY) % 2 else (burdened, plain)
        ):  # both orders on both kinds of frame
            start = time.perf_counter()
            tracker.step(scene.video[t], dets, stamp=t / FPS)
            times[id(tracker)].append((time.perf_counter() - start) * 1e3)
        if t == 0:  # the look's length is the model's: take it from a look of this frame
            dims = len(
                Looks(scene.video[0], np.ones((height, width), np.uint16), burdened._features).of(
                    1, np.array([0, 0, width, height])
                )
            )
            dormancy = burdened._book.dormancy
            for k in range(sleepers):
                track_id = 60000 + k
                dormancy.sleep(track_id, "", np.array([0.0, 0.0, 40.0, 40.0]), (40.0, 40.0), 0.0)
                for _ in range(VIEWS):
                    look = rng.normal(size=dims).astype(np.float32)
                    dormancy.gallery.setdefault(track_id, deque(maxlen=VIEWS)).append(look / np.linalg.norm(look))
    assert len(burdened.dormant_tracks) >= sleepers, "the sleepers must stay dormant through the scene"
    a, b = (np.array(times[id(x)][1:]) for x in (plain, burdened))
    on = np.arange(1, num_frames) % DETECT_EVERY == 0
    print(
        f"  Tracker.step, {sleepers} dormant tracks vs none (same frames, alternating): mean {b.mean():.2f} vs "
        f"{a.mean():.2f} ms, median per-frame difference {np.median(b - a):+.2f} ms "
        f"(detection frames {np.median(b[on] - a[on]):+.2f}, others {np.median(b[~on] - a[~on]):+.2f})"
    )
    # The work the sleepers add, alone (the end-to-end difference drowns in a loaded machine's noise):
    # every step checks their windows; a step with a new object also takes its look and compares it.
    dormancy, labels = burdened._book.dormancy, burdened._last_labels
    box = np.array([0.0, 0.0, width / 4, height / 4])
    labels = labels.copy()
    labels[: height // 4, : width // 4] = 65535
    repeats = []
    for _ in range(200):
        start = time.perf_counter()
        dormancy.expire(num_frames / FPS, 1e6)
        look = Looks(scene.video[-1], labels, burdened._features).of(65535, box)
        dormancy.match([Candidate(65535, "", box, look)], 0.6, float(np.hypot(height, width)))
        repeats.append((time.perf_counter() - start) * 1e3)
    print(
        f"  the sleepers' own work: {np.median(repeats):.3f} ms on a step with a new object to compare "
        f"(median of 200), the window check alone on the others"
    )


if __name__ == "__main__":
    main()
