"""Model configuration as data: dataclasses, the paper's presets, and validation with clear messages.

Configs travel inside checkpoints as JSON, so every field is a plain type and ``from_dict`` rejects
unknown keys instead of silently ignoring a typo.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ENCODER_KINDS = ("cnn", "resnet34", "efficientnet_lite0")
CORRECTOR_KINDS = ("slot_attention", "prototype")
INITIALIZER_KINDS = ("bbox", "com", "segmentation", "learned", "gaussian")
CONDITIONAL_KINDS = ("bbox", "com", "segmentation")
PREDICTOR_KINDS = ("transformer", "mlp", "identity", "kinematic")
DECODER_KINDS = ("broadcast", "mlp")
# Channels of the fused EfficientNet-Lite0 taps (strides 4, 8, 16: 24 + 40 + 112).
PRETRAINED_FEATURE_DIM = 176
PRESETS = ("S", "M", "L")
POSITION_EMBEDDINGS = ("linear", "ramps4")
CONV_PADDINGS = ("flax_same", "symmetric")

# How the official SAVi code (which produced the paper's numbers) differs from the paper's text. The
# field defaults are the official code's; checkpoints written before these fields existed (format
# version 1) were the paper's variant and load with these values filled in, so they compute as before.
PAPER_VARIANT: dict[str, dict[str, Any]] = {
    "": {"layer_norm_eps": 1e-5, "position_embedding": "ramps4", "conv_padding": "symmetric"},
    "encoder": {"final_activation": False, "resnet_root_kernel": 7, "resnet_root_activation": True},
    "initializer": {"unconditioned_value": -1.0},
    "decoder": {"final_activation": False},
}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


def _positive_ints(values: tuple[int, ...], name: str) -> None:
    _check(len(values) > 0, name, "must not be empty")
    for v in values:
        _check(isinstance(v, int) and v > 0, name, f"every entry must be a positive integer, got {values!r}")


@dataclass
class EncoderConfig:
    """Table A.5 CNN (or the ResNet-34 backbone of SAVi (ResNet)), then position embedding, LN and a 1x1 MLP;
    or ``efficientnet_lite0``: the frozen pretrained backbone, named by its weight file's sha256."""

    kind: str = "cnn"
    channels: tuple[int, ...] = (32, 32, 32, 32)
    strides: tuple[int, ...] = (1, 1, 1, 1)
    kernel_size: int = 5
    mlp_dims: tuple[int, ...] = (64, 32)
    # Official: ReLU after the last conv layer too (paper table: only between layers).
    final_activation: bool = True
    # Official ResNet-34 for small inputs: 3x3 root conv, GroupNorm and no ReLU (paper variant: 7x7, ReLU).
    resnet_root_kernel: int = 3
    resnet_root_activation: bool = False
    # efficientnet_lite0: the weight file the model was trained on, and the stride of the fused features.
    backbone_sha256: str = ""
    output_stride: int = 4
    # efficientnet_lite0: a learned linear map of the fused features (a metric; identity when untrained), fitted
    # by ``training.fit_metric`` so that an object's cells match its own earlier look better than anything else.
    projection: bool = False

    def validate(self, name: str = "encoder") -> None:
        _check(self.kind in ENCODER_KINDS, f"{name}.kind", f"must be one of {ENCODER_KINDS}, got {self.kind!r}")
        _check(
            isinstance(self.projection, bool), f"{name}.projection", f"must be true or false, got {self.projection!r}"
        )
        _check(
            not self.projection or self.kind == "efficientnet_lite0",
            f"{name}.projection",
            f"only the efficientnet_lite0 encoder has a projection, not {self.kind!r}",
        )
        if self.kind == "efficientnet_lite0":
            _check(
                isinstance(self.backbone_sha256, str) and len(self.backbone_sha256) == 64,
                f"{name}.backbone_sha256",
                "must be the 64-hex-digit sha256 of the backbone weight file",
            )
            _check(
                self.output_stride in (4, 8, 16),
                f"{name}.output_stride",
                f"must be 4, 8 or 16, got {self.output_stride!r}",
            )
        _positive_ints(self.mlp_dims, f"{name}.mlp_dims")
        if self.kind == "cnn":
            _positive_ints(self.channels, f"{name}.channels")
            _positive_ints(self.strides, f"{name}.strides")
            _check(
                len(self.channels) == len(self.strides),
                f"{name}.strides",
                f"needs one stride per conv layer ({len(self.channels)}), got {len(self.strides)}",
            )
            _check(
                self.kernel_size % 2 == 1 and self.kernel_size > 0, f"{name}.kernel_size", "must be odd and positive"
            )
        _check(
            self.resnet_root_kernel % 2 == 1 and self.resnet_root_kernel > 0,
            f"{name}.resnet_root_kernel",
            "must be odd and positive",
        )

    @property
    def stride(self) -> int:
        """Total down-sampling from the input frame to the feature map."""
        if self.kind == "resnet34":
            return 8
        if self.kind == "efficientnet_lite0":
            return self.output_stride
        total = 1
        for s in self.strides:
            total *= s
        return total

    @property
    def feature_dim(self) -> int:
        return PRETRAINED_FEATURE_DIM if self.kind == "efficientnet_lite0" else self.mlp_dims[-1]


