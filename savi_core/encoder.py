"""Frame encoder: CNN (Table A.5) or ResNet-34 with GroupNorm, then position embedding, LayerNorm and MLP.

The output is a flat set of feature vectors ``[B, h*w, D]`` that Slot Attention attends over.
"""
from __future__ import annotations

import torch
from torch import nn

from savi_core.config import EncoderConfig


def position_grid(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Four linear ramps in [-1, 1] (y, x and their reverses), shape ``[height, width, 4]``."""
    ys = torch.linspace(-1.0, 1.0, height, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_y, grid_x, -grid_y, -grid_x], dim=-1)


class PositionEmbedding(nn.Module):
    """Learned linear projection of the 4-channel ramp grid, added to channels-last features.

    The grid is a buffer keyed by size so a fixed resolution never re-allocates it per frame.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(4, channels)
        self._grid_size: tuple[int, int] | None = None
        self.register_buffer("_grid", torch.empty(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-3], x.shape[-2]
        if self._grid_size != (height, width) or self._grid.device != x.device:
            self._grid = position_grid(height, width, device=x.device)
            self._grid_size = (height, width)
        return x + self.proj(self._grid.to(x.dtype))


class _BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm (batch statistics are unreliable for video batches)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(32, out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.GroupNorm(32, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def _resnet34_backbone() -> tuple[nn.Module, int]:
    """ResNet-34 with a stride-less root (no max-pool), so 128x128 frames give 16x16 features."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 1, 3, bias=False), nn.GroupNorm(32, 64), nn.ReLU()]
    in_ch = 64
    for out_ch, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(_BasicBlock(in_ch, out_ch, stride if i == 0 else 1))
            in_ch = out_ch
    return nn.Sequential(*layers), in_ch


def _cnn_backbone(cfg: EncoderConfig) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    in_ch = 3
    for i, (out_ch, stride) in enumerate(zip(cfg.channels, cfg.strides)):
        pad = cfg.kernel_size // 2
        # "same" padding; a stride-2 layer keeps exactly H/2 with this padding for even H.
        layers.append(nn.Conv2d(in_ch, out_ch, cfg.kernel_size, stride, pad))
        if i < len(cfg.channels) - 1:
            layers.append(nn.ReLU())
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


class Encoder(nn.Module):
    """Frames ``[B, 3, H, W]`` in [0, 1] -> features ``[B, h, w, D]`` (channels last)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.kind == "resnet34":
            self.backbone, channels = _resnet34_backbone()
        else:
            self.backbone, channels = _cnn_backbone(cfg)
        self.pos = PositionEmbedding(channels)
        self.norm = nn.LayerNorm(channels)
        mlp: list[nn.Module] = []
        in_dim = channels
        for i, dim in enumerate(cfg.mlp_dims):
            mlp.append(nn.Linear(in_dim, dim))
            if i < len(cfg.mlp_dims) - 1:
                mlp.append(nn.ReLU())
            in_dim = dim
        self.mlp = nn.Sequential(*mlp)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.backbone(frames).permute(0, 2, 3, 1)
        return self.mlp(self.norm(self.pos(x)))
