"""Record what the Tracker gives on scripted generated scenes, and compare two recordings bit for bit: a
refactor of the Tracker must leave every label map, track (box, score, area) and event identical.

Cases cover the shipped models (v7 with guided edges, v6 decoder and attention) and tiny random models of each
initializer kind, at camera sizes above and below the model resolution (the OpenCV and torch label routes),
with detections every 6 frames, box / point / mask prompts and removed tracks. Run:
``.venv/bin/python bench/tracker_outputs.py record runs/before [--cases tiny_bbox_points ...]``, change the
code, record ``runs/after``, then ``.venv/bin/python bench/tracker_outputs.py compare runs/before runs/after``
(exit status 1 when anything differs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from savi_core.model.checkpoint import load_checkpoint
from savi_core.model.config import tiny_config
from savi_core.model.savi import SAVi
from savi_core.numerics import flush_denormals
from savi_core.tracking.tracker import Detection, Prompt, Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from savi_scenes import SceneConfig, generate_scene

MODELS = Path(__file__).resolve().parents[1] / "savi_ros" / "models"


def tiny(kind: str, points: bool = False) -> SAVi:
    """A 6-slot random SAVi at 32x32 with ``kind`` of initializer (seeded: the same weights every run)."""
    torch.manual_seed(0)
    return SAVi(tiny_config(num_slots=6, kind=kind, points=points)).eval()


def shipped(name: str) -> nn.Module:
    return load_checkpoint(MODELS / name)[0]


# name -> (model, config, camera size HxW, frames)
CASES: dict[str, tuple[Callable[[], nn.Module], TrackerConfig, tuple[int, int], int]] = {
    "default_240x320": (lambda: shipped("default"), TrackerConfig(), (240, 320), 30),
    "default_480x640": (lambda: shipped("default"), TrackerConfig(), (480, 640), 20),
    "default_bf16": (lambda: shipped("default"), TrackerConfig(precision="bf16"), (240, 320), 12),
    "default_bilinear_small": (
        lambda: shipped("default"),
        TrackerConfig(mask_edges="bilinear", dormant_seconds=2.0),
        (96, 120),
        20,
    ),
    "default_growth_refresh": (
        lambda: shipped("default"),
        TrackerConfig(mask_threshold=0.2, max_area_growth=2.0, reinit="refresh"),
        (180, 200),
        20,
    ),
    "v6_decoder": (
        lambda: shipped("v6"),
        TrackerConfig(mask_source="decoder", gate_margin=0.0, swap_margin=0.0),
        (120, 160),
        16,
    ),
    "v6_attention": (lambda: shipped("v6"), TrackerConfig(dormant_seconds=0.0), (200, 260), 16),
    "tiny_bbox_points": (lambda: tiny("bbox", True), TrackerConfig(min_mask_area=2, mask_threshold=0.1), (64, 48), 16),
    "tiny_com": (lambda: tiny("com"), TrackerConfig(min_mask_area=2, mask_threshold=0.1), (40, 50), 16),
    "tiny_segmentation": (
        lambda: tiny("segmentation"),
        TrackerConfig(min_mask_area=2, mask_threshold=0.1),
        (24, 30),
        16,
    ),
}


def run_case(model: nn.Module, config: TrackerConfig, size: tuple[int, int], frames: int) -> tuple[list, list]:
    """(label maps, log): detections of the first two objects every 6 frames, a track removed on frames 2
    and 9, one prompt of each kind the model takes on frame 3; per frame the result's tracks and events."""
    h, w = size
    scene = generate_scene(3, SceneConfig(height=h, width=w, num_frames=frames))
    tracker = Tracker(model, config, device="cpu")
    maps, log = [], []
    for t in range(frames):
        detections = [
            Detection((float(x0) * w, float(y0) * h, float(x1) * w, float(y1) * h), class_id=c)
            for (y0, x0, y1, x1), seen, c in zip(scene.boxes[t], scene.visible[t], scene.classes)
            if seen
        ][:2]
        if t in (2, 9) and tracker.live_tracks:
            log.append(["removed", tracker.remove_track(sorted(tracker.live_tracks)[0])])
        if t == 3:
            mask = np.zeros((h, w), bool)
            mask[h // 2 : h // 2 + h // 5, w // 5 : w // 2] = True
            prompts = [Prompt(box_xyxy=(1.0, 2.0, w / 3, h / 3)), Prompt(mask=mask, class_id="m")]
            if "points" in tracker.prompt_kinds:
                prompts.append(Prompt(point_xy=(w * 0.7, h * 0.6)))
            try:
                log.append(["prompted", tracker.add_objects(prompts)])
            except ValueError as error:
                log.append(["refused", str(error)])
        r = tracker.step(scene.video[t], detections if t % 6 == 0 else None, stamp=t * 0.5)
        maps.append(r.label_map)
        tracks = [[x.track_id, x.class_id, list(x.box_xyxy), x.score, x.area] for x in r.tracks]
        events = [r.live_track_ids, r.started, r.ended, r.dormant_track_ids, r.slept, r.revived, r.expired]
        log.append([t, tracks, events, r.tracks_changed, r.ignored_detections, tracker.track_at(w / 2, h / 2)])
    return maps, log


def record(prefix: str, names: list[str]) -> None:
    """``prefix``.npz (label maps, ``case/frame``) and ``prefix``.json (tracks and events per case)."""
    maps, logs = {}, {}
    for name in names:
        model_fn, config, size, frames = CASES[name]
        case_maps, logs[name] = run_case(model_fn(), config, size, frames)
        maps.update({f"{name}/{t}": m for t, m in enumerate(case_maps)})
        print(f"{name}: {frames} frames", flush=True)
    np.savez_compressed(f"{prefix}.npz", **maps)
    Path(f"{prefix}.json").write_text(json.dumps(logs))


def compare(before: str, after: str) -> list[str]:
    """What differs between two recordings (empty: identical)."""
    with np.load(f"{before}.npz") as a, np.load(f"{after}.npz") as b:
        if sorted(a.files) != sorted(b.files):
            return [f"label maps of different frames: {sorted(set(a.files) ^ set(b.files))[:5]}"]
        diffs = [
            f"label map {k}"
            for k in sorted(a.files)
            if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])
        ]
        labelled = sum(int((a[k] > 0).sum()) for k in a.files)
        print(f"{len(a.files)} label maps ({labelled} labelled pixels) compared")
    logs_a, logs_b = json.loads(Path(f"{before}.json").read_text()), json.loads(Path(f"{after}.json").read_text())
    return diffs + [f"tracks or events of {name}" for name in sorted(logs_a) if logs_a[name] != logs_b.get(name)]


def main() -> None:
    flush_denormals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the cases, write PREFIX.npz and PREFIX.json")
    rec.add_argument("prefix")
    rec.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    rec.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (kernels may differ with the count: compare like with like)",
    )
    cmp = sub.add_parser("compare", help="compare two recordings")
    cmp.add_argument("before")
    cmp.add_argument("after")
    args = parser.parse_args()
    if args.command == "record":
        torch.set_num_threads(args.threads)
        record(args.prefix, args.cases)
        return
    diffs = compare(args.before, args.after)
    print("identical" if not diffs else "\n".join(["DIFFERENT:", *diffs]))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
