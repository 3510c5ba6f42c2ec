"""Convolutions whose padding follows either Flax's SAME rule (the official SAVi) or torch's symmetric one.

They differ only for strided layers: Flax pads SAME asymmetrically (more after than before for a conv,
more before than after for a transposed conv), so a kernel ported from the official model lands one
pixel off under torch's symmetric padding. Both classes keep torch's parameter names and layouts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _same_conv_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Flax/XLA SAME padding (before, after) of one spatial axis for a conv."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_transpose_pads(kernel: int, stride: int) -> tuple[int, int]:
    """``lax.conv_transpose`` SAME padding (before, after) of the stride-dilated input."""
    total = kernel + stride - 2
    before = kernel - 1 if stride > kernel - 1 else math.ceil(total / 2)
    return before, total - before


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with "same" output size ``ceil(H / stride)``, aligned as ``padding`` says."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: str = "flax_same", bias: bool = True
    ) -> None:
        # Stride 1 is symmetric in both conventions; a strided Flax layer pads explicitly in forward.
        explicit = padding == "flax_same" and stride > 1
        super().__init__(in_ch, out_ch, kernel, stride, 0 if explicit else kernel // 2, bias=bias)
        self.explicit_padding = explicit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.explicit_padding:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = _same_conv_pads(x.shape[-2], k, s)
            left, right = _same_conv_pads(x.shape[-1], k, s)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose output is exactly ``stride`` times its input, aligned as ``padding`` says.

    The weight is torch's (spatially flipped against Flax's ``transpose_kernel=False`` kernel). A strided
    layer on a large enough input runs in the sub-pixel form: one plain convolution per output phase with
    only that phase's taps, written interleaved into the output. Same products and sums, but oneDNN's
    forward convolution runs near its peak where its transposed one ran at about half, and no row or
    column is computed only to be cropped (preset S, 32x32 -> 64x64: 25 -> 21 ms with its ReLU, 1 thread).
    """

    # Below this many input pixels oneDNN's transposed kernel is faster (preset S's 8x8 first layer: 2.9 vs 4.3 ms).
    MIN_SUB_PIXEL_INPUT = 16 * 16

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: str = "flax_same") -> None:
        if padding == "flax_same":
            before, after = _same_transpose_pads(kernel, stride)
            pad, extra = kernel - 1 - before, after - before
        else:
            pad, extra = kernel // 2, stride - 1
        # A positive ``extra`` is torch's output_padding; a negative one is cropped from the end.
        super().__init__(in_ch, out_ch, kernel, stride, pad, output_padding=max(extra, 0))
        self.crop = max(-extra, 0)
        # Output o = stride * m + r sums input m + j through kernel tap r + pad - stride * j: per phase r, the
        # taps (in correlation order) and the input padding (before, after) that align output m with input m.
        self.phases: list[tuple[list[int], tuple[int, int]]] = []
        for r in range(stride):
            offsets = [j for j in range(-kernel, kernel + 1) if 0 <= r + pad - stride * j < kernel]
            self.phases.append(([r + pad - stride * j for j in offsets], (-offsets[0], offsets[-1])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        s, (h, w) = self.stride[0], x.shape[-2:]
        if s > 1 and h * w >= self.MIN_SUB_PIXEL_INPUT:
            return self._sub_pixel(x)
        y = super().forward(x)
        if self.crop:
            y = y[..., : y.shape[-2] - self.crop, : y.shape[-1] - self.crop]
        return y

    def _sub_pixel(self, x: torch.Tensor) -> torch.Tensor:
        """Each (row, column) phase as its own convolution into a channels-last output."""
        b, _, h, w = x.shape
        s = self.stride[0]
        out = x.new_empty(b, h, s, w, s, self.out_channels)
        for ry, (taps_y, (top, bottom)) in enumerate(self.phases):
            for rx, (taps_x, (left, right)) in enumerate(self.phases):
                weight = self.weight[:, :, taps_y][..., taps_x].transpose(0, 1)
                y = F.conv2d(F.pad(x, (left, right, top, bottom)), weight, self.bias)
                out[:, :, ry, :, rx] = y.permute(0, 2, 3, 1)
        return out.view(b, h * s, w * s, self.out_channels).permute(0, 3, 1, 2)
