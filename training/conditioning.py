"""First-frame conditioning from a dataset batch: one function shared by training and evaluation.

Which item fields are used depends only on the model's initializer kind, so the trainer and the
evaluator cannot disagree about what the model was conditioned on.
"""

from __future__ import annotations

import torch

from savi_core.model.config import ModelConfig
from savi_core.model.initializers import Conditioning


def conditioning_from_batch(batch: dict[str, torch.Tensor], cfg: ModelConfig) -> Conditioning:
    """Conditioning for the first frame of each clip in ``batch`` (tensors already on the device).

    bbox -> ``cond_boxes``, com -> ``cond_centers``, segmentation -> frame-0 ``segmentations``;
    the unconditional kinds (learned, gaussian) only need the batch size.
    """
    kind = cfg.initializer.kind
    batch_size = int(batch["video"].shape[0])
    if kind == "bbox":
        return Conditioning(boxes=batch["cond_boxes"], conditioned=batch["conditioned"])
    if kind == "com":
        return Conditioning(centers=batch["cond_centers"], conditioned=batch["conditioned"])
    if kind == "segmentation":
        return Conditioning(segmentation=batch["segmentations"][:, 0], conditioned=batch["conditioned"])
    if kind in ("learned", "gaussian"):
        return Conditioning(batch_size=batch_size)
    raise ValueError(f"no conditioning rule for initializer kind {kind!r}")


def add_box_noise(
    boxes: torch.Tensor, conditioned: torch.Tensor, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Shift each conditioned box by Gaussian noise with std ``sigma`` times its height / width.

    The paper's robustness experiment perturbs the conditioning by N(0, sigma) relative to the object
    size; here the whole box moves (its size is kept) and is clipped to the image. ``boxes [B,N,4]``
    normalised yxyx; unconditioned entries (-1) are left untouched.
    """
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    size = torch.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], dim=-1)  # [B,N,2]
    shift = torch.randn(size.shape, generator=generator, dtype=torch.float32).to(boxes.device) * sigma * size
    moved = boxes + shift.repeat(1, 1, 2)
    low = moved[..., :2].clamp(0.0, 1.0)
    high = moved[..., 2:].clamp(0.0, 1.0)
    keep = conditioned.unsqueeze(-1) > 0.5
    return torch.where(keep, torch.cat([low, high], dim=-1), boxes)


def add_center_noise(
    centers: torch.Tensor, boxes: torch.Tensor, conditioned: torch.Tensor, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Centre-of-mass version of :func:`add_box_noise` (std relative to the object's box size)."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    size = torch.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], dim=-1)
    shift = torch.randn(size.shape, generator=generator, dtype=torch.float32).to(centers.device) * sigma * size
    keep = conditioned.unsqueeze(-1) > 0.5
    return torch.where(keep, (centers + shift).clamp(0.0, 1.0), centers)


def as_points(
    boxes: torch.Tensor, centers: torch.Tensor, conditioned: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """Replace a random ``share`` of the conditioned boxes by their object's centre of mass as a zero-size
    box ``(y, x, y, x)``: how a box model that takes points (``initializer.points``) is given a point.
    ``boxes [B,N,4]`` normalised yxyx, ``centers [B,N,2]`` normalised yx; share 1 = every object."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"point share must be in [0, 1], got {share}")
    pick = torch.rand(conditioned.shape, generator=generator).to(boxes.device) < share
    pick &= conditioned > 0.5
    return torch.where(pick.unsqueeze(-1), centers.repeat(1, 1, 2), boxes)
