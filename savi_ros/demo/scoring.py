"""Scoring what the demo recorded: per-scene FG-ARI / mIoU against regenerated ground truth, latency,
the overlay video and the contact sheet; and the untrained baselines on the same scenes, for comparison."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from training.metrics import fg_ari, miou
from savi_ros.demo.options import DemoOptions
from savi_ros.demo.recorder import Recording
from savi_ros.overlay import contact_sheet, draw_overlay

SHEET_FRAMES = 8


def _percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    v = np.asarray(values) * 1000.0
    return {
        "count": len(values),
        "p50_ms": float(np.percentile(v, 50)),
        "p90_ms": float(np.percentile(v, 90)),
        "p99_ms": float(np.percentile(v, 99)),
        "max_ms": float(v.max()),
    }


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _caption(track_id: int, class_id: str) -> str:
    return str(track_id) if class_id in ("", "object") else f"{track_id} {class_id}"


def _mean_defined(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else None


def evaluate(
    rec: Recording, opts: DemoOptions, sheet_frames: int = SHEET_FRAMES, banner: str = ""
) -> tuple[dict[str, Any], list[np.ndarray], np.ndarray]:
    """Per-scene metrics, the overlay frames (every published frame) and the contact sheet."""

    camera = opts.camera_config()
    by_frame = {(tag.scene, tag.frame): (stamp, tag) for stamp, tag in rec.tags.items()}
    seeds = {tag.scene: tag.seed for tag in rec.tags.values()}
    scenes_out, frames_out, sheet_rows = [], [], []
    sheet_at = set(np.linspace(0, opts.frames - 1, min(sheet_frames, opts.frames)).round().astype(int).tolist())
    for index in range(opts.scenes):
        seed = seeds.get(index, opts.seed + index)
        scene = camera.make_scene(seed)
        gt = scene.segmentations.astype(np.int64)
        pred = np.zeros_like(gt)
        received = np.zeros(opts.frames, bool)
        row = []
        for t in range(opts.frames):
            stamp, _ = by_frame.get((index, t), (None, None))
            labels = rec.masks.get(stamp) if stamp is not None else None
            status = "" if labels is not None else (" (no output)" if stamp is not None else " (not seen)")
            if labels is not None:
                if labels.shape != gt.shape[1:]:
                    raise ValueError(f"masks of scene {index} frame {t} are {labels.shape}, images {gt.shape[1:]}")
                pred[t] = labels
                received[t] = True
            tracks = rec.tracks.get(stamp, []) if stamp is not None else []
            frame = draw_overlay(
                scene.video[t],
                labels,
                boxes={tid: box for tid, _, box, _ in tracks},
                captions={tid: _caption(tid, cls) for tid, cls, _, _ in tracks},
                banner=f"scene {index} frame {t}{status}{banner}",
            )
            frames_out.append(frame)
            if t in sheet_at:
                row.append(frame)
        sheet_rows.append(row)
        present = np.array([(gt == i + 1).any() for i in range(scene.num_objects)])
        ari, iou = _scene_scores(pred, gt, received, scene.num_objects, present)
        scenes_out.append(
            {
                "scene": index,
                "seed": seed,
                "objects": scene.num_objects,
                "frames_published": sum((index, t) in by_frame for t in range(opts.frames)),
                "frames_with_output": int(received.sum()),
                "fg_ari": _nan_to_none(ari),
                "miou": _nan_to_none(iou),
            }
        )
    stamps_of_demo = set(rec.tags)
    latency = [v for s, v in rec.latency_s.items() if s in stamps_of_demo]
    metrics = {
        "scenes": scenes_out,
        "mean_fg_ari": _mean_defined(scenes_out, "fg_ari"),
        "mean_miou": _mean_defined(scenes_out, "miou"),
        "latency": _percentiles(latency),
        "track_ids_seen": sorted({tid for tracks in rec.tracks.values() for tid, *_ in tracks}),
        "label_info_messages": len(rec.label_info),
    }
    return metrics, frames_out, contact_sheet(sheet_rows)


def _scene_scores(
    pred: np.ndarray, gt: np.ndarray, received: np.ndarray, num_objects: int, present: np.ndarray
) -> tuple[float, float]:
    """(FG-ARI, mIoU) of one scene's label maps, first frame not scored, frames without output excluded."""
    frame_mask = torch.from_numpy(received)[None]
    pred_t, gt_t = torch.from_numpy(pred)[None], torch.from_numpy(gt)[None]
    ari = float(fg_ari(pred_t, gt_t, skip_first=True, frame_mask=frame_mask)[0])
    iou = float(
        miou(
            pred_t,
            gt_t,
            num_objects,
            skip_first=True,
            frame_mask=frame_mask,
            instance_mask=torch.from_numpy(present)[None],
        )[0]
    )
    return ari, iou


