"""Optical flow rendered as RGB, the SAVi training target.

Follows the official SAVi code so targets match the paper: hue from the flow direction, saturation
from its magnitude relative to the image diagonal, value 1, quantised to uint8 and back.
"""

from __future__ import annotations

import math

import torch

FLOW_SCALE = 50.0


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0,1] -> RGB in [0,1], stacked on a new last axis."""
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    i = i.to(torch.int64) % 6
    r = torch.stack([v, q, p, p, t, v], dim=-1).gather(-1, i.unsqueeze(-1)).squeeze(-1)
    g = torch.stack([t, v, v, q, p, p], dim=-1).gather(-1, i.unsqueeze(-1)).squeeze(-1)
    b = torch.stack([p, p, t, v, v, q], dim=-1).gather(-1, i.unsqueeze(-1)).squeeze(-1)
    return torch.stack([r, g, b], dim=-1)


def flow_to_rgb(flow: torch.Tensor, flow_scale: float = FLOW_SCALE) -> torch.Tensor:
    """Flow ``[..., H, W, 2]`` in pixels, channels (d_row, d_col) -> RGB ``[..., H, W, 3]`` in [0, 1].

    The magnitude is normalised by the image diagonal so the rendering does not depend on resolution.
    """
    if flow.shape[-1] != 2:
        raise ValueError(f"flow must end with 2 channels (d_row, d_col), got shape {tuple(flow.shape)}")
    flow = flow.float()
    height, width = flow.shape[-3], flow.shape[-2]
    hue = (torch.atan2(flow[..., 1], flow[..., 0]) / math.pi + 1.0) / 2.0
    magnitude = torch.linalg.vector_norm(flow, dim=-1)
    saturation = torch.clamp(magnitude * flow_scale / math.sqrt(height**2 + width**2), 0.0, 1.0)
    rgb = _hsv_to_rgb(hue, saturation, torch.ones_like(hue))
    return torch.round(rgb * 255.0) / 255.0
