"""Spatial broadcast decoder (Table A.6): each slot is decoded alone, then slots compete via a softmax."""
from __future__ import annotations

import torch
from torch import nn

from savi_core.config import DecoderConfig
from savi_core.encoder import PositionEmbedding


class SpatialBroadcastDecoder(nn.Module):
    """Slots ``[B, K, D]`` -> per-slot targets ``[B, K, C, h, w]`` and alpha logits ``[B, K, h, w]``."""

    def __init__(self, cfg: DecoderConfig, slot_dim: int) -> None:
        super().__init__()
        self.size = tuple(cfg.broadcast_size)
        self.target_channels = cfg.target_channels
        self.pos = PositionEmbedding(slot_dim)
        layers: list[nn.Module] = []
        in_ch = slot_dim
        pad = cfg.kernel_size // 2
        for i, (ch, stride) in enumerate(zip(cfg.channels, cfg.strides)):
            # output_padding = stride - 1 makes each stride-2 layer exactly double the size.
            layers.append(nn.ConvTranspose2d(in_ch, ch, cfg.kernel_size, stride, pad, output_padding=stride - 1))
            if i < len(cfg.channels) - 1:
                layers.append(nn.ReLU())
            in_ch = ch
        self.cnn = nn.Sequential(*layers)
        self.head = nn.Conv2d(in_ch, cfg.target_channels + 1, 1)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, d = slots.shape
        x = slots.reshape(b * k, 1, 1, d).expand(-1, self.size[0], self.size[1], -1)
        x = self.pos(x).permute(0, 3, 1, 2)
        x = self.head(self.cnn(x))
        x = x.reshape(b, k, self.target_channels + 1, *x.shape[-2:])
        return x[:, :, : self.target_channels], x[:, :, self.target_channels]
