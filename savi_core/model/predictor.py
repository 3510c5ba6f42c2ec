"""Predictor: models how slots evolve from one frame to the next."""

from __future__ import annotations

import torch
from torch import nn

from savi_core.model.config import PredictorConfig


class TransformerPredictor(nn.Module):
    """One post-norm transformer encoder block over the slots (paper eq. 2): slots interact."""

    def __init__(self, cfg: PredictorConfig, slot_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(slot_dim, 3 * cfg.qkv_dim)
        self.out = nn.Linear(cfg.qkv_dim, slot_dim)
        self.norm_attn = nn.LayerNorm(slot_dim, eps=norm_eps)
        self.mlp = nn.Sequential(nn.Linear(slot_dim, cfg.mlp_hidden), nn.ReLU(), nn.Linear(cfg.mlp_hidden, slot_dim))
        self.norm_mlp = nn.LayerNorm(slot_dim, eps=norm_eps)

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        b, k, _ = slots.shape
        q, kk, v = self.qkv(slots).reshape(b, k, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(q, kk, v)
        attended = attended.transpose(1, 2).reshape(b, k, -1)
        slots = self.norm_attn(slots + self.out(attended))
        return self.norm_mlp(slots + self.mlp(slots))


class MLPPredictor(nn.Module):
    """Per-slot residual MLP with LayerNorm (ablation; the Sketchy model): slots evolve independently."""

    def __init__(self, cfg: PredictorConfig, slot_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(slot_dim, cfg.mlp_hidden), nn.ReLU(), nn.Linear(cfg.mlp_hidden, slot_dim))
        self.norm = nn.LayerNorm(slot_dim, eps=norm_eps)

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        return self.norm(slots + self.mlp(slots))


def build_predictor(cfg: PredictorConfig, slot_dim: int, norm_eps: float) -> nn.Module:
    if cfg.kind == "transformer":
        return TransformerPredictor(cfg, slot_dim, norm_eps)
    if cfg.kind == "mlp":
        return MLPPredictor(cfg, slot_dim, norm_eps)
    return nn.Identity()
