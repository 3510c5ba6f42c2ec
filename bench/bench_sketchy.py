"""Benchmark: the real Sketchy sample (a robot's cameras, not a generator) tracked from first-frame boxes.

The sample (``../shared/fixtures/sketchy/example_data.tfrecords``, 4 timesteps of a DeepMind Sketchy
episode) carries no segmentation, so this bench makes its own reference masks: the three objects in the
basket (a red cube, a green cube, a blue ball) are saturated colours on grey, and each object's mask is the
largest connected region of its hue inside a search window placed by hand once per camera (``OBJECTS``;
the windows also keep out the red robot arm and the blue cables). The colour rule is exact enough to judge
box-sized errors, not a pixel-perfect annotation: read differences under ~2 mIoU as ties.

Each method gets the reference masks' bounding boxes in frame 0 and is scored on frames 1-3 (A.8 mIoU,
as the benchmark elsewhere): SAVi checkpoints through the `Tracker` at the camera's size (what the node
publishes), the untrained feature-prototype baseline, the static first-frame box, CSRT and CSRT + GrabCut.

Run: ``.venv/bin/python bench/bench_sketchy.py [--checkpoints default v6] [--scale 0.5]``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import torch

from savi_core.model.checkpoint import load_checkpoint
from savi_core.numerics import flush_denormals
from savi_core.tracking.tracker import Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from training import metrics
from training.baselines import csrt_baselines, feature_prototype_model, static_box_baseline
from training.datasets.sketchy import read_camera_frames
from training.datasets.tfrecord import scan_records
from training.evaluate import GRABCUT_ITERATIONS, first_frame_detections

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "sketchy" / "example_data.tfrecords"

# OpenCV hue ranges (0-179) of the three objects' colours.
HUES = {"red": ((0, 10), (166, 180)), "green": ((40, 85),), "blue": ((95, 130),)}

# Per camera: object -> search window (x0, y0, x1, y1) in the camera's full-size pixels, placed by eye on
# frame 0 around each object with a margin (the objects do not move in these 4 timesteps; the gripper does).
OBJECTS = {
    "pixels/basket_front_left": {
        "red": (380, 300, 510, 440),
        "green": (405, 275, 485, 325),
        "blue": (555, 255, 660, 360),
    },
    "pixels/basket_front_right": {
        "red": (250, 232, 350, 330),
        "green": (400, 260, 468, 325),
        "blue": (328, 283, 436, 390),
    },
    "pixels/basket_back_left": {"red": (592, 75, 670, 168), "green": (488, 120, 556, 184), "blue": (464, 45, 541, 126)},
}


def reference_ids(frames: np.ndarray, windows: dict[str, tuple[int, int, int, int]]) -> np.ndarray:
    """Object ids ``[T, H, W]`` (1.. in ``windows`` order, 0 = background) by the colour rule above."""
    ids = np.zeros(frames.shape[:3], np.int64)
    for t, frame in enumerate(frames):
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.int32)
        saturated = (hsv[..., 1] > 90) & (hsv[..., 2] > 40)
        for index, (name, (x0, y0, x1, y1)) in enumerate(windows.items(), start=1):
            hue = np.zeros_like(saturated)
            for low, high in HUES[name]:
                hue |= (hsv[..., 0] >= low) & (hsv[..., 0] < high)
            inside = np.zeros_like(saturated)
            inside[y0:y1, x0:x1] = True
            mask = cv2.morphologyEx((saturated & hue & inside).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5)))
            count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
            if count < 2:
                raise RuntimeError(f"no {name} region in frame {t}'s window {(x0, y0, x1, y1)}")
            ids[t][labels == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])] = index
    return ids


def first_frame_boxes(ids: np.ndarray, num_objects: int) -> torch.Tensor:
    """Normalised yxyx ``[N, 4]`` boxes of each object's frame-0 mask (pixel edges, as a detector's)."""
    height, width = ids.shape[1:]
    boxes = []
    for index in range(1, num_objects + 1):
        ys, xs = np.nonzero(ids[0] == index)
        boxes.append([ys.min() / height, xs.min() / width, (ys.max() + 1) / height, (xs.max() + 1) / width])
    return torch.tensor(boxes, dtype=torch.float32)


def track(tracker: Tracker, frames: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
    """The Tracker's label maps ``[T, H, W]`` with the boxes as frame-0 detections (id i + 1)."""
    tracker.reset()
    size = frames.shape[1:3]
    detections = first_frame_detections(boxes, torch.ones(len(boxes)), size)
    out = []
    for t, frame in enumerate(frames):
        out.append(torch.from_numpy(tracker.step(frame, detections if t == 0 else None).label_map.astype(np.int64)))
    return torch.stack(out)


def main() -> int:
    flush_denormals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", default=["default", "v6"], help="names or paths")
    parser.add_argument("--scale", type=float, default=0.5, help="camera size as a share of the sample's")
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    args = parser.parse_args()
    if not args.sample.is_file():
        parser.error(f"Sketchy sample not found: {args.sample}")
    from savi_ros.model_store import resolve_checkpoint

    methods: dict[str, object] = {}
    for name in args.checkpoints:
        model, _ = load_checkpoint(resolve_checkpoint(name))
        methods[name] = Tracker(model, TrackerConfig(), device="cpu")
    methods["feature_prototype"] = Tracker(
        feature_prototype_model(), dataclasses.replace(TrackerConfig(), mask_source="attention"), device="cpu"
    )
    scores: dict[str, list[float]] = {name: [] for name in [*methods, "static_box", "csrt_box", "csrt_grabcut"]}
    for camera, windows in OBJECTS.items():
        full = read_camera_frames(args.sample, scan_records(args.sample), camera)
        ids_full = reference_ids(full, windows)
        height, width = (round(s * args.scale) for s in full.shape[1:3])
        frames = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in full])
        gt = torch.from_numpy(
            np.stack([cv2.resize(i, (width, height), interpolation=cv2.INTER_NEAREST) for i in ids_full])
        )
        n = len(windows)
        boxes = first_frame_boxes(ids_full, n)
        preds = {name: track(tracker, frames, boxes) for name, tracker in methods.items()}
        preds["static_box"] = static_box_baseline(boxes[None], torch.ones(1, n), len(frames), height, width)[0]
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None]
        for key, (ids, _) in csrt_baselines(video, boxes[None], torch.ones(1, n), GRABCUT_ITERATIONS).items():
            preds[key] = ids[0]
        row = []
        for name, pred in preds.items():
            value = 100 * float(metrics.miou(pred[None], gt[None], n)[0])
            scores[name].append(value)
            row.append(f"{name} {value:.1f}")
        print(f"{camera} ({width}x{height}, {n} objects, frames 1-{len(frames) - 1}): " + ", ".join(row), flush=True)
    print("mean mIoU over cameras: " + ", ".join(f"{k} {np.mean(v):.1f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
