"""Frame encoders: CNN (Table A.5) or ResNet-34 with GroupNorm, then position embedding, LayerNorm and MLP;
or the frozen pretrained EfficientNet-Lite0 with a fusion of its scales.

The output is a flat set of feature vectors ``[B, h*w, D]`` that Slot Attention attends over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from savi_core.model.backbone import TAPS, BackboneFeatures, EfficientNetLite0, folded_for_inference
from savi_core.model.config import EncoderConfig, ModelConfig
from savi_core.model.convolution import Conv2d


def position_grid(height: int, width: int, kind: str = "linear", device: torch.device | None = None) -> torch.Tensor:
    """Linear ramps in [-1, 1], ``[height, width, C]``: ``linear`` (official) is [y, x]; ``ramps4``
    (paper) adds their reverses [y, x, -y, -x]."""
    ys = torch.linspace(-1.0, 1.0, height, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    ramps = [grid_y, grid_x] if kind == "linear" else [grid_y, grid_x, -grid_y, -grid_x]
    return torch.stack(ramps, dim=-1)


class PositionEmbedding(nn.Module):
    """Learned linear projection of the ramp grid, added to channels-last features.

    The grid is a buffer keyed by size so a fixed resolution never re-allocates it per frame.
    """

    def __init__(self, channels: int, kind: str = "linear") -> None:
        super().__init__()
        self.kind = kind
        self.proj = nn.Linear(2 if kind == "linear" else 4, channels)
        self._grid_size: tuple[int, int] | None = None
        self.register_buffer("_grid", torch.empty(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-3], x.shape[-2]
        if self._grid_size != (height, width) or self._grid.device != x.device:
            # Made outside inference mode: a grid first built by an inference step must still serve training.
            with torch.inference_mode(False):
                self._grid = position_grid(height, width, self.kind, device=x.device)
            self._grid_size = (height, width)
        return x + self.proj(self._grid.to(x.dtype))


def group_norm(channels: int, eps: float) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=eps)


class _BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm (batch statistics are unreliable for video batches)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, padding: str, eps: float) -> None:
        super().__init__()
        self.conv1 = Conv2d(in_ch, out_ch, 3, stride, padding, bias=False)
        self.norm1 = group_norm(out_ch, eps)
        self.conv2 = Conv2d(out_ch, out_ch, 3, 1, padding, bias=False)
        self.norm2 = group_norm(out_ch, eps)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), group_norm(out_ch, eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


def _resnet34_backbone(cfg: EncoderConfig, padding: str, eps: float) -> tuple[nn.Module, int]:
    """ResNet-34 with a stride-less root (no max-pool), so 128x128 frames give 16x16 features."""
    layers: list[nn.Module] = [Conv2d(3, 64, cfg.resnet_root_kernel, 1, padding, bias=False), group_norm(64, eps)]
    if cfg.resnet_root_activation:
        layers.append(nn.ReLU())
    in_ch = 64
    for out_ch, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(_BasicBlock(in_ch, out_ch, stride if i == 0 else 1, padding, eps))
            in_ch = out_ch
    return nn.Sequential(*layers), in_ch


def _cnn_backbone(cfg: EncoderConfig, padding: str) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    in_ch = 3
    for i, (out_ch, stride) in enumerate(zip(cfg.channels, cfg.strides)):
        layers.append(Conv2d(in_ch, out_ch, cfg.kernel_size, stride, padding))
        if cfg.final_activation or i < len(cfg.channels) - 1:
            layers.append(nn.ReLU())
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


class Encoder(nn.Module):
    """Frames ``[B, 3, H, W]`` in [0, 1] -> features ``[B, h, w, D]`` (channels last)."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        cfg = model_cfg.encoder
        eps = model_cfg.layer_norm_eps
        if cfg.kind == "resnet34":
            self.backbone, channels = _resnet34_backbone(cfg, model_cfg.conv_padding, eps)
        else:
            self.backbone, channels = _cnn_backbone(cfg, model_cfg.conv_padding)
        self.pos = PositionEmbedding(channels, model_cfg.position_embedding)
        self.norm = nn.LayerNorm(channels, eps=eps)
        mlp: list[nn.Module] = []
        in_dim = channels
        for i, dim in enumerate(cfg.mlp_dims):
            mlp.append(nn.Linear(in_dim, dim))
            if i < len(cfg.mlp_dims) - 1:
                mlp.append(nn.ReLU())
            in_dim = dim
        self.mlp = nn.Sequential(*mlp)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Channels-last convolutions skip oneDNN's layout reorders, and the permute below becomes a free view.
        x = self.backbone(frames.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        return self.mlp(self.norm(self.pos(x)))


class PretrainedEncoder(nn.Module):
    """Frozen EfficientNet-Lite0 taps (strides 4, 8, 16) fused into one unit-length feature per cell.

    Each tap is resampled to the output grid and normalised; the fusion weighs the taps (equal at start,
    so an untrained model matches in the raw backbone space). With ``encoder.projection`` a learned square
    matrix maps the fused features (identity at start): one linear metric, not a learned network, because
    heads learned on synthetic families were measured to fit them and lose on held-out ones, while this
    metric (``training.fit_metric``) kept its gain there (docs/RESULTS.md). The frozen network is kept out of
    ``state_dict`` and ``parameters()`` (checkpoints hold only what was trained; the backbone is named by its
    weight file's sha256) but moves with the module."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        cfg = model_cfg.encoder
        backbone = EfficientNetLite0()
        backbone.load_pretrained(expected_sha256=cfg.backbone_sha256)
        self._frozen = [folded_for_inference(backbone)]
        self.output_stride = cfg.output_stride
        self.tap_weights = nn.Parameter(torch.full((len(TAPS),), len(TAPS) ** -0.5))
        self.projection = nn.Parameter(torch.eye(cfg.feature_dim)) if cfg.projection else None

    @property
    def backbone(self) -> nn.Module:
        return self._frozen[0]

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's signature
        self._frozen[0]._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def frozen(self, frames: torch.Tensor) -> BackboneFeatures:
        """The cacheable part: frames ``[B, 3, H, W]`` in [0, 1] -> backbone taps, without gradients."""
        with torch.no_grad():
            return self.backbone(frames)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Feature grid of a ``height x width`` input."""
        return -(-height // self.output_stride), -(-width // self.output_stride)

    def head(self, taps: BackboneFeatures) -> torch.Tensor:
        """Backbone taps -> fused features ``[B, h, w, C]`` of unit length (through the projection if any)."""
        fused = fuse_taps(taps, self.output_stride, self.tap_weights)
        if self.projection is None:
            return fused
        return F.normalize(fused @ self.projection, dim=-1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen(frames))


def fuse_taps(taps: BackboneFeatures, stride: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Backbone taps -> ``[B, h, w, C]`` unit-length features at ``stride``: each tap resampled to that grid and
    normalised, then weighed (``weights`` per tap; None: equally, the frozen features a decoder reconstructs)."""
    s4 = taps.s4
    size = (-(-s4.shape[-2] * 4 // stride), -(-s4.shape[-1] * 4 // stride))
    parts = []
    for i, tap in enumerate(taps.as_tuple()):
        tap = tap.float()
        if tuple(tap.shape[-2:]) != size:
            mode = "area" if tap.shape[-2] > size[0] else "bilinear"
            tap = F.interpolate(tap, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))
        tap = F.normalize(tap, dim=1)
        parts.append(tap if weights is None else weights[i] * tap)
    return F.normalize(torch.cat(parts, dim=1).permute(0, 2, 3, 1), dim=-1)
