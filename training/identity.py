"""Identity over time: ID switches and IDF1 of id maps against ground truth, by motmetrics.

Each frame (the first, conditioned, one skipped like the other metrics) matches ground-truth objects to
predicted ids by mask IoU (a pair counts only at IoU >= 0.5, motmetrics' distance 1 - IoU <= 0.5); the
accumulated matches give motmetrics' ID switches and IDF1.
"""

from __future__ import annotations

import motmetrics
import numpy as np
import torch

MAX_DISTANCE = 0.5


def _iou_distances(gt: np.ndarray, pred: np.ndarray, gt_ids: list[int], pred_ids: list[int]) -> np.ndarray:
    distances = np.full((len(gt_ids), len(pred_ids)), np.nan)
    for r, g in enumerate(gt_ids):
        gm = gt == g
        for c, p in enumerate(pred_ids):
            pm = pred == p
            union = np.logical_or(gm, pm).sum()
            iou = np.logical_and(gm, pm).sum() / union if union else 0.0
            if 1.0 - iou <= MAX_DISTANCE:
                distances[r, c] = 1.0 - iou
    return distances


def identity_counts(
    pred: torch.Tensor, gt: torch.Tensor, frame_mask: torch.Tensor | None = None, skip_first: bool = True
) -> dict[str, int]:
    """``pred``, ``gt`` int ``[B,T,H,W]`` (0 = background) -> motmetrics' counts summed over the batch:
    id_switches, object_frames, idtp, idfp, idfn (add them up over batches, then :func:`identity_summary`)."""
    pred_np, gt_np = pred.cpu().numpy(), gt.cpu().numpy()
    valid = np.ones(gt_np.shape[:2], bool) if frame_mask is None else frame_mask.cpu().numpy().astype(bool)
    switches, object_frames, idtp, idfp, idfn = 0, 0, 0, 0, 0
    for b in range(gt_np.shape[0]):
        acc = motmetrics.MOTAccumulator(auto_id=True)
        for t in range(1 if skip_first else 0, gt_np.shape[1]):
            if not valid[b, t]:
                continue
            gt_ids = [int(v) for v in np.unique(gt_np[b, t]) if v != 0]
            pred_ids = [int(v) for v in np.unique(pred_np[b, t]) if v != 0]
            acc.update(gt_ids, pred_ids, _iou_distances(gt_np[b, t], pred_np[b, t], gt_ids, pred_ids))
            object_frames += len(gt_ids)
        summary = motmetrics.metrics.create().compute(acc, metrics=["num_switches", "idtp", "idfp", "idfn"])
        switches += int(summary["num_switches"].iloc[0])
        idtp += int(summary["idtp"].iloc[0])
        idfp += int(summary["idfp"].iloc[0])
        idfn += int(summary["idfn"].iloc[0])
    return {"id_switches": switches, "object_frames": object_frames, "idtp": idtp, "idfp": idfp, "idfn": idfn}


def identity_summary(counts: dict[str, int]) -> dict[str, float]:
    """IDF1 and ID switches per 100 ground-truth object-frames from summed counts."""
    denominator = 2 * counts["idtp"] + counts["idfp"] + counts["idfn"]
    frames = counts["object_frames"]
    return {
        "idf1": 2 * counts["idtp"] / denominator if denominator else float("nan"),
        "id_switches": counts["id_switches"],
        "object_frames": frames,
        "id_switches_per_100": 100.0 * counts["id_switches"] / frames if frames else float("nan"),
    }