@dataclass
class InitializerConfig:
    """How the first frame's slots are made: from boxes, centres of mass, masks, or unconditionally."""

    kind: str = "bbox"
    hidden_dim: int = 256
    background_slot: bool = True
    partial: bool = False
    seg_channels: tuple[int, ...] = (32, 32, 32, 32)
    seg_strides: tuple[int, ...] = (2, 2, 2, 1)
    # Coordinates given to an unconditioned (padding) object slot: the official code pads with zeros,
    # the paper's text says -1.
    unconditioned_value: float = 0.0
    # Box models only: the model was also trained on points, each given as a zero-size box
    # (ymin = ymax, xmin = xmax) at the point, so a person's click conditions a slot like a box does.
    points: bool = False

    def validate(self, name: str = "initializer") -> None:
        _check(self.kind in INITIALIZER_KINDS, f"{name}.kind", f"must be one of {INITIALIZER_KINDS}, got {self.kind!r}")
        _check(self.hidden_dim > 0, f"{name}.hidden_dim", "must be positive")
        _positive_ints(self.seg_channels, f"{name}.seg_channels")
        _positive_ints(self.seg_strides, f"{name}.seg_strides")
        _check(
            len(self.seg_channels) == len(self.seg_strides), f"{name}.seg_strides", "needs one stride per conv layer"
        )
        _check(
            not self.points or self.kind == "bbox",
            f"{name}.points",
            f"only box models take points as zero-size boxes (centre-of-mass models take points anyway), "
            f"kind is {self.kind!r}",
        )
        if self.kind not in CONDITIONAL_KINDS:
            _check(
                not self.background_slot,
                f"{name}.background_slot",
                f"only applies to conditional kinds {CONDITIONAL_KINDS}",
            )
            _check(not self.partial, f"{name}.partial", f"only applies to conditional kinds {CONDITIONAL_KINDS}")

    @property
    def conditional(self) -> bool:
        return self.kind in CONDITIONAL_KINDS


