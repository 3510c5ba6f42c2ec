"""Spatial broadcast decoder (Table A.6): each slot is decoded alone, then slots compete via a softmax."""

from __future__ import annotations

import torch
from torch import nn

from savi_core.model.config import ModelConfig
from savi_core.model.convolution import ConvTranspose2d
from savi_core.model.encoder import PositionEmbedding


class SpatialBroadcastDecoder(nn.Module):
    """Slots ``[B, K, D]`` -> per-slot targets ``[B, K, C, h, w]`` and alpha logits ``[B, K, h, w]``."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        cfg, slot_dim = model_cfg.decoder, model_cfg.slot_dim
        self.size = tuple(cfg.broadcast_size)
        self.target_channels = cfg.target_channels
        self.pos = PositionEmbedding(slot_dim, model_cfg.position_embedding)
        layers: list[nn.Module] = []
        in_ch = slot_dim
        for i, (ch, stride) in enumerate(zip(cfg.channels, cfg.strides)):
            # A stride-1 transposed conv is a conv with a flipped kernel, so one layer type serves the
            # official mix of transposed and plain layers.
            layers.append(ConvTranspose2d(in_ch, ch, cfg.kernel_size, stride, model_cfg.conv_padding))
            if cfg.final_activation or i < len(cfg.channels) - 1:
                layers.append(nn.ReLU(inplace=True))  # each conv's output is fresh: no extra pass to allocate
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
