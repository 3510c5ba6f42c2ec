"""Where the `checkpoint` parameter points, and the Tracker built from the parameters.

`default` is the model shipped inside the Python package (`savi_ros/models/default/`), found
next to this module, so it resolves the same in an editable install, a wheel, or a colcon
install (all of which keep package data beside the code).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from savi_core.model.checkpoint import CheckpointError, load_checkpoint
from savi_core.device import resolve_device
from savi_core.tracking.tracker import Tracker

DEFAULT_NAME = "default"


def packaged_models_dir() -> Path:
    return Path(__file__).resolve().parent / "models"


def default_checkpoint_dir() -> Path:
    """The packaged model directory (may be absent if the package was built without it)."""
    return packaged_models_dir() / DEFAULT_NAME


def packaged_model_names() -> list[str]:
    """Models shipped in the package, loadable by name: `default` and earlier versions kept for comparison."""
    root = packaged_models_dir()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def resolve_checkpoint(value: str) -> Path:
    """`default` or another packaged model's name (`v6`) -> that packaged model; anything else -> that path
    (`~` and `$VARS` expanded).

    Only resolves: existence and contents are checked by `savi_core.model.checkpoint.load_checkpoint`,
    which reports what is wrong with the path it was given.
    """
    value = value.strip()
    if not value:
        raise ValueError("checkpoint: empty; use 'default' or a path to a checkpoint directory")
    if value == DEFAULT_NAME:
        return default_checkpoint_dir()
    if "/" not in value and value in packaged_model_names():
        return packaged_models_dir() / value
    return Path(os.path.expandvars(os.path.expanduser(value))).absolute()


class ModelLoadError(ValueError):
    """The tracker cannot be built from the parameters; the message says what to fix."""


def load_tracker(node_params: Any) -> tuple[Tracker, Path, torch.device]:
    """The Tracker the parameters describe (checkpoint, device and the Tracker's own fields), as the
    node's configure transition and the offline bag tracker build it. Raises ModelLoadError."""
    from savi_ros import params  # the parameter definitions; no ROS needed for validation

    try:
        tracker_cfg = params.validate(node_params)
        path = resolve_checkpoint(node_params.checkpoint)
        device = resolve_device(node_params.device)
    except ValueError as exc:
        raise ModelLoadError(f"cannot configure: {exc}") from None
    try:
        model, _meta = load_checkpoint(path, device=device)
    except CheckpointError as exc:
        raise ModelLoadError(f"cannot load checkpoint '{node_params.checkpoint}': {exc}") from None
    except (OSError, RuntimeError, ValueError) as exc:  # e.g. unreadable file, device errors
        raise ModelLoadError(
            f"cannot load checkpoint '{node_params.checkpoint}' ({path}): {type(exc).__name__}: {exc}"
        ) from None
    try:
        tracker = Tracker(model, tracker_cfg, device=device)
    except ValueError as exc:
        raise ModelLoadError(f"cannot configure: {exc} (checkpoint {path})") from None
    return tracker, path, device
