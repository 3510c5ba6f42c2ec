"""Training losses: the paper's summed reconstruction error and the optional mask supervision."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from savi_core.model.backbone import BackboneFeatures
from savi_core.model.encoder import fuse_taps
from savi_core.model.savi import SAViOutput
from training.config import TrainConfig
from training.datasets.common import resize_id_maps


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(paper loss, per-pixel MSE): squared error summed over T, C, H, W, mean over the batch.

    Padded frames (``frame_mask`` False) contribute nothing. When the decoder works at a lower
    resolution than the frames, the target is area-downsampled to it.
    """
    b, t = reconstruction.shape[:2]
    if target.shape[-2:] != reconstruction.shape[-2:]:
        target = F.interpolate(target.flatten(0, 1), size=reconstruction.shape[-2:], mode="area")
        target = target.view(b, t, *target.shape[1:])
    weight = frame_mask.to(reconstruction.dtype).view(b, t, 1, 1, 1)
    squared = (reconstruction.float() - target.float()).square() * weight
    total = squared.sum()
    values_per_frame = math.prod(reconstruction.shape[2:])
    mse = total / (weight.sum() * values_per_frame).clamp_min(1)
    return total / b, mse


def feature_targets(taps: BackboneFeatures, stride: int) -> torch.Tensor:
    """The frozen backbone's taps ``[B, T, ...]`` -> what the mlp decoder reconstructs: ``[B, T, C, h, w]``,
    the taps fused with equal weights into unit-length features at the decoder's stride."""
    b, t = taps.s4.shape[:2]
    fused = fuse_taps(BackboneFeatures(*(tap.flatten(0, 1) for tap in taps.as_tuple())), stride)
    return fused.permute(0, 3, 1, 2).unflatten(0, (b, t))


def similarity_loss(
    predicted: torch.Tensor, features: torch.Tensor, frame_mask: torch.Tensor, offset: int, temperature: float
) -> torch.Tensor:
    """VideoSAUR's temporal feature-similarity loss: the decoder predicts, from the slots at ``t``, for each
    position ``i`` the affinities of the features at ``(t, i)`` to every position ``j`` at ``t + offset``
    (softmax over ``j`` of cosine similarity / temperature). ``predicted [B, T, N, h, w]`` (channel ``j``,
    position ``i``), ``features [B, T, C, h, w]`` unit length. Squared error summed over frame pairs,
    positions and ``j``, averaged over the batch; pairs with a padded frame contribute nothing."""
    b, t, _, h, w = features.shape
    pairs = t - offset
    if pairs < 1:
        return predicted.new_zeros(())
    cells = features.flatten(3)  # [B, T, C, N]
    affinity = torch.einsum("btci,btcj->btij", cells[:, :pairs], cells[:, offset:]).div(temperature).softmax(-1)
    target = affinity.transpose(-1, -2).reshape(b, pairs, h * w, h, w)
    valid = (frame_mask[:, :pairs] & frame_mask[:, offset:]).to(predicted.dtype).view(b, pairs, 1, 1, 1)
    return ((predicted[:, :pairs].float() - target).square() * valid).sum() / b


def mask_loss(
    masks: torch.Tensor,
    segmentations: torch.Tensor,
    conditioned: torch.Tensor,
    frame_mask: torch.Tensor,
    background_slot: bool,
) -> torch.Tensor:
    """Auxiliary loss (off by default): cross-entropy of slot masks against ground-truth ids.

    ``masks [B,T,K,h,w]`` (softmax over slots: decoder masks or corrector attention); object ``i``
    belongs to slot ``i + background_slot``, the ground-truth background to slot 0 (only with a
    background slot). Pixels of objects that were not conditioned in the window's first frame have no
    slot to belong to and are ignored. Summed over time and pixels, averaged over the batch, like the
    reconstruction loss.
    """
    b, t, k, h, w = masks.shape
    seg = resize_id_maps(segmentations, (h, w))
    target = seg - 1 + int(background_slot)  # object i -> slot i + bg; background -> -1 + bg
    valid = (target >= 0) & (target < k) & frame_mask.view(b, t, 1, 1)
    object_index = (seg - 1).clamp(min=0, max=conditioned.shape[1] - 1)
    object_conditioned = torch.gather(conditioned > 0.5, 1, object_index.flatten(1)).view_as(seg)
    valid &= (seg == 0) | object_conditioned
    log_probs = masks.float().clamp_min(1e-6).log()
    picked = torch.gather(log_probs, 2, target.clamp(0, k - 1).unsqueeze(2)).squeeze(2)
    return -(picked * valid).sum() / b


def merged_background(masks: torch.Tensor, conditioned: torch.Tensor) -> torch.Tensor:
    """Prototype models hold the background in slot 0 and every unconditioned object slot: their
    probabilities are summed into slot 0 (and zeroed there), so the background has one slot to belong to."""
    b, t, k = masks.shape[:3]
    background = torch.ones(b, k, dtype=torch.bool, device=masks.device)
    background[:, 1 : 1 + conditioned.shape[1]] = conditioned <= 0.5
    weight = background.view(b, 1, k, 1, 1).to(masks.dtype)
    merged = masks * (1 - weight)
    merged[:, :, 0] = (masks * weight).sum(2)
    return merged


def savi_loss(
    output: SAViOutput, batch: dict[str, torch.Tensor], tc: TrainConfig, background_slot: bool, prototypes: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, reconstruction MSE) of one clip batch: reconstruction (models with a decoder: of the
    pixel target, or of ``batch["features"]`` and then the weighted similarity loss) plus the weighted mask
    losses."""
    if output.reconstruction is not None and "features" in batch:
        c = batch["features"].shape[2]
        loss, mse = reconstruction_loss(output.reconstruction[:, :, :c], batch["features"], batch["frame_mask"])
        if tc.similarity_loss_weight > 0:
            loss = loss + tc.similarity_loss_weight * similarity_loss(
                output.reconstruction[:, :, c:],
                batch["features"],
                batch["frame_mask"],
                tc.similarity_offset,
                tc.similarity_temperature,
            )
    elif output.reconstruction is not None:
        loss, mse = reconstruction_loss(output.reconstruction, batch["target"], batch["frame_mask"])
    else:
        loss = mse = output.attention.new_zeros(())
    for weight, masks in ((tc.mask_loss_weight, output.masks), (tc.attention_loss_weight, output.attention)):
        if weight > 0:
            if prototypes:
                masks = merged_background(masks, batch["conditioned"])
            loss = loss + weight * mask_loss(
                masks, batch["segmentations"], batch["conditioned"], batch["frame_mask"], background_slot
            )
    return loss, mse
