"""Slot initializers: turn the first frame's conditioning (boxes, centres, masks) or nothing into slots.

Conditional initializers encode each object independently with shared weights, so permuting the
objects permutes the slots. Unconditioned entries get ``initializer.unconditioned_value`` coordinates
(official code 0, paper -1) or, with partial conditioning, a Gaussian sample plus a 0/1 "conditioned"
indicator (paper A.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from savi_core.model.config import ModelConfig
from savi_core.model.convolution import Conv2d
from savi_core.model.encoder import PositionEmbedding


@dataclass
class Conditioning:
    """First-frame conditioning for a batch; N entries per video, one per object slot."""

    boxes: torch.Tensor | None = None  # [B, N, 4] normalised (ymin, xmin, ymax, xmax)
    centers: torch.Tensor | None = None  # [B, N, 2] normalised (y, x)
    segmentation: torch.Tensor | None = None  # [B, H, W] int, 0 = background, i + 1 = object i
    conditioned: torch.Tensor | None = None  # [B, N] 0/1; None = all conditioned
    batch_size: int | None = None  # unconditional initializers only
    features: torch.Tensor | None = None  # [B, h, w, C] the frame's features (models that pool them)

    def infer_batch_size(self) -> int:
        for value in (self.boxes, self.centers, self.segmentation, self.conditioned):
            if value is not None:
                return int(value.shape[0])
        if self.batch_size is None:
            raise ValueError("Conditioning has no tensors and no batch_size")
        return self.batch_size


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class _SegmentationEncoder(nn.Module):
    """Table A.7: a small CNN over one binary object mask, spatially averaged, then LN and an MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        init = cfg.initializer
        layers: list[nn.Module] = []
        in_ch = 1
        for i, (ch, stride) in enumerate(zip(init.seg_channels, init.seg_strides)):
            layers.append(Conv2d(in_ch, ch, 5, stride, cfg.conv_padding))
            if i < len(init.seg_channels) - 1:
                layers.append(nn.ReLU())
            in_ch = ch
        self.cnn = nn.Sequential(*layers)
        self.pos = PositionEmbedding(in_ch, cfg.position_embedding)
        self.norm1 = nn.LayerNorm(in_ch, eps=cfg.layer_norm_eps)
        self.mlp1 = _mlp(in_ch, 64, 64)
        self.norm2 = nn.LayerNorm(64, eps=cfg.layer_norm_eps)
        self.mlp2 = _mlp(64, init.hidden_dim, cfg.slot_dim)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """``masks [B, N, H, W]`` float -> ``[B, N, D]``."""
        b, n, h, w = masks.shape
        x = self.cnn(masks.reshape(b * n, 1, h, w)).permute(0, 2, 3, 1)
        x = self.mlp1(self.norm1(self.pos(x))).mean(dim=(1, 2))
        return self.mlp2(self.norm2(x)).reshape(b, n, -1)


