"""One optimisation step (the official trainer's ``train_step``) and the per-step schedule and randomness.

Every random draw of step ``s`` on rank ``r`` comes from generators seeded from (seed, r, s), so a
resumed run replays the uninterrupted one without saved RNG state.
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from savi_core.model.backbone import BackboneFeatures
from savi_core.model.savi import SAVi, SAViOutput
from training.augment import camera_resample
from training.conditioning import as_points, conditioning_from_batch
from training.config import RunConfig, TrainConfig
from training.datasets.common import FRAME_KEYS
from training.feature_cache import batch_features
from training.distributed import Distributed
from training.losses import feature_targets, savi_loss


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/Inf; training stops before the weights are touched."""


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Adam:
    """The official trainer's ``flax.optim.Adam(learning_rate)``: betas (0.9, 0.999), eps 1e-8 added after the
    square root of the bias-corrected second moment, no weight decay; ``train_step`` sets the rate each step."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def burn_in_frames(burn_in: int, real_frames: int, window: int, generator: torch.Generator) -> int:
    """How many leading frames of this step's clip run without gradient (``data.burn_in``).

    None on half of the steps, which train the box initialiser; otherwise 1..``burn_in``, never so
    many that the window would lose real frames.
    """
    most = min(burn_in, real_frames - window)
    if most < 1 or float(torch.rand((), generator=generator)) < 0.5:
        return 0
    return int(torch.randint(1, most + 1, (), generator=generator))


def step_generator(seed: int, step: int) -> torch.Generator:
    """Per-step draws shared by every rank (so a DDP run cuts the same windows as one process) and
    replayed on resume."""
    mixed = int(np.random.SeedSequence([seed & 0xFFFFFFFF, step, 0xB1]).generate_state(1)[0])
    return torch.Generator().manual_seed(mixed)


def reseed(seed: int, rank: int, step: int) -> None:
    """Every random draw of a step comes from (seed, rank, step): resuming needs no saved RNG state."""
    mixed = int(np.random.SeedSequence([seed & 0xFFFFFFFF, rank, step]).generate_state(1)[0])
    torch.manual_seed(mixed)  # CPU and every CUDA device
    np.random.seed(mixed)
    random.seed(mixed)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 where the GPU supports it, else fp16; never on CPU."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


@dataclass
class StepResult:
    loss: float  # averaged over ranks
    mse: float
    grad_norm: float
    lr: float
    batch: dict[str, torch.Tensor]  # the window that was trained on (for image logging)
    output: SAViOutput


def train_step(
    model: SAVi,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch: dict[str, torch.Tensor],
    cfg: RunConfig,
    step: int,
    dtype: torch.dtype | None,
    info: Distributed,
) -> StepResult:
    """Train on ``batch`` (on the device) as step ``step``: camera resampling, optional gradient-free
    burn-in, the loss, clipping and the Adam update. ``net`` is ``model`` or its DDP wrapper.
    Raises NonFiniteLossError before touching the weights when the loss or gradient is not finite."""
    tc = cfg.train
    batch["video"] = camera_resample(batch["video"], tc.camera_resample, tc.camera_resample_max_scale)
    decode = "decoder" if cfg.model.has_decoder else "attention"
    lr = learning_rate(step, tc)
    for group in optimizer.param_groups:
        group["lr"] = lr
    autocast = torch.autocast(batch["video"].device.type, dtype=dtype) if dtype is not None else nullcontext()
    if tc.point_share > 0:
        batch["cond_boxes"] = as_points(
            batch["cond_boxes"],
            batch["cond_centers"],
            batch["conditioned"],
            tc.point_share,
            step_generator(tc.seed + 1, step),
        )
    cond, slots = conditioning_from_batch(batch, cfg.model), None
    skip = burn_in_frames(
        cfg.data.burn_in, int(batch["frame_mask"].sum(dim=1).min()), cfg.data.window, step_generator(tc.seed, step)
    )
    if skip:
        inputs = batch_features(batch) or batch["video"]
        with torch.no_grad(), autocast:
            slots = model(inputs[:, :skip], cond, decode="none").predicted[:, -1]
        cond = None
    batch = {k: v[:, skip : skip + cfg.data.window] if k in FRAME_KEYS else v for k, v in batch.items()}
    if cfg.data.target == "features":
        taps = batch_features(batch)
        if taps is None:
            b, t = batch["video"].shape[:2]
            taps = model.encoder.frozen(batch["video"].flatten(0, 1))
            taps = BackboneFeatures(*(tap.unflatten(0, (b, t)) for tap in taps.as_tuple()))
        batch["features"] = feature_targets(taps, cfg.model.decoder.stride)
    with autocast:
        output = net(batch_features(batch) or batch["video"], cond, decode=decode, slots=slots)
    loss, mse = savi_loss(output, batch, tc, cfg.model.initializer.background_slot, not cfg.model.has_decoder)
    reported = torch.stack([loss.detach(), mse.detach()])
    if info.enabled:
        dist.all_reduce(reported)
        reported /= info.world_size
    loss_value, mse_value = reported.tolist()
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"non-finite loss ({loss_value}) at step {step + 1}")

    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_norm or float("inf")))
    if not math.isfinite(grad_norm) and not scaler.is_enabled():
        raise NonFiniteLossError(f"non-finite gradient norm ({grad_norm}) at step {step + 1}")
    scaler.step(optimizer)  # with fp16 a step with Inf gradients is skipped by the scaler
    scaler.update()
    return StepResult(loss_value, mse_value, grad_norm, lr, batch, output)
