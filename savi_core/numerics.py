"""CPU floating-point settings shared by every entry point that runs the model."""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Treat denormal floats as zero on this thread and on every thread it starts afterwards.

    A trained model's near-one-hot softmaxes (slot attention, masks) fill tensors with denormal
    values, which x86 CPUs process about 2x slower: a training step of the default model went from
    0.45 s to 0.94 s. The floating-point environment is inherited by new threads, so call this before
    the first parallel torch op creates the intra-op thread pool. Returns False where unsupported.
    """
    return torch.set_flush_denormal(True)
