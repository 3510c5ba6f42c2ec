"""Train SAVi: ``python -m training.train --config training/configs/<name>.yaml [--data DIR] [--resume]``.

Paper recipe (A.6): Adam, linear warm-up then cosine decay to 0, global-norm gradient clipping, loss =
squared error summed over time, pixels and channels and averaged over the batch. This module is the
loop (set-up, resume, logging, checkpoints); one step is ``training.step.train_step``, the losses are
``training.losses``, the process group ``training.distributed``. Multi-GPU with
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

import dataclasses

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from savi_core.model.checkpoint import load_checkpoint
from savi_core.model.config import ConfigError
from savi_core.numerics import flush_denormals
from savi_core.model.savi import SAVi
from training.config import RunConfig, load_config, parse_overrides
from training.feature_cache import CachedFeatureDataset, FeatureCache
from training.data import EpochBatchSampler, build_dataset, next_position, training_batches
from training.distributed import Distributed, gather_strings, init_distributed, param_digest
from training.state import (
    ResumeError,
    TrainerState,
    checkpoint_dir,
    latest_checkpoint,
    load_trainer_checkpoint,
    save_trainer_checkpoint,
)
from training.step import NonFiniteLossError, amp_dtype, make_optimizer, reseed, train_step
from training.visualize import clip_image

EXIT_BAD_CONFIG = 1
EXIT_NONFINITE = 2


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


class _Logs:
    """Rank 0's metrics.jsonl and TensorBoard: the loss every ``log_every`` steps, a clip every ``image_every``."""

    def __init__(self, out: Path, step: int, log_every: int, image_every: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=step)
        self.metrics = _MetricsLog(out / "metrics.jsonl", step)
        self.log_every, self.image_every = log_every, image_every
        self.tick = time.perf_counter()

    def step(self, step: int, last: bool, data_epoch: int, result: Any, progress: tqdm) -> None:
        if step % self.log_every == 0 or last:
            now = time.perf_counter()
            record = {
                "step": step,
                "loss": result.loss,
                "mse": result.mse,
                "lr": result.lr,
                "grad_norm": result.grad_norm,
                "epoch": data_epoch,
                "seconds": now - self.tick,
            }
            self.tick = now
            self.metrics.write(record)
            for key in ("loss", "mse", "lr", "grad_norm"):
                self.writer.add_scalar(f"train/{key}", record[key], step)
            progress.set_postfix(loss=f"{result.loss:.4g}", mse=f"{result.mse:.4g}")
        if step % self.image_every == 0:
            self.writer.add_image("train/clip", clip_image(result.batch, result.output), step)

    def close(self) -> None:
        self.writer.close()
        self.metrics.close()


def _resume_position(
    out: Path, model: SAVi, optimizer: Any, scaler: Any, config_hash: str, info: Distributed, batches_per_epoch: int
) -> tuple[int, int, int]:
    """(step, epoch, batch in epoch) of the latest checkpoint, whose trainer state is loaded into the arguments."""
    path = latest_checkpoint(out)
    if path is None:
        raise ResumeError(f"--resume: no checkpoint in {checkpoint_dir(out)}")
    state = load_trainer_checkpoint(path, model, optimizer, scaler, config_hash, info.world_size)
    if state.batch_in_epoch >= batches_per_epoch:
        raise ResumeError(
            f"{path}: data position {state.batch_in_epoch} but an epoch now has {batches_per_epoch} batches "
            "(the dataset changed)"
        )
    if info.main:
        print(
            f"resumed from {path} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})", flush=True
        )
    return state.step, state.epoch, state.batch_in_epoch


def _write_final(
    out: Path, model: SAVi, step: int, samples_seen: int, info: Distributed, device: torch.device, dtype: Any
) -> None:
    """``final.json`` (rank 0), after checking that every rank ended with the same weights."""
    digests = gather_strings(param_digest(model), info)
    seen = gather_strings(str(samples_seen), info)
    if not info.main:
        return
    if len(set(digests)) != 1:
        raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
    summary = {
        "step": step,
        "world_size": info.world_size,
        "param_digests": digests,
        "samples_seen_per_rank": [int(s) for s in seen],
        "device": str(device),
        "amp": str(dtype) if dtype else "off",
    }
    (out / "final.json").write_text(json.dumps(summary, indent=1) + "\n")


