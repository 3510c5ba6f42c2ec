"""Trainer checkpoints: model + optimiser + schedule + data position, written atomically, never pickled.

Layout under ``<out>/checkpoints/``::

    step_0001000/model.safetensors, config.json     savi_core.model.checkpoint (loadable by evaluate / the node)
    step_0001000/trainer_state.safetensors          optimiser tensors, keys "optimizer.<param>.<name>"
    step_0001000/trainer_state.json                 step, data position, config hash, optimiser scalars
    latest                                          text file naming the newest complete step directory

A checkpoint directory is filled under a temporary name and renamed into place, and ``latest`` is
replaced the same way, so a process killed at any moment leaves the previous checkpoint intact.
No ``torch.load``/pickle: optimiser state is rebuilt from safetensors plus JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from savi_core.model.checkpoint import load_checkpoint, save_checkpoint

STATE_VERSION = 1
_PREFIX = "step_"


class ResumeError(RuntimeError):
    """A trainer checkpoint is missing, incomplete or incompatible with the current run."""


@dataclass
class TrainerState:
    """The non-tensor part of a trainer checkpoint."""

    step: int  # optimiser steps completed
    epoch: int  # data epoch the next batch comes from
    batch_in_epoch: int  # index of the next batch within that epoch (per rank)
    world_size: int
    config_hash: str
    seed: int


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named CPU tensors and a JSON-able remainder."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    meta = {"param_groups": sd["param_groups"], "scalars": scalars}
    json.dumps(meta)  # fail here, not after a partial write, if an optimiser holds something odd
    return tensors, meta


def optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_tensors` (the result feeds ``optimizer.load_state_dict``)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        kind, param_id, name = key.split(".", 2)
        if kind != "optimizer":
            raise ResumeError(f"unexpected tensor {key!r} in trainer_state.safetensors")
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_trainer_checkpoint(
    out_dir: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    state: TrainerState,
    run_config: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``step_XXXXXXX`` atomically, point ``latest`` at it and prune to the newest ``keep``."""
    root = checkpoint_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{state.step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{final.name}_", dir=root))
    try:
        save_checkpoint(tmp, model, extra={"step": state.step, "run_config": run_config})
        tensors, opt_meta = optimizer_tensors(optimizer)
        save_file(tensors, str(tmp / "trainer_state.safetensors"))
        meta = {
            "version": STATE_VERSION,
            **state.__dict__,
            "optimizer": opt_meta,
            "grad_scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        }
        (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))
        _fsync_tree(tmp)
        if final.exists():  # re-saving a step (e.g. after a resume): swap, then drop the old copy
            old = Path(tempfile.mkdtemp(prefix=f".old_{final.name}_", dir=root))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_text_atomic(root / "latest", final.name + "\n")
    _prune(root, keep, final)
    return final


def _prune(root: Path, keep: int, newest: Path) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX))
    for old in steps[: max(0, len(steps) - keep)]:
        if old != newest:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp_*"):  # left by a killed writer; only rank 0 ever writes here
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The directory named by ``latest``, or None when the run has no checkpoint yet."""
    root = checkpoint_dir(out_dir)
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / "trainer_state.json").is_file():
        raise ResumeError(f"{pointer} names {path.name}, which is not a complete trainer checkpoint")
    return path


def load_trainer_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config_hash: str,
    world_size: int,
) -> TrainerState:
    """Restore model, optimiser and grad-scaler in place; check the run is the same one."""
    try:
        meta = json.loads((path / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResumeError(f"cannot read {path / 'trainer_state.json'}: {exc}") from exc
    if meta.get("version") != STATE_VERSION:
        raise ResumeError(f"{path}: trainer state version {meta.get('version')} != {STATE_VERSION}")
    state = TrainerState(**{k: meta[k] for k in TrainerState.__dataclass_fields__})
    if state.config_hash != config_hash:
        raise ResumeError(
            f"{path} was written by a different configuration (hash {state.config_hash} vs "
            f"{config_hash}); resume needs the same model, data and optimisation settings"
        )
    if state.world_size != world_size:
        raise ResumeError(
            f"{path} was written with {state.world_size} processes, this run has {world_size}; "
            "exact resume needs the same number"
        )
    loaded, _ = load_checkpoint(path)
    model.load_state_dict(loaded.state_dict())
    tensors = load_file(str(path / "trainer_state.safetensors"))
    optimizer.load_state_dict(optimizer_state_dict(tensors, meta["optimizer"]))
    if meta["grad_scaler"] is not None:
        if scaler is None or not scaler.is_enabled():
            raise ResumeError(f"{path} holds fp16 grad-scaler state but this run does not use fp16 AMP")
        scaler.load_state_dict(meta["grad_scaler"])
    return state
