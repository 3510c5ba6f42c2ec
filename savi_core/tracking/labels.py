"""Label maps from slot probabilities: edge-aware masks (guided filter), the camera-size label map on the CPU
(OpenCV) and per-track stats; moved out of the Tracker, which calls them with its lookup tables."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from savi_core.tracking.geometry import tight_boxes

GUIDED_RADIUS = 4  # guided filter window radius, in pixels of a 128-row model frame (scaled with it)
GUIDED_EPS = 0.001  # its regularisation, in squared [0, 1] intensity: edges weaker than ~0.03 are smoothed over


def label_stats(best: torch.Tensor, row: torch.Tensor, t: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Per-live-track stats ``[t, 6]`` float64 (area, x0, y0, x1, y1, score) from the winning probability
    ``best`` and stats row ``row`` (``t`` for none) of each camera pixel; ``ys``/``xs`` are the pixel ramps.

    One pass of counting over the per-pixel track index (no per-track mask at camera size): areas, score
    sums, and which rows and columns each track occupies."""
    height, width = ys.shape[0], xs.shape[0]
    rows = torch.bincount((row * height + ys.view(-1, 1)).view(-1), minlength=(t + 1) * height).view(t + 1, height)
    cols = torch.bincount((row * width + xs.view(1, -1)).view(-1), minlength=(t + 1) * width).view(t + 1, width)
    area = rows[:t].sum(dim=1)  # pixels per (track, image row), summed over the rows
    # On a member pixel the track's slot is the arg-max, so its probability is ``best``.
    score = torch.bincount(row.view(-1), weights=best.view(-1), minlength=t + 1)[:t] / area.clamp(min=1)
    boxes = tight_boxes(rows[:t] > 0, cols[:t] > 0, ys, xs)
    return torch.cat([area.unsqueeze(1).double(), boxes.double(), score.unsqueeze(1).double()], dim=1)


def guided_masks(probs: torch.Tensor, frame: torch.Tensor, slots: list[int]) -> torch.Tensor:
    """Edge-aware masks: the live tracks' probabilities (``slots``) and the rest (one plane) at the model
    resolution, smoothed by OpenCV's guided filter steered by the frame, renormalised. Slot masks come
    at the feature stride (4 to 8 model pixels), so their edges cut across object borders; the filter
    moves them onto the image's edges (measured on the benchmark against bilinear)."""
    rest = next((k for k in range(probs.shape[0]) if k not in slots), None)  # the background slot if any
    if rest is None:  # every slot holds a track: nothing to tell them from
        return probs
    tracked = probs[slots].float()
    planes = torch.cat([tracked, (1 - tracked.sum(0, keepdim=True)).clamp_min(0)])
    if tuple(planes.shape[-2:]) != tuple(frame.shape[-2:]):
        planes = F.interpolate(planes.unsqueeze(0), size=frame.shape[-2:], mode="bilinear", align_corners=False)[0]
    guide = frame.mul(255).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    radius = max(1, round(GUIDED_RADIUS * frame.shape[-2] / 128))
    smooth = cv2.ximgproc.guidedFilter(
        guide, np.ascontiguousarray(planes.permute(1, 2, 0).cpu().numpy()), radius, GUIDED_EPS * 255.0**2
    )
    smooth = torch.from_numpy(smooth.reshape(*planes.shape[-2:], -1)).permute(2, 0, 1).clamp_min(0)
    smooth = (smooth / smooth.sum(0, keepdim=True).clamp_min(1e-6)).to(probs.device, probs.dtype)
    out = torch.zeros(probs.shape[0], *smooth.shape[-2:], dtype=probs.dtype, device=probs.device)
    out[slots] = smooth[:-1]
    out[rest] = smooth[-1]  # "not a tracked object", in a slot without a track id
    return out


def opencv_camera_labels(
    probs: np.ndarray,
    height: int,
    width: int,
    threshold: float,
    buffers: dict[tuple[int, int], tuple[np.ndarray, ...]],
    no_slot: int,
    id_lut: np.ndarray,
    row_lut: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The CPU route of the Tracker's camera-size labels: each slot plane resized by OpenCV (the same
    half-pixel bilinear as torch's), a running maximum that keeps the first winner on ties (as torch's
    ``max``), and the slot -> id / row tables (``id_lut``, ``row_lut``) applied by ``cv2.LUT`` to a uint8
    slot map; pixels under ``threshold`` get slot ``no_slot``. ``buffers`` holds the work arrays of the
    last camera size (replaced when the size changes)."""
    k = probs.shape[0]
    if (height, width) not in buffers:
        buffers.clear()
        buffers[(height, width)] = (
            np.empty((height, width), np.float32),
            np.empty((height, width), np.float32),
            np.empty((height, width), np.uint8),
            np.empty((height, width), np.uint8),
        )
    plane, best, slot, mask = buffers[(height, width)]
    cv2.resize(probs[0], (width, height), dst=best, interpolation=cv2.INTER_LINEAR)
    slot.fill(0)
    for index in range(1, k):
        if not probs[index].any():  # e.g. slots the guided masks emptied: they win no pixel
            continue
        cv2.resize(probs[index], (width, height), dst=plane, interpolation=cv2.INTER_LINEAR)
        cv2.compare(plane, best, cv2.CMP_GT, dst=mask)
        slot[mask.view(bool)] = index
        cv2.max(best, plane, dst=best)
    cv2.compare(best, threshold, cv2.CMP_LT, dst=mask)
    slot[mask.view(bool)] = no_slot
    labels = cv2.LUT(slot, id_lut)
    rows = cv2.LUT(slot, row_lut)
    return torch.from_numpy(best), torch.from_numpy(labels), torch.from_numpy(rows).to(torch.int32)