def _initial_weights(spec: str, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The weights of ``train.init_checkpoint`` (a checkpoint, or a training run's latest), whose model
    config must be this run's."""
    path = Path(spec)
    if (path / "checkpoints").is_dir():
        path = latest_checkpoint(path) or path
    initial, _ = load_checkpoint(path)
    # Taking points changes what the model is taught, not its weights: a box model may learn them.
    ours = dataclasses.replace(
        cfg.model, initializer=dataclasses.replace(cfg.model.initializer, points=initial.config.initializer.points)
    )
    if initial.config.to_dict() != ours.to_dict():
        different = sorted(k for k, v in ours.to_dict().items() if initial.config.to_dict().get(k) != v)
        raise ConfigError(f"train.init_checkpoint: {path} has another model config (differs in {different})")
    return initial.state_dict()


def train(cfg: RunConfig, resume: bool = False, stop_at: int | None = None) -> Path:
    """Run (or continue) training; returns the output directory. Raises NonFiniteLossError on NaN/Inf."""
    info, device = init_distributed(cfg.train.device)
    out = _train(cfg, resume, stop_at, info, device)
    if info.enabled:
        # Rank 0 ends later (final.json, closing the logs): tear the group down together rather than
        # after a peer has exited. Only on success: destroying the group while a peer still waits in a
        # collective can abort this process before its exception is printed (torchrun then stops the rest).
        dist.barrier()
        dist.destroy_process_group()
    return out


def _output_and_local_batch(cfg: RunConfig, resume: bool, info: Distributed) -> tuple[Path, int]:
    """The run's output folder (made by rank 0) and this rank's share of the batch, refusing a batch the ranks
    cannot share and a fresh run over an old one's checkpoints."""
    tc = cfg.train
    out = Path(tc.out_dir)
    if tc.batch_size % info.world_size:
        raise ConfigError(f"train.batch_size: {tc.batch_size} is not divisible by {info.world_size} processes")
    if not resume and latest_checkpoint(out) is not None:  # every rank checks, so none waits forever
        raise ResumeError(
            f"{checkpoint_dir(out)} already holds checkpoints: pass --resume to continue that run "
            "or choose another --out"
        )
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    return out, tc.batch_size // info.world_size


def _train(cfg: RunConfig, resume: bool, stop_at: int | None, info: Distributed, device: torch.device) -> Path:
    tc = cfg.train
    out, local_batch = _output_and_local_batch(cfg, resume, info)
    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    model = SAVi(cfg.model).to(device)
    if tc.init_checkpoint and not resume:
        model.load_state_dict(_initial_weights(tc.init_checkpoint, cfg))
    optimizer = make_optimizer(model, tc)
    dtype = amp_dtype(tc.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    config_hash = cfg.hash()

    dataset = build_dataset(cfg.data, "train")
    if cfg.data.feature_cache:
        dataset = CachedFeatureDataset(dataset, FeatureCache(cfg.data.feature_cache, model.encoder.backbone))
    batches_per_epoch = EpochBatchSampler(len(dataset), local_batch, tc.seed, 0, 0, info.world_size).batches_per_epoch
    step, epoch, position = 0, 0, 0
    if resume:
        step, epoch, position = _resume_position(out, model, optimizer, scaler, config_hash, info, batches_per_epoch)

    net: torch.nn.Module = model
    if info.enabled:
        # After a burn-in the initialiser gets no gradient on that rank.
        net = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.data.burn_in > 0,
        )
    end = tc.steps if stop_at is None else min(stop_at, tc.steps)

    logs = _Logs(out, step, tc.log_every, tc.image_every) if info.main else None
    progress = tqdm(
        total=tc.steps, initial=step, desc="train", dynamic_ncols=True, disable=not info.main or not sys.stderr.isatty()
    )

    def save(completed: int, data_epoch: int, data_position: int) -> Path | None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise NonFiniteLossError(f"weights became non-finite by step {completed}; not checkpointing them")
        if not info.main:
            return None
        return save_trainer_checkpoint(
            out,
            model,
            optimizer,
            scaler,
            TrainerState(completed, data_epoch, data_position, info.world_size, config_hash, tc.seed),
            cfg.to_dict(),
            tc.keep_checkpoints,
        )

    samples_seen = 0
    last_saved = step
    model.train()
    try:
        first = EpochBatchSampler(len(dataset), local_batch, tc.seed, epoch, info.rank, info.world_size, position)
        batches = training_batches(dataset, first, tc.num_workers, pin_memory=device.type == "cuda")
        while step < end:
            reseed(tc.seed, info.rank, step)
            data_epoch, batch_index, batch = next(batches)
            epoch, position = next_position(data_epoch, batch_index, batches_per_epoch)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            result = train_step(model, net, optimizer, scaler, batch, cfg, step, dtype, info)
            step += 1
            samples_seen += result.batch["video"].shape[0]
            progress.update(1)

            if logs is not None:
                logs.step(step, step == end, data_epoch, result, progress)
            if step % tc.checkpoint_every == 0 and step < end:
                save(step, epoch, position)
                last_saved = step
        if last_saved != step or step == 0:
            save(step, epoch, position)
        _write_final(out, model, step, samples_seen, info, device, dtype)
    finally:
        progress.close()
        if logs is not None:
            logs.close()
    return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="run config YAML (training/configs/*.yaml)")
    parser.add_argument("--data", help="dataset path (overrides data.root)")
    parser.add_argument("--out", help="output directory (overrides train.out_dir)")
    parser.add_argument("--steps", type=int, help="total training steps (overrides train.steps; changes the schedule)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides train.device)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/latest")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override any config value, validated like the YAML "
        "(e.g. --set train.batch_size=2 data.num_videos=100 model.encoder.channels='[16, 16]')",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="stop with a checkpoint after STEP steps, keeping the schedule of train.steps "
        "(for time-limited jobs; continue later with --resume)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    flush_denormals()
    args = _parse(argv)
    try:
        overrides = {
            key: value
            for key, value in (
                ("data.root", args.data),
                ("train.out_dir", args.out),
                ("train.steps", args.steps),
                ("train.device", args.device),
            )
            if value is not None
        }
        overrides.update(parse_overrides(args.set))
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