@dataclass
class CorrectorConfig:
    """Slot Attention: LN before the projections, softmax over slots, weighted mean over inputs, GRU; or
    ``prototype``: slots are prototypes in the frozen backbone's feature space (``savi_core.model.prototypes``)."""

    kind: str = "slot_attention"
    # prototype: object slots also attend by distance to their expected place, and hold this many looks.
    spatial_prior: bool = True
    prototypes: int = 1
    iterations: int = 1
    qkv_dim: int = 128
    mlp_hidden: int = 256
    eps: float = 1e-8

    def validate(self, name: str = "corrector") -> None:
        _check(self.kind in CORRECTOR_KINDS, f"{name}.kind", f"must be one of {CORRECTOR_KINDS}, got {self.kind!r}")
        _check(
            isinstance(self.prototypes, int) and 1 <= self.prototypes <= 8,
            f"{name}.prototypes",
            f"must be an integer from 1 to 8, got {self.prototypes!r}",
        )
        _check(self.iterations >= 1, f"{name}.iterations", "must be at least 1")
        _check(self.qkv_dim > 0, f"{name}.qkv_dim", "must be positive")
        _check(self.mlp_hidden > 0, f"{name}.mlp_hidden", "must be positive")
        _check(0 < self.eps < 1e-2, f"{name}.eps", "must be a small positive number")


@dataclass
class PredictorConfig:
    """Transition between frames: a post-norm transformer block over slots (paper), a per-slot MLP, or identity."""

    kind: str = "transformer"
    num_heads: int = 4
    qkv_dim: int = 128
    mlp_hidden: int = 256

    def validate(self, name: str = "predictor") -> None:
        _check(self.kind in PREDICTOR_KINDS, f"{name}.kind", f"must be one of {PREDICTOR_KINDS}, got {self.kind!r}")
        _check(
            self.num_heads > 0 and self.qkv_dim % self.num_heads == 0,
            f"{name}.num_heads",
            f"must divide qkv_dim={self.qkv_dim}",
        )
        _check(self.mlp_hidden > 0, f"{name}.mlp_hidden", "must be positive")


