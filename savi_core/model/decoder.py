"""Slot decoders: each slot is decoded alone, then slots compete via a softmax over their alpha logits.

``SpatialBroadcastDecoder`` (Table A.6) paints pixels; ``MLPDecoder`` (DINOSAUR) reconstructs the frozen
pretrained features at a feature stride, which is cheap on a CPU (no convolutions, a few hundred positions).
"""

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


class MLPDecoder(nn.Module):
    """DINOSAUR's decoder: slot ``[D]`` plus a learned embedding per feature position, through an MLP, gives per
    position a feature vector, an alpha logit and (``decoder.similarity``) the predicted affinities of that
    position to every position of a later frame. Slots ``[B, K, D]`` -> outputs ``[B, K, C, h, w]`` (features,
    then the similarity channels) and alpha logits ``[B, K, h, w]``."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        cfg = model_cfg.decoder
        self.grid = model_cfg.decoder_grid
        positions = self.grid[0] * self.grid[1]
        self.out_channels = cfg.target_channels + (positions if cfg.similarity else 0)
        self.slot_in = nn.Linear(model_cfg.slot_dim, cfg.hidden)
        self.pos = nn.Parameter(torch.randn(positions, cfg.hidden) * 0.02)
        layers: list[nn.Module] = []
        for _ in range(cfg.layers - 1):
            layers += [nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden)]
        layers += [nn.ReLU(), nn.Linear(cfg.hidden, self.out_channels + 1)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, _ = slots.shape
        # The slot's first layer is computed once and broadcast over positions (a sum, not a concatenation).
        x = self.mlp(self.slot_in(slots).unsqueeze(2) + self.pos)  # [B, K, N, C + 1]
        x = x.permute(0, 1, 3, 2).reshape(b, k, self.out_channels + 1, *self.grid)
        return x[:, :, : self.out_channels], x[:, :, self.out_channels]