class SlotInitializer(nn.Module):
    """Builds the initial slots ``[B, K, D]`` for every initializer kind of the config."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        init = cfg.initializer
        self.kind = init.kind
        self.background = init.background_slot
        self.partial = init.partial
        self.num_slots = cfg.num_slots
        self.num_objects = cfg.num_object_slots
        self.slot_dim = cfg.slot_dim
        self.unconditioned_value = init.unconditioned_value
        extra = 1 if init.partial else 0
        if init.kind == "bbox":
            self.encode: nn.Module = _mlp(4 + extra, init.hidden_dim, cfg.slot_dim)
        elif init.kind == "com":
            self.encode = _mlp(2 + extra, init.hidden_dim, cfg.slot_dim)
        elif init.kind == "segmentation":
            self.encode = _SegmentationEncoder(cfg)
            if init.partial:
                self.indicator = nn.Linear(1, cfg.slot_dim)
        elif init.kind == "learned":
            self.slots = nn.Parameter(torch.randn(cfg.num_slots, cfg.slot_dim) * cfg.slot_dim**-0.5)
        if init.kind == "gaussian" or init.partial:
            self.mu = nn.Parameter(torch.zeros(cfg.slot_dim))
            self.log_sigma = nn.Parameter(torch.full((cfg.slot_dim,), -1.0))

    def _random(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(*shape, self.slot_dim, device=like.device, dtype=like.dtype)
        return self.mu + self.log_sigma.exp() * noise

    def _coordinates(self, coords: torch.Tensor, conditioned: torch.Tensor) -> torch.Tensor:
        """Encode [B, M, C] coordinates; unconditioned entries get the unconditioned value or, with partial
        conditioning, a random slot."""
        keep = conditioned.unsqueeze(-1) > 0.5
        coords = torch.where(keep, coords, torch.full_like(coords, self.unconditioned_value))
        if not self.partial:
            return self.encode(coords)
        slots = self.encode(torch.cat([coords, conditioned.unsqueeze(-1).to(coords.dtype)], dim=-1))
        return torch.where(keep, slots, self._random(tuple(coords.shape[:2]), slots))

    def forward(self, cond: Conditioning) -> torch.Tensor:
        batch = cond.infer_batch_size()
        if self.kind == "learned":
            return self.slots.unsqueeze(0).expand(batch, -1, -1)
        if self.kind == "gaussian":
            return self._random((batch, self.num_slots), self.mu)
        conditioned = self._conditioned(cond, batch)
        if self.kind == "segmentation":
            return self._from_segmentation(cond, conditioned)
        coords = cond.boxes if self.kind == "bbox" else cond.centers
        if coords is None:
            raise ValueError(
                f"the '{self.kind}' initializer needs Conditioning.{'boxes' if self.kind == 'bbox' else 'centers'}"
            )
        if coords.shape[1] != self.num_objects:
            raise ValueError(
                f"conditioning has {coords.shape[1]} objects, the model has {self.num_objects} object slots"
            )
        coords = coords.to(self.encode[0].weight.dtype)
        if self.background:
            # Official SAVi: the background slot is conditioned on the all-zero box / centre.
            coords = torch.cat([torch.zeros_like(coords[:, :1]), coords], dim=1)
            conditioned = torch.cat([torch.ones_like(conditioned[:, :1]), conditioned], dim=1)
        return self._coordinates(coords, conditioned.to(coords.dtype))

    def _conditioned(self, cond: Conditioning, batch: int) -> torch.Tensor:
        if cond.conditioned is not None:
            if tuple(cond.conditioned.shape) != (batch, self.num_objects):
                raise ValueError(
                    f"Conditioning.conditioned must be [{batch}, {self.num_objects}], "
                    f"got {tuple(cond.conditioned.shape)}"
                )
            return cond.conditioned.float()
        device = next(self.parameters()).device
        return torch.ones(batch, self.num_objects, device=device)

    def _from_segmentation(self, cond: Conditioning, conditioned: torch.Tensor) -> torch.Tensor:
        if cond.segmentation is None:
            raise ValueError("the 'segmentation' initializer needs Conditioning.segmentation")
        ids = torch.arange(1, self.num_objects + 1, device=cond.segmentation.device)
        masks = (cond.segmentation.unsqueeze(1) == ids.view(1, -1, 1, 1)).float()
        masks = masks * conditioned.view(*conditioned.shape, 1, 1)  # unconditioned: empty mask (paper)
        if self.background:
            masks = torch.cat([torch.zeros_like(masks[:, :1]), masks], dim=1)
            conditioned = torch.cat([torch.ones_like(conditioned[:, :1]), conditioned], dim=1)
        slots = self.encode(masks)
        if not self.partial:
            return slots
        slots = slots + self.indicator(conditioned.unsqueeze(-1))
        keep = conditioned.unsqueeze(-1) > 0.5
        return torch.where(keep, slots, self._random(tuple(conditioned.shape), slots))