@dataclass
class DecoderConfig:
    """Spatial broadcast decoder (Table A.6; output resolution broadcast_size * prod(strides)), or ``mlp``:
    DINOSAUR's per-slot MLP broadcast over the feature positions at ``stride``, reconstructing the frozen
    pretrained features (``target_channels`` = the fused features' width), optionally with a head that
    predicts VideoSAUR's temporal feature affinities (``similarity``: one output per position of the grid)."""

    kind: str = "broadcast"
    broadcast_size: tuple[int, int] = (8, 8)
    channels: tuple[int, ...] = (64, 64, 64, 64)
    strides: tuple[int, ...] = (2, 2, 2, 1)
    kernel_size: int = 5
    target_channels: int = 3
    # Official: ReLU after the last conv layer too, before the 1x1 heads (paper table: only between).
    final_activation: bool = True
    # mlp: hidden width, hidden layers, the feature stride it decodes at, and the similarity head.
    hidden: int = 256
    layers: int = 3
    stride: int = 8
    similarity: bool = False

    def validate(self, name: str = "decoder") -> None:
        _check(self.kind in DECODER_KINDS, f"{name}.kind", f"must be one of {DECODER_KINDS}, got {self.kind!r}")
        _check(self.target_channels > 0, f"{name}.target_channels", "must be positive")
        if self.kind == "mlp":
            _check(isinstance(self.hidden, int) and self.hidden > 0, f"{name}.hidden", "must be a positive integer")
            _check(isinstance(self.layers, int) and self.layers >= 1, f"{name}.layers", "must be at least 1")
            _check(self.stride in (4, 8, 16), f"{name}.stride", f"must be 4, 8 or 16, got {self.stride!r}")
            return
        _check(not self.similarity, f"{name}.similarity", "only the mlp decoder has a similarity head")
        _positive_ints(tuple(self.broadcast_size), f"{name}.broadcast_size")
        _check(len(self.broadcast_size) == 2, f"{name}.broadcast_size", "must be [height, width]")
        _positive_ints(self.channels, f"{name}.channels")
        _check(len(self.channels) == len(self.strides), f"{name}.strides", "needs one stride per layer")
        for s in self.strides:
            _check(s in (1, 2), f"{name}.strides", f"each stride must be 1 or 2, got {self.strides!r}")
        _check(self.kernel_size % 2 == 1, f"{name}.kernel_size", "must be odd")

    @property
    def output_size(self) -> tuple[int, int]:
        """Broadcast decoder's output size (the mlp decoder's is ``ModelConfig.decoder_grid``)."""
        factor = 1
        for s in self.strides:
            factor *= s
        return (self.broadcast_size[0] * factor, self.broadcast_size[1] * factor)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a SAVi model; stored as JSON beside the weights."""

    preset: str = "S"
    resolution: tuple[int, int] = (64, 64)
    num_slots: int = 11
    slot_dim: int = 128
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    initializer: InitializerConfig = field(default_factory=InitializerConfig)
    corrector: CorrectorConfig = field(default_factory=CorrectorConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    # Flax's LayerNorm epsilon (torch's default is 1e-5).
    layer_norm_eps: float = 1e-6
    # "linear": official, a [y, x] grid in [-1, 1] projected by a Dense; "ramps4": the paper's four ramps.
    position_embedding: str = "linear"
    # "flax_same": official SAME alignment of strided convs (k=5, s=2: 1 before / 2 after for a conv,
    # 3 before / 2 after for a transposed conv); "symmetric": torch-style padding of k // 2 on both sides.
    conv_padding: str = "flax_same"

    def __post_init__(self) -> None:
        self.resolution = tuple(self.resolution)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        _check(
            self.preset in PRESETS + ("custom",),
            "preset",
            f"must be one of {PRESETS + ('custom',)}, got {self.preset!r}",
        )
        _check(len(self.resolution) == 2, "resolution", "must be [height, width]")
        _positive_ints(tuple(self.resolution), "resolution")
        _check(self.num_slots >= 1, "num_slots", "must be at least 1")
        _check(self.slot_dim > 0, "slot_dim", "must be positive")
        _check(0 < self.layer_norm_eps < 1e-2, "layer_norm_eps", "must be a small positive number")
        _check(
            self.position_embedding in POSITION_EMBEDDINGS,
            "position_embedding",
            f"must be one of {POSITION_EMBEDDINGS}, got {self.position_embedding!r}",
        )
        _check(
            self.conv_padding in CONV_PADDINGS,
            "conv_padding",
            f"must be one of {CONV_PADDINGS}, got {self.conv_padding!r}",
        )
        self.encoder.validate()
        self.initializer.validate()
        self.corrector.validate()
        self.predictor.validate()
        _check(
            self.decoder.kind in DECODER_KINDS,
            "decoder.kind",
            f"must be one of {DECODER_KINDS}, got {self.decoder.kind!r}",
        )
        if self.has_decoder:
            self.decoder.validate()
        if self.initializer.background_slot:
            _check(self.num_slots >= 2, "num_slots", "needs at least 2 slots when initializer.background_slot is true")
        stride = self.encoder.stride
        self._check_stride(stride, "resolution", f"{self.resolution} is not divisible by the encoder stride {stride}")
        if self.corrector.kind == "prototype":
            self._validate_prototype()
        if self.decoder.kind == "mlp" and self.has_decoder:
            self._validate_mlp_decoder()
        if not self.has_decoder or self.decoder.kind == "mlp":
            return
        h, w = self.resolution
        oh, ow = self.decoder.output_size
        _check(
            h % oh == 0 and w % ow == 0 and h // oh == w // ow,
            "decoder",
            f"output size {(oh, ow)} must divide the resolution {self.resolution} by the same factor",
        )

    def _validate_prototype(self) -> None:
        """Prototype slots live in the pretrained feature space and are read through their attention."""
        _check(
            self.encoder.kind == "efficientnet_lite0",
            "encoder.kind",
            "the prototype corrector needs the efficientnet_lite0 encoder",
        )
        want = self.corrector.prototypes * self.encoder.feature_dim + 7
        _check(
            self.slot_dim == want,
            "slot_dim",
            f"must be {want} with the prototype corrector (prototypes x features + geometry)",
        )
        _check(
            self.predictor.kind in ("kinematic", "identity"),
            "predictor.kind",
            "must be kinematic or identity with the prototype corrector",
        )
        _check(
            self.initializer.kind == "bbox" and self.initializer.background_slot,
            "initializer",
            "the prototype corrector takes boxes (and points as zero-size boxes) with a background slot",
        )

    def _validate_mlp_decoder(self) -> None:
        """The mlp decoder reconstructs the frozen backbone's fused features on its own grid."""
        _check(
            self.corrector.kind == "prototype",
            "decoder.kind",
            "the mlp decoder reconstructs the frozen pretrained features: it needs the prototype corrector "
            "(the model over the efficientnet_lite0 backbone)",
        )
        _check(
            self.decoder.target_channels == self.encoder.feature_dim,
            "decoder.target_channels",
            f"must be {self.encoder.feature_dim} with the mlp decoder (the fused backbone features' width)",
        )
        stride = self.decoder.stride
        self._check_stride(stride, "decoder.stride", f"{stride} does not divide the resolution {self.resolution}")

    def _check_stride(self, stride: int, name: str, message: str) -> None:
        """A feature map of ``stride``-pixel cells must tile the image exactly."""
        h, w = self.resolution
        _check(h % stride == 0 and w % stride == 0, name, message)

    @property
    def has_decoder(self) -> bool:
        """Prototype models have a decoder only when it is the mlp one (their masks are otherwise their attention)."""
        return self.corrector.kind != "prototype" or self.decoder.kind == "mlp"

    @property
    def decoder_grid(self) -> tuple[int, int]:
        """The mlp decoder's output grid (feature positions at ``decoder.stride``)."""
        return (self.resolution[0] // self.decoder.stride, self.resolution[1] // self.decoder.stride)

    @property
    def num_object_slots(self) -> int:
        return self.num_slots - int(self.initializer.background_slot)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], paper_variant: bool = False) -> "ModelConfig":
        """Build from a (JSON/YAML) dict; unknown keys are errors. A ``preset`` key starts from that preset.

        ``paper_variant`` fills the fields of :data:`PAPER_VARIANT` that ``data`` leaves out with the
        paper's values instead of the official code's (for configs written before those fields existed).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        if paper_variant:
            data = _with_paper_variant(data)
        base = preset(data["preset"]) if data.get("preset") in PRESETS else cls(preset="custom")
        return _merge(base, data)


_SUB_CONFIGS = {
    "encoder": EncoderConfig,
    "initializer": InitializerConfig,
    "corrector": CorrectorConfig,
    "predictor": PredictorConfig,
    "decoder": DecoderConfig,
}


def _with_paper_variant(data: dict[str, Any]) -> dict[str, Any]:
    filled = {**PAPER_VARIANT[""], **data}
    for section, values in PAPER_VARIANT.items():
        if section:
            given = data.get(section, {})
            filled[section] = {**values, **given} if isinstance(given, dict) else given
    return filled


def _merge(base: ModelConfig, data: dict[str, Any]) -> ModelConfig:
    top = {f.name: f for f in dataclasses.fields(ModelConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in top:
            raise ConfigError(f"{key}: unknown model config key (known: {sorted(top)})")
        if key in _SUB_CONFIGS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: must be a mapping")
            sub_cls = _SUB_CONFIGS[key]
            known = {f.name for f in dataclasses.fields(sub_cls)}
            for sub_key in value:
                if sub_key not in known:
                    raise ConfigError(f"{key}.{sub_key}: unknown key (known: {sorted(known)})")
            merged = dataclasses.asdict(getattr(base, key))
            merged.update({k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
            values[key] = sub_cls(**merged)
        else:
            values[key] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(base, **values)
    except TypeError as exc:
        # A wrongly typed value fails a comparison inside validation, whose message names no field: find it.
        # No "invalid model config" prefix here: callers (checkpoint, training config) add their own context.
        field = next((key for key in values if _wrong_type(base, key, values[key])), None)
        raise ConfigError(
            f"{field}: a value of the wrong type ({exc})" if field else f"a value of the wrong type ({exc})"
        ) from exc


def _wrong_type(base: ModelConfig, key: str, value: Any) -> bool:
    """Whether ``value`` alone makes ``key`` fail validation with a TypeError."""
    try:
        dataclasses.replace(base, **{key: value})
    except TypeError:
        return True
    except ValueError:
        return False
    return False


def preset(name: str) -> ModelConfig:
    """The official SAVi architectures (``savi/configs/movi/savi_conditional_{small,medium,large}.py``):
    S (MOVi 64x64), M (MOVi++ 128x128), L (SAVi ResNet, 128x128). The encoder MLP's output keeps the
    backbone's width, as the official ``MLP`` does without an ``output_size``."""
    if name == "S":
        return ModelConfig(preset="S")
    if name == "M":
        return ModelConfig(
            preset="M",
            resolution=(128, 128),
            encoder=EncoderConfig(channels=(64, 64, 64, 64), strides=(2, 1, 1, 1), mlp_dims=(64, 64)),
            decoder=DecoderConfig(strides=(2, 2, 2, 2)),
        )
    if name == "L":
        return ModelConfig(
            preset="L",
            resolution=(128, 128),
            encoder=EncoderConfig(kind="resnet34", mlp_dims=(64, 512)),
            decoder=DecoderConfig(strides=(2, 2, 2, 2)),
        )
    raise ConfigError(f"preset: unknown preset {name!r}, expected one of {PRESETS}")


