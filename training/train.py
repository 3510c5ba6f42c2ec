"""Train SAVi: ``python -m training.train --config training/configs/<name>.yaml [--data DIR] [--resume]``.

Paper recipe (A.6): Adam, linear warm-up then cosine decay to 0, global-norm gradient clipping, loss =
squared error summed over time, pixels and channels and averaged over the batch. Multi-GPU with
``torchrun --nproc_per_node N -m training.train ...`` (DDP; gloo on CPU, nccl on CUDA).

Exact resume: every random draw of step ``s`` on rank ``r`` comes from generators re-seeded from
(seed, r, s), the data order is a function of (seed, epoch) and the learning rate a function of the
step, so a checkpoint only has to hold weights, optimiser moments and the data position; a resumed
run reproduces the uninterrupted run's losses bit for bit (same device and process count). On CUDA that
holds as far as cuDNN/cuBLAS choose the same kernels: on an H200 it did in fresh processes, but once,
after other CUDA work in the same process, two fresh runs differed by 1e-7 relative at step 4.

Exit codes: 0 done, 1 bad configuration / resume mismatch, 2 non-finite loss.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from savi_core.config import ConfigError
from savi_core.device import resolve_device
from savi_core.numerics import flush_denormals
from savi_core.savi import SAVi
from training.augment import camera_resample
from training.conditioning import conditioning_from_batch
from training.config import RunConfig, TrainConfig, load_config
from training.data import EpochBatchSampler, build_dataset, next_position, training_batches
from training.datasets.common import FRAME_KEYS, resize_id_maps
from training.state import (
    ResumeError,
    TrainerState,
    checkpoint_dir,
    latest_checkpoint,
    load_trainer_checkpoint,
    save_trainer_checkpoint,
)
from training.visualize import clip_image

EXIT_BAD_CONFIG = 1
EXIT_NONFINITE = 2


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/Inf; training stops before the weights are touched."""


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    decay_steps = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor
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


def mask_loss(masks: torch.Tensor, segmentations: torch.Tensor, conditioned: torch.Tensor,
              frame_mask: torch.Tensor, background_slot: bool) -> torch.Tensor:
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


def burn_in_frames(burn_in: int, real_frames: int, window: int, generator: torch.Generator) -> int:
    """How many leading frames of this step's clip run without gradient (``data.burn_in``).

    None on half of the steps, which train the box initialiser; otherwise 1..``burn_in``, never so
    many that the window would lose real frames.
    """
    most = min(burn_in, real_frames - window)
    if most < 1 or float(torch.rand((), generator=generator)) < 0.5:
        return 0
    return int(torch.randint(1, most + 1, (), generator=generator))


def _step_generator(seed: int, step: int) -> torch.Generator:
    """Per-step draws shared by every rank (so a DDP run cuts the same windows as one process) and
    replayed on resume."""
    mixed = int(np.random.SeedSequence([seed & 0xFFFFFFFF, step, 0xB1]).generate_state(1)[0])
    return torch.Generator().manual_seed(mixed)


