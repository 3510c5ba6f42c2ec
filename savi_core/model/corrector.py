"""Corrector: Slot Attention (Locatello et al., 2020) updating slots from one frame's features."""

from __future__ import annotations

import torch
from torch import nn

from savi_core.model.config import CorrectorConfig


class SlotAttention(nn.Module):
    """Slots compete for input features: softmax over slots, then a weighted mean over inputs, then a GRU.

    Returns the updated slots and the attention of the last iteration ``[B, K, N]`` (softmax over slots),
    which doubles as a cheap segmentation when the decoder is skipped.
    """

    def __init__(self, cfg: CorrectorConfig, slot_dim: int, feature_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.iterations = cfg.iterations
        self.eps = cfg.eps
        self.scale = cfg.qkv_dim**-0.5
        self.norm_inputs = nn.LayerNorm(feature_dim, eps=norm_eps)
        self.norm_slots = nn.LayerNorm(slot_dim, eps=norm_eps)
        self.to_q = nn.Linear(slot_dim, cfg.qkv_dim, bias=False)
        # Keys and values in one projection: one matmul over the h*w inputs instead of two.
        self.to_kv = nn.Linear(feature_dim, 2 * cfg.qkv_dim, bias=False)
        self.gru = nn.GRUCell(cfg.qkv_dim, slot_dim)
        with torch.no_grad():  # the official cell has no hidden bias on these gates (held constant: `_gru`)
            self.gru.bias_hh[: 2 * slot_dim].zero_()
        # The paper uses the residual MLP after the GRU only with more than one iteration.
        self.mlp: nn.Module | None = None
        if cfg.iterations > 1:
            self.norm_mlp = nn.LayerNorm(slot_dim, eps=norm_eps)
            self.mlp = nn.Sequential(
                nn.Linear(slot_dim, cfg.mlp_hidden), nn.ReLU(), nn.Linear(cfg.mlp_hidden, slot_dim)
            )

    def forward(
        self, slots: torch.Tensor, inputs: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``slots [B, K, D]``, ``inputs [B, N, F]`` -> (slots ``[B, K, D]``, attention ``[B, K, N]``).

        ``bias [B, K, N]`` is added to the attention logits: a large negative value keeps a slot off an
        input (the Tracker's spatial gate); None leaves Slot Attention as published."""
        b, k, d = slots.shape
        inputs = self.norm_inputs(inputs)
        # Keys and values are never formed: logits = (q Wk) x^T and updates = (attn x) Wv^T are the same
        # products reassociated, and with K slots << N inputs the [B, N, 2C] projection was most of the work.
        w_keys, w_values = self.to_kv.weight.chunk(2, dim=0)
        inputs_t = inputs.transpose(1, 2)
        attn = slots.new_empty(0)
        for _ in range(self.iterations):
            queries = self.to_q(self.norm_slots(slots))
            query_keys = (queries * self.scale) @ w_keys
            logits = query_keys @ inputs_t if bias is None else torch.baddbmm(bias, query_keys, inputs_t)
            attn = logits.softmax(dim=1)
            weights = attn / (attn.sum(dim=-1, keepdim=True) + self.eps)
            updates = (weights @ inputs) @ w_values.t()
            slots = self._gru(updates.reshape(b * k, -1), slots.reshape(b * k, d)).reshape(b, k, d)
            if self.mlp is not None:
                slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn

    def _gru(self, inputs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``self.gru`` with the official cell's trainable parameters: its hidden side has a bias only on the
        candidate (``hn``), so torch's hidden biases of the reset and update gates are held constant. Trained,
        they would move those gates' biases twice per step and add to the clipped gradient norm."""
        gru = self.gru
        bias_hh = gru.bias_hh
        if bias_hh.requires_grad and torch.is_grad_enabled():
            gates = 2 * gru.hidden_size
            bias_hh = torch.cat([bias_hh[:gates].detach(), bias_hh[gates:]])
        return torch.gru_cell(inputs, hidden, gru.weight_ih, gru.weight_hh, gru.bias_ih, bias_hh)
