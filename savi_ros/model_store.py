"""Where the `checkpoint` parameter points.

`default` is the model shipped inside the Python package (`savi_ros/models/default/`), found
next to this module, so it resolves the same in an editable install, a wheel, or a colcon
install (all of which keep package data beside the code).
"""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_NAME = "default"


def default_checkpoint_dir() -> Path:
    """The packaged model directory (may be absent if the package was built without it)."""
    return Path(__file__).resolve().parent / "models" / DEFAULT_NAME


def resolve_checkpoint(value: str) -> Path:
    """`default` -> the packaged model; anything else -> that path (`~` and `$VARS` expanded).

    Only resolves: existence and contents are checked by `savi_core.checkpoint.load_checkpoint`,
    which reports what is wrong with the path it was given.
    """
    value = value.strip()
    if not value:
        raise ValueError("checkpoint: empty; use 'default' or a path to a checkpoint directory")
    if value == DEFAULT_NAME:
        return default_checkpoint_dir()
    return Path(os.path.expandvars(os.path.expanduser(value))).absolute()