def prototype_config(resolution: tuple[int, int] = (128, 160), num_slots: int = 17, prototypes: int = 1) -> ModelConfig:
    """Prototype slots over the frozen pretrained EfficientNet-Lite0 (``savi_core.model.prototypes``): a box or
    point starts an object slot, every other slot holds a background prototype of the scene."""
    from savi_core.model.backbone import WEIGHT_SHA256

    return ModelConfig(
        preset="custom",
        resolution=tuple(resolution),
        num_slots=num_slots,
        slot_dim=prototypes * PRETRAINED_FEATURE_DIM + 7,
        encoder=EncoderConfig(kind="efficientnet_lite0", backbone_sha256=WEIGHT_SHA256, output_stride=4),
        initializer=InitializerConfig(kind="bbox", background_slot=True, points=True),
        corrector=CorrectorConfig(kind="prototype", prototypes=prototypes),
        predictor=PredictorConfig(kind="kinematic"),
    )


def tiny_config(
    resolution: tuple[int, int] = (32, 32),
    num_slots: int = 5,
    decoder: tuple[tuple[int, int], tuple[int, ...]] = ((8, 8), (2, 2)),
    kind: str = "bbox",
    points: bool = False,
) -> ModelConfig:
    """A few-thousand-parameter model (slot size 16) that runs a step in milliseconds on a CPU: what tests
    and the Tracker's output recordings run with random weights. ``decoder`` is (broadcast size, strides)."""
    return ModelConfig(
        preset="custom",
        resolution=resolution,
        num_slots=num_slots,
        slot_dim=16,
        encoder=EncoderConfig(channels=(8, 8), strides=(1, 1), kernel_size=3, mlp_dims=(16, 16)),
        initializer=InitializerConfig(kind=kind, hidden_dim=16, seg_channels=(4, 4), seg_strides=(2, 2), points=points),
        corrector=CorrectorConfig(qkv_dim=16, mlp_hidden=16),
        predictor=PredictorConfig(num_heads=2, qkv_dim=16, mlp_hidden=16),
        decoder=DecoderConfig(
            broadcast_size=decoder[0], channels=(8,) * len(decoder[1]), strides=decoder[1], kernel_size=3
        ),
    )
