"""Camera-size augmentation: train on frames as the Tracker sees them from a larger camera.

The Tracker resizes every camera image to the model resolution. Measured on a default model trained
without this: the same held-out videos upscaled 2x / 5x and resized back by that path scored ~7 FG-ARI
lower than as rendered, so the softer edges of a resampled image, not the scenes, cost the accuracy. Here a video is,
with some probability, upscaled by a random factor per axis (a camera of another size and aspect),
quantised to 8 bits like a camera image, and resized back with `savi_core.tracking.geometry.resize_frames`.
Targets and ground truth are untouched: the scene is the same, only its pixels are resampled.
"""

from __future__ import annotations

import torch

from savi_core.tracking.geometry import resize_frames


def camera_resample(
    video: torch.Tensor, probability: float, max_scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``video [B, T, 3, H, W]`` in [0, 1]: each video, with ``probability``, upscaled by factors drawn
    uniformly in [1, ``max_scale``] (one per axis and video), quantised to 8 bits and resized back."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if max_scale < 1.0:
        raise ValueError(f"max_scale must be >= 1, got {max_scale}")
    if probability == 0.0:
        return video
    b, _, _, h, w = video.shape
    chosen = torch.rand(b, generator=generator) < probability
    scales = 1.0 + (max_scale - 1.0) * torch.rand(b, 2, generator=generator)
    out = video.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        size = (max(h, round(h * float(scales[i, 0]))), max(w, round(w * float(scales[i, 1]))))
        camera = resize_frames(video[i], size).clamp_(0.0, 1.0).mul_(255.0).round_().div_(255.0)
        out[i] = resize_frames(camera, (h, w))
    return out
