"""Checkpoints: weights in safetensors, the model config in JSON. Nothing is ever unpickled.

A model on the frozen pretrained backbone stores only what was trained; its config names the backbone
by the weight file's sha256, and loading refuses a backbone whose file has another.

Loading checks everything it can before building the model and raises ``CheckpointError`` with a
message naming the file and the problem, so a robot operator sees *why* a model was refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from savi_core.model.backbone import BackboneError, state_mismatch
from savi_core.model.config import ConfigError, ModelConfig
from savi_core.model.savi import SAVi

FORMAT = "savi_core.checkpoint"  # the file format's name, written into config.json: not a module path
# Version 1 (format "savi_ros.checkpoint") predates the fields that tell the paper's variant from the
# official code's; such configs load as the paper's variant, which is what those models computed.
FORMAT_VERSION = 2
_READABLE = {(FORMAT, 2): False, ("savi_ros.checkpoint", 1): True}
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(RuntimeError):
    """The checkpoint cannot be used; the message says which file and why."""


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it there: readers (other processes
    too) see the whole file or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are shared, read-only data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(directory: str | os.PathLike, model: SAVi, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (each file atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.config.to_dict(), "extra": extra or {}}

    def write_json(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")

    atomic_write(directory / CONFIG_FILE, write_json)
    return directory


def _resolve(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.name in (WEIGHTS_FILE, CONFIG_FILE) and path.exists():
        return path.parent
    raise CheckpointError(f"checkpoint not found: {path} (expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE})")


def read_checkpoint_config(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """Read and validate ``config.json`` only (cheap: no weights are loaded)."""
    directory = _resolve(Path(path))
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"checkpoint {directory}: missing {CONFIG_FILE}")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {config_path}: not valid JSON ({exc})") from exc
    formats = {name for name, _ in _READABLE}
    if not isinstance(meta, dict) or meta.get("format") not in formats:
        raise CheckpointError(f"checkpoint {config_path}: not a savi checkpoint (format must be {FORMAT!r})")
    version = meta.get("format_version")
    if (meta["format"], version) not in _READABLE:
        raise CheckpointError(
            f"checkpoint {config_path}: unknown format_version {version!r} (this build reads {FORMAT_VERSION})"
        )
    try:
        cfg = ModelConfig.from_dict(meta.get("model", {}), paper_variant=_READABLE[(meta["format"], version)])
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {config_path}: invalid model config: {exc}") from exc
    return cfg, meta


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", expected_preset: str | None = None
) -> tuple[SAVi, dict[str, Any]]:
    """Build the model from ``config.json`` and load ``model.safetensors``; returns (model in eval mode, metadata)."""
    cfg, meta = read_checkpoint_config(path)
    directory = _resolve(Path(path))
    if expected_preset is not None and cfg.preset != expected_preset:
        raise CheckpointError(f"checkpoint {directory}: preset {cfg.preset!r}, expected {expected_preset!r}")
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint {directory}: missing {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {weights_path}: corrupt or truncated safetensors file ({exc})") from exc
    try:
        model = SAVi(cfg)
    except BackboneError as exc:
        raise CheckpointError(f"checkpoint {directory}: {exc}") from exc
    mismatch = state_mismatch(model.state_dict(), tensors)
    if mismatch:
        raise CheckpointError(f"checkpoint {weights_path}: weights do not match the config ({mismatch})")
    for name, tensor in tensors.items():
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise CheckpointError(f"checkpoint {weights_path}: tensor {name} is not finite floating point")
    model.load_state_dict(tensors)
    return model.to(device).eval(), meta
