"""Multi-process training (torchrun / DDP): which process this is, its device, and cross-rank checks."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from savi_core.model.config import ConfigError
from savi_core.device import resolve_device


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


def init_distributed(device_arg: str) -> tuple[Distributed, torch.device]:
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


def param_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gather_strings(text: str, info: Distributed) -> list[str]:
    if not info.enabled:
        return [text]
    out: list[str | None] = [None] * info.world_size
    dist.all_gather_object(out, text)
    return [str(v) for v in out]
