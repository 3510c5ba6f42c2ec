"""DAVIS J&F of id maps against ground truth, by vos-benchmark's per-frame evaluator.

J is each object's mask IoU and F its boundary F-measure (boundaries matched within 0.8% of the image
diagonal); the reported J&F is DAVIS's global score: the mean J and mean F over every (video, object),
averaged. The frames fed are the other metrics' (the first, conditioned, frame skipped; DAVIS also drops the
last). vos-benchmark counts an object that appears in a fed frame of the ground truth, from the first fed
frame where it shows in the ground truth or the prediction; so unlike mIoU, an object seen only on the
skipped first frame is not scored.
"""

from __future__ import annotations

import numpy as np
import torch
from vos_benchmark.evaluator import Evaluator


def davis_scores(
    pred: torch.Tensor, gt: torch.Tensor, frame_mask: torch.Tensor | None = None, skip_first: bool = True
) -> dict[str, list[float]]:
    """``pred``, ``gt`` int ``[B,T,H,W]`` (0 = background, id = object) -> per-object J and F in [0, 1]
    over the batch (concatenate them over batches, then :func:`davis_summary`)."""
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(f"pred and gt must both be [B,T,H,W], got {tuple(pred.shape)} and {tuple(gt.shape)}")
    pred_np = pred.cpu().numpy().astype(np.int32)
    gt_np = gt.cpu().numpy().astype(np.int32)
    valid = np.ones(gt_np.shape[:2], bool) if frame_mask is None else frame_mask.cpu().numpy().astype(bool)
    j: list[float] = []
    f: list[float] = []
    for b in range(gt_np.shape[0]):
        evaluator = Evaluator()
        for t in range(1 if skip_first else 0, gt_np.shape[1]):
            if valid[b, t]:
                evaluator.feed_frame(pred_np[b, t], gt_np[b, t])
        iou, boundary = evaluator.conclude()
        for obj in sorted(iou):
            j.append(float(iou[obj]) / 100.0)
            f.append(float(boundary[obj]) / 100.0)
    return {"j": j, "f": f}


def davis_summary(scores: dict[str, list[float]]) -> dict[str, float]:
    """Global J, F and J&F (NaN when no object was scored)."""
    if not scores["j"]:
        return {"j": float("nan"), "f": float("nan"), "j_and_f": float("nan")}
    j, f = float(np.mean(scores["j"])), float(np.mean(scores["f"]))
    return {"j": j, "f": f, "j_and_f": (j + f) / 2.0}
