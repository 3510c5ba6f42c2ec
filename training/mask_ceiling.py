"""The mask path's ceiling: what the Tracker publishes when its model's attention is perfect.

A model whose slots attend on a feature grid (stride 4 for the pretrained-backbone models: 32x40 cells at
128x160) can only say how much of each cell an object holds; the Tracker brings those shares to the
camera (guided filter or bilinear, `savi_core.tracking.labels`). This module feeds that path the ground
truth itself: every cell gets each given object's true share of its pixels, and the label map is made as the
Tracker makes it (the same upsampling, filter and ``mask_threshold``). Its mIoU is the most a model can score
through this mask path, however well it matches: the benchmark reports it beside the box protocols'
ceilings, so that a split's loss can be read as matching (model to ceiling) against resolution (ceiling to
100)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from savi_core.model.savi import upsample_attention
from savi_core.tracking.geometry import resize_frames
from savi_core.tracking.labels import guided_planes

#: The key of this ceiling in the benchmark's ``ceiling_miou``.
CEILING = "feature-grid masks"


def feature_grid(resolution: tuple[int, int], stride: int) -> tuple[int, int]:
    """The grid a model of ``resolution`` (h, w) attends on at ``stride`` ("SAME" convolutions round up)."""
    return math.ceil(resolution[0] / stride), math.ceil(resolution[1] / stride)


def grid_ceiling_ids(
    ids: np.ndarray,
    images: np.ndarray,
    resolution: tuple[int, int],
    grid: tuple[int, int],
    guided: bool,
    threshold: float,
) -> np.ndarray:
    """Label maps ``[T, H, W]`` of perfect grid attention: ``ids`` ``[T, H, W]`` (0 background, the objects a
    tracker knows, e.g. `training.metrics.known_objects_ids`) pooled to ``grid`` as area shares, then brought to
    the camera images' size (``images`` uint8 ``[T, H, W, 3]``) the way the Tracker does for a model of
    ``resolution``: the guided filter steered by the model frame and the camera image (``guided``), or
    bilinear resampling through the model frame; a pixel whose best share is under ``threshold`` is 0."""
    if ids.shape != images.shape[:3]:
        raise ValueError(f"ids {ids.shape} and images {images.shape} must share [T, H, W]")
    height, width = ids.shape[1:]
    out = np.zeros_like(ids)
    for t in range(ids.shape[0]):
        present = np.unique(ids[t])
        objects = [int(i) for i in present if i != 0]
        if not objects:
            continue
        planes = np.stack([(ids[t] == i).astype(np.float32) for i in [0, *objects]])
        shares = torch.from_numpy(
            np.stack([cv2.resize(p, (grid[1], grid[0]), interpolation=cv2.INTER_AREA) for p in planes])
        )
        camera = images[t].astype(np.float32) / np.float32(255.0)
        frame = resize_frames(torch.from_numpy(camera).permute(2, 0, 1), resolution)
        slots = list(range(1, len(planes)))
        if guided:
            smooth, order = guided_planes(shares, frame, slots, grid=True, camera=camera)
            order = np.asarray(order)
        else:
            smooth = upsample_attention(shares[None], resolution)[0].numpy()
            order = np.arange(len(planes))
        smooth = F.interpolate(torch.from_numpy(smooth)[None], size=(height, width), mode="bilinear")[0].numpy()
        labels = np.asarray([0, *objects])[order]
        best = smooth.argmax(0)
        out[t] = np.where(smooth.max(0) >= threshold, labels[best], 0)
    return out
