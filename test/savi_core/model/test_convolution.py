"""Strided convolutions align like Flax's SAME padding (official SAVi) or like torch's symmetric padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from savi_core.model.convolution import Conv2d, ConvTranspose2d


def test_strided_conv_samples_the_stride_one_output_where_flax_does() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    dense = Conv2d(3, 4, 5, 1)
    for padding, offset in (("flax_same", 1), ("symmetric", 0)):
        strided = Conv2d(3, 4, 5, 2, padding)
        strided.load_state_dict(dense.state_dict())
        out = strided(x)
        assert out.shape == (1, 4, 8, 8)
        # Flax pads 1 before / 2 after at k=5, s=2: output j sits on input 2j + 1; torch's on 2j.
        torch.testing.assert_close(out, dense(x)[..., offset::2, offset::2])


@pytest.mark.parametrize("stride", [1, 2])
def test_flax_transposed_conv_is_a_correlation_of_the_dilated_input_padded_3_before_2_after(stride: int) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 6)
    layer = ConvTranspose2d(3, 4, 5, stride, "flax_same")
    out = layer(x)
    assert out.shape == (2, 4, 5 * stride, 6 * stride)
    dilated = torch.zeros(2, 3, (5 - 1) * stride + 1, (6 - 1) * stride + 1)
    dilated[..., ::stride, ::stride] = x
    before, after = (3, 2) if stride == 2 else (2, 2)
    padded = F.pad(dilated, (before, after, before, after))
    # torch's transposed weight (in, out, kh, kw) is the spatially flipped correlation kernel.
    kernel = layer.weight.flip(-1, -2).transpose(0, 1)
    torch.testing.assert_close(out, F.conv2d(padded, kernel, layer.bias))


@pytest.mark.parametrize("size", [8, 16])  # torch's transposed kernel, and the sub-pixel form
def test_symmetric_transposed_conv_doubles_exactly(size: int) -> None:
    """An impulse at input (m, n) stamps the kernel, centred, at output (2m, 2n) of a map twice the input's size."""
    layer = ConvTranspose2d(1, 1, 5, 2, "symmetric")
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 26.0).view(1, 1, 5, 5))
        layer.bias.fill_(0.5)
    x = torch.zeros(1, 1, size, size)
    m, n = 3, size - 1  # the last column: its kernel's right half falls on the extra output column and beyond
    x[0, 0, m, n] = 2.0
    expected = torch.full((2 * size, 2 * size), 0.5)
    kernel = 2.0 * torch.arange(1.0, 26.0).view(5, 5)
    expected[2 * m - 2 : 2 * m + 3, 2 * n - 2 :] += kernel[:, : 2 * size - (2 * n - 2)]
    torch.testing.assert_close(layer(x)[0, 0], expected)


@pytest.mark.parametrize("padding", ["flax_same", "symmetric"])
@pytest.mark.parametrize("kernel", [3, 5])  # the decoder config allows odd kernels only
def test_sub_pixel_form_equals_the_transposed_conv_in_values_and_gradients(padding: str, kernel: int) -> None:
    """Inputs of at least MIN_SUB_PIXEL_INPUT pixels take the per-phase convolutions; small ones torch's kernel."""
    torch.manual_seed(2)
    layer = ConvTranspose2d(3, 4, kernel, 2, padding)
    x = torch.randn(2, 3, 16, 18, requires_grad=True)
    assert x.shape[-2] * x.shape[-1] >= layer.MIN_SUB_PIXEL_INPUT
    out = layer(x)
    reference = torch.nn.ConvTranspose2d.forward(layer, x)[..., :32, :36]
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, layer.weight, layer.bias])
    expected = torch.autograd.grad(reference.square().sum(), [x, layer.weight, layer.bias])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
