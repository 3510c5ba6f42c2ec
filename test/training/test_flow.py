"""flow_to_rgb follows the official SAVi rendering (hue = direction, saturation = magnitude)."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch

from training.flow import flow_to_rgb


def reference(d_row: float, d_col: float, height: int, width: int) -> tuple[float, float, float]:
    hue = (math.atan2(d_col, d_row) / math.pi + 1.0) / 2.0
    sat = min(max(math.hypot(d_row, d_col) * 50.0 / math.sqrt(height**2 + width**2), 0.0), 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, sat, 1.0)
    return tuple(round(c * 255) / 255 for c in (r, g, b))


@pytest.mark.parametrize(
    "d_row, d_col", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-0.3, 0.2), (-1.0, -1e-3), (5.0, -7.0), (0.01, 0.02)]
)
def test_matches_colorsys(d_row: float, d_col: float) -> None:
    flow = torch.zeros(4, 6, 2)
    flow[..., 0], flow[..., 1] = d_row, d_col
    rgb = flow_to_rgb(flow)
    assert rgb.shape == (4, 6, 3)
    np.testing.assert_allclose(rgb[0, 0].numpy(), reference(d_row, d_col, 4, 6), atol=1.5 / 255)


def test_zero_flow_is_white_and_values_quantised() -> None:
    rgb = flow_to_rgb(torch.zeros(2, 3, 5, 5, 2))
    assert torch.equal(rgb, torch.ones(2, 3, 5, 5, 3))
    rgb = flow_to_rgb(torch.randn(8, 8, 2))
    assert torch.allclose(rgb * 255, torch.round(rgb * 255))
    with pytest.raises(ValueError, match="2 channels"):
        flow_to_rgb(torch.zeros(4, 4, 3))