def _reseed(seed: int, rank: int, step: int) -> None:
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
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_arg: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        device = resolve_device(device_arg)
    except ValueError as exc:
        raise ConfigError(f"train.{exc}") from None
    if world > 1:
        info = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    else:
        info = Distributed()
    if device.type == "cuda":
        if device_arg.strip().lower() in ("auto", "cuda"):
            device = torch.device("cuda", info.local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(device)
    return info, device


def _param_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _gather_strings(text: str, info: Distributed) -> list[str]:
    if not info.enabled:
        return [text]
    out: list[str | None] = [None] * info.world_size
    dist.all_gather_object(out, text)
    return [str(v) for v in out]


def _logged_step(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


class _MetricsLog:
    """``<out>/metrics.jsonl``: one JSON object per logged step (rank 0 only)."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        if path.exists():  # a killed run may have logged past its checkpoint, or half a line: drop those
            kept = [line for line in path.read_text().splitlines() if _logged_step(line) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))
        self.file = path.open("a")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def train(cfg: RunConfig, resume: bool = False, stop_at: int | None = None) -> Path:
    """Run (or continue) training; returns the output directory. Raises NonFiniteLossError on NaN/Inf."""
    info, device = _init_distributed(cfg.train.device)
    try:
        out = _train(cfg, resume, stop_at, info, device)
        if info.enabled:
            # Rank 0 ends later (final.json, closing the logs): tear the group down together rather than
            # after a peer has exited. (A 2-process CPU test aborted once at exit, "terminate called
            # without an active exception"; not reproduced since, so this is a precaution.)
            dist.barrier()
        return out
    finally:
        if info.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: RunConfig, resume: bool, stop_at: int | None, info: Distributed, device: torch.device) -> Path:
    tc = cfg.train
    out = Path(tc.out_dir)
    if tc.batch_size % info.world_size:
        raise ConfigError(f"train.batch_size: {tc.batch_size} is not divisible by {info.world_size} processes")
    local_batch = tc.batch_size // info.world_size
    if not resume and latest_checkpoint(out) is not None:  # every rank checks, so none waits forever
        raise ResumeError(f"{checkpoint_dir(out)} already holds checkpoints: pass --resume to continue that run "
                          "or choose another --out")
    if info.main:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    model = SAVi(cfg.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    dtype = amp_dtype(tc.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    config_hash = cfg.hash()

    dataset = build_dataset(cfg.data, "train")
    batches_per_epoch = EpochBatchSampler(len(dataset), local_batch, tc.seed, 0, 0, info.world_size).batches_per_epoch
    step, epoch, position = 0, 0, 0
    if resume:
        path = latest_checkpoint(out)
        if path is None:
            raise ResumeError(f"--resume: no checkpoint in {checkpoint_dir(out)}")
        state = load_trainer_checkpoint(path, model, optimizer, scaler, config_hash, info.world_size)
        step, epoch, position = state.step, state.epoch, state.batch_in_epoch
        if position >= batches_per_epoch:
            raise ResumeError(f"{path}: data position {position} but an epoch now has {batches_per_epoch} batches "
                              "(the dataset changed)")
        if info.main:
            print(f"resumed from {path} at step {step} (epoch {epoch}, batch {position})", flush=True)

    net: torch.nn.Module = model
    if info.enabled:
        # After a burn-in the initialiser gets no gradient on that rank.
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=cfg.data.burn_in > 0)
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)

    writer = log = None
    if info.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=step)
        log = _MetricsLog(out / "metrics.jsonl", step)
    progress = tqdm(total=tc.steps, initial=step, desc="train", dynamic_ncols=True,
                    disable=not info.main or not sys.stderr.isatty())

    def save(completed: int, data_epoch: int, data_position: int) -> Path | None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise NonFiniteLossError(f"weights became non-finite by step {completed}; not checkpointing them")
        if not info.main:
            return None
        return save_trainer_checkpoint(
            out, model, optimizer, scaler,
            TrainerState(completed, data_epoch, data_position, info.world_size, config_hash, tc.seed),
            cfg.to_dict(), tc.keep_checkpoints)

    batches = training_batches(dataset, local_batch, tc.seed, tc.num_workers, epoch, position,
                               info.rank, info.world_size, pin_memory=device.type == "cuda")
    samples_seen = 0
    last_saved = step
    tick = time.perf_counter()
    model.train()
    try:
        while step < end:
            _reseed(tc.seed, info.rank, step)
            data_epoch, batch_index, batch = next(batches)
            epoch, position = next_position(data_epoch, batch_index, batches_per_epoch)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            batch["video"] = camera_resample(batch["video"], tc.camera_resample, tc.camera_resample_max_scale)
            lr = learning_rate(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr

            autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
            cond, slots = conditioning_from_batch(batch, cfg.model), None
            skip = burn_in_frames(cfg.data.burn_in, int(batch["frame_mask"].sum(dim=1).min()), cfg.data.window,
                                  _step_generator(tc.seed, step))
            if skip:
                with torch.no_grad(), autocast:
                    slots = model(batch["video"][:, :skip], cond, decode="none").predicted[:, -1]
                cond = None
            batch = {k: v[:, skip:skip + cfg.data.window] if k in FRAME_KEYS else v for k, v in batch.items()}
            with autocast:
                output = net(batch["video"], cond, slots=slots)
            loss, mse = reconstruction_loss(output.reconstruction, batch["target"], batch["frame_mask"])
            for weight, masks in ((tc.mask_loss_weight, output.masks), (tc.attention_loss_weight, output.attention)):
                if weight > 0:
                    loss = loss + weight * mask_loss(masks, batch["segmentations"], batch["conditioned"],
                                                     batch["frame_mask"], cfg.model.initializer.background_slot)
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
            step += 1
            samples_seen += batch["video"].shape[0]
            progress.update(1)

            if info.main:
                if step % tc.log_every == 0 or step == end:
                    now = time.perf_counter()
                    record = {"step": step, "loss": loss_value, "mse": mse_value, "lr": lr,
                              "grad_norm": grad_norm, "epoch": data_epoch, "seconds": now - tick}
                    tick = now
                    log.write(record)
                    for key in ("loss", "mse", "lr", "grad_norm"):
                        writer.add_scalar(f"train/{key}", record[key], step)
                    progress.set_postfix(loss=f"{loss_value:.4g}", mse=f"{mse_value:.4g}")
                if step % tc.image_every == 0:
                    writer.add_image("train/clip", clip_image(batch, output), step)
            if step % tc.checkpoint_every == 0 and step < end:
                save(step, epoch, position)
                last_saved = step
        if last_saved != step or step == 0:
            save(step, epoch, position)
        digests = _gather_strings(_param_digest(model), info)
        seen = _gather_strings(str(samples_seen), info)
        if info.main:
            if len(set(digests)) != 1:
                raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
            summary = {"step": step, "world_size": info.world_size, "param_digests": digests,
                       "samples_seen_per_rank": [int(s) for s in seen], "device": str(device),
                       "amp": str(dtype) if dtype else "off"}
            (out / "final.json").write_text(json.dumps(summary, indent=1) + "\n")
    finally:
        progress.close()
        if writer is not None:
            writer.close()
        if log is not None:
            log.close()
    return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="run config YAML (training/configs/*.yaml)")
    parser.add_argument("--data", help="dataset path (overrides data.root)")
    parser.add_argument("--out", help="output directory (overrides train.out_dir)")
    parser.add_argument("--steps", type=int, help="total training steps (overrides train.steps; changes the schedule)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides train.device)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/latest")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="stop with a checkpoint after STEP steps, keeping the schedule of train.steps "
                             "(for time-limited jobs; continue later with --resume)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    flush_denormals()
    args = _parse(argv)
    overrides = {key: value for key, value in (("data.root", args.data), ("train.out_dir", args.out),
                                               ("train.steps", args.steps), ("train.device", args.device))
                 if value is not None}
    try:
        cfg = load_config(args.config, overrides)
        out = train(cfg, resume=args.resume, stop_at=args.stop_at)
    except (ConfigError, ResumeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except NonFiniteLossError as exc:
        latest = latest_checkpoint(cfg.train.out_dir)
        where = f"last good checkpoint: {latest}" if latest else "no checkpoint was written before it"
        print(f"error: {exc}; training stopped ({where})", file=sys.stderr)
        return EXIT_NONFINITE
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