def baseline_scores(opts: DemoOptions, seeds: list[int]) -> dict[str, dict[str, float | None]]:
    """Mean FG-ARI / mIoU of the untrained baselines on the demo's scenes, given the same first-frame boxes:
    frozen-feature prototypes through the Tracker, and OpenCV's CSRT + GrabCut (the project's benchmark
    baselines, from ``training.baselines``)."""
    from savi_core.tracking.tracker import Tracker
    from training.baselines import FEATURE_PROTOTYPE, csrt_baselines, feature_prototype_model
    from training.evaluate import first_frame_detections

    camera = opts.camera_config()
    prototypes = Tracker(feature_prototype_model())
    rows: dict[str, list[dict[str, Any]]] = {FEATURE_PROTOTYPE: [], "csrt_grabcut": []}
    for seed in seeds:
        scene = camera.make_scene(seed)
        gt = scene.segmentations.astype(np.int64)
        present = np.array([(gt == i + 1).any() for i in range(scene.num_objects)])
        boxes = torch.from_numpy(scene.boxes[0]).float()
        visible = torch.from_numpy(scene.visible[0]).float()
        detections = first_frame_detections(boxes, visible, gt.shape[1:])
        prototypes.reset()
        pred = np.stack(
            [prototypes.step(frame, detections if t == 0 else None).label_map for t, frame in enumerate(scene.video)]
        ).astype(np.int64)
        video = torch.from_numpy(scene.video).permute(0, 3, 1, 2).unsqueeze(0).float() / 255.0
        cut, _ = csrt_baselines(video, boxes[None], visible[None], grabcut_iterations=3)["csrt_grabcut"]
        received = np.ones(len(gt), bool)
        for name, ids in ((FEATURE_PROTOTYPE, pred), ("csrt_grabcut", cut[0].numpy())):
            ari, iou = _scene_scores(ids, gt, received, scene.num_objects, present)
            rows[name].append({"fg_ari": _nan_to_none(ari), "miou": _nan_to_none(iou)})
    return {
        name: {"mean_fg_ari": _mean_defined(r, "fg_ari"), "mean_miou": _mean_defined(r, "miou")}
        for name, r in rows.items()
    }


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), max(1.0, fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v)")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _format(value: float | None, digits: int = 3) -> str:
    return "  n/a" if value is None else f"{value:.{digits}f}"


def print_table(metrics: dict[str, Any]) -> None:
    print(f"{'scene':>5} {'seed':>7} {'objects':>7} {'frames out':>10} {'FG-ARI':>7} {'mIoU':>7}")
    for s in metrics["scenes"]:
        print(
            f"{s['scene']:>5} {s['seed']:>7} {s['objects']:>7} {s['frames_with_output']:>4}/{s['frames_published']:<5} "
            f"{_format(s['fg_ari']):>7} {_format(s['miou']):>7}"
        )
    print(f"{'mean':>5} {'':>26} {_format(metrics['mean_fg_ari']):>7} {_format(metrics['mean_miou']):>7}")
    for name, scores in metrics.get("baselines", {}).items():
        label = f"{name} (untrained)"
        print(f"{label:<32} {_format(scores['mean_fg_ari']):>7} {_format(scores['mean_miou']):>7}")
    lat = metrics["latency"]
    if lat["count"]:
        print(
            f"end-to-end latency over {lat['count']} frames: p50 {lat['p50_ms']:.0f} ms, "
            f"p90 {lat['p90_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms"
        )
    else:
        print("end-to-end latency: no masks received")
