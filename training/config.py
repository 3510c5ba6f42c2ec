"""Training run configuration: YAML -> validated dataclasses (model, data, train, eval sections).

A typo in a config must fail at load time with the offending key named, not after an hour of
training, so unknown keys and wrongly typed values are errors. The ``model`` section is a
``savi_core.model.config.ModelConfig`` (a ``preset`` plus overrides); the other sections are defined here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from savi_core.model.config import ConfigError, ModelConfig
from savi_core.model.savi import MASK_SOURCES
from savi_core.tracking.tracker_config import TrackerConfig

DATA_KINDS = ("synthetic", "movi", "sketchy", "videos", "bag")
# flow / rgb: pixels (the broadcast decoder); features: the frozen pretrained features (the mlp decoder).
TARGET_KINDS = ("flow", "rgb", "features")
AMP_MODES = ("auto", "off", "bf16", "fp16")


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name}: {message}")


@dataclass
class DataConfig:
    """Which videos to read and how to cut them (one schema for every dataset kind)."""

    kind: str = "synthetic"
    root: str | None = None  # dataset directory / file; None only for kind "synthetic"
    resolution: tuple[int, int] = (64, 64)
    max_instances: int = 10  # == model.num_object_slots
    window: int = 6  # training clip length: frames with a loss (evaluation uses full videos)
    # Up to this many frames before each training window, run without gradients from the boxes, so the
    # window also starts from slots that have tracked for a while (as at frame 20 of a robot's video)
    # instead of always from fresh box slots. Items are window + burn_in frames long.
    burn_in: int = 0
    target: str = "flow"
    train_split: str = "train"
    eval_split: str = "validation"
    # kind == "synthetic": the scene generator's parameters.
    num_videos: int = 1000
    eval_num_videos: int = 50
    num_frames: int = 24
    min_objects: int = 1
    max_objects: int = 6
    seed: int = 0
    # Extra keyword arguments for the dataset class (e.g. sketchy camera); checked by the class.
    options: dict[str, Any] = field(default_factory=dict)
    # Pretrained-encoder models: a directory where the frozen backbone's features of every training frame
    # are kept (training.feature_cache); "" computes them on the fly (the choice on a GPU).
    feature_cache: str = ""

    def validate(self, name: str = "data") -> None:
        _check(self.kind in DATA_KINDS, f"{name}.kind", f"must be one of {DATA_KINDS}, got {self.kind!r}")
        _check(
            self.kind == "synthetic" or bool(self.root),
            f"{name}.root",
            f"kind {self.kind!r} needs a dataset path (set data.root or pass --data)",
        )
        _check(
            len(self.resolution) == 2 and all(v > 0 for v in self.resolution),
            f"{name}.resolution",
            f"must be [height, width] > 0, got {self.resolution!r}",
        )
        _check(self.max_instances >= 1, f"{name}.max_instances", "must be at least 1")
        _check(self.window >= 1, f"{name}.window", "must be at least 1")
        _check(self.burn_in >= 0, f"{name}.burn_in", "must be 0 or more")
        _check(self.target in TARGET_KINDS, f"{name}.target", f"must be one of {TARGET_KINDS}, got {self.target!r}")
        _check(self.num_videos >= 1, f"{name}.num_videos", "must be at least 1")
        _check(self.eval_num_videos >= 1, f"{name}.eval_num_videos", "must be at least 1")
        _check(self.num_frames >= 1, f"{name}.num_frames", "must be at least 1")
        _check(
            1 <= self.min_objects <= self.max_objects,
            f"{name}.min_objects",
            f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}",
        )
        if self.kind == "synthetic":
            _check(
                self.max_objects <= self.max_instances,
                f"{name}.max_objects",
                f"{self.max_objects} objects do not fit in max_instances={self.max_instances}",
            )


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping; defaults are the paper's (A.6)."""

    batch_size: int = 64  # global batch, split over DDP ranks
    steps: int = 100_000
    lr: float = 2e-4
    warmup_steps: int = 2500
    clip_norm: float = 0.05  # global gradient norm; 0 disables clipping
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    image_every: int = 1000
    num_workers: int = 4
    amp: str = "auto"
    out_dir: str = "runs/default"
    device: str = "auto"
    # Not in the paper (0 = the paper's loss): weight of an auxiliary cross-entropy between the decoder
    # masks and ground-truth instance ids. Only for sources with segmentations (synthetic, MOVi); it
    # makes a small CPU budget enough for the shipped default model.
    mask_loss_weight: float = 0.0
    # Not in the paper either: the same cross-entropy on the corrector's attention, which makes the
    # slots bind to their objects in every frame (tracking) rather than only paint their first box.
    attention_loss_weight: float = 0.0
    # Not in the paper: the share of training videos resampled as if filmed by a camera up to
    # camera_resample_max_scale times larger per axis and resized by the Tracker (training/augment.py).
    camera_resample: float = 0.0
    camera_resample_max_scale: float = 5.0
    # Start from these weights (a checkpoint directory, or a training run's latest checkpoint) instead
    # of a random initialisation; the checkpoint's model config must equal this run's.
    init_checkpoint: str | None = None
    # Share of conditioned objects given to a box model as a point (the centre of mass, as a zero-size
    # box) instead of their box, so one model takes both prompt kinds (model.initializer.points).
    point_share: float = 0.0
    # VideoSAUR's temporal feature-similarity loss (mlp decoder with a similarity head): weight, the frame
    # offset k (features at t against t + k), and the softmax temperature over the cosine similarities.
    similarity_loss_weight: float = 0.0
    similarity_offset: int = 1
    similarity_temperature: float = 0.1

    def validate(self, name: str = "train") -> None:
        for key in ("batch_size", "steps", "log_every", "checkpoint_every", "keep_checkpoints", "image_every"):
            _check(getattr(self, key) >= 1, f"{name}.{key}", f"must be at least 1, got {getattr(self, key)}")
        _check(self.lr > 0, f"{name}.lr", "must be positive")
        _check(self.warmup_steps >= 0, f"{name}.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.clip_norm >= 0, f"{name}.clip_norm", "must be >= 0 (0 disables clipping)")
        _check(self.num_workers >= 0, f"{name}.num_workers", "must be >= 0")
        _check(self.amp in AMP_MODES, f"{name}.amp", f"must be one of {AMP_MODES}, got {self.amp!r}")
        _check(self.mask_loss_weight >= 0, f"{name}.mask_loss_weight", "must be >= 0 (0 = the paper's loss only)")
        _check(
            self.attention_loss_weight >= 0, f"{name}.attention_loss_weight", "must be >= 0 (0 = the paper's loss only)"
        )
        _check(
            0.0 <= self.camera_resample <= 1.0,
            f"{name}.camera_resample",
            f"must be a probability in [0, 1], got {self.camera_resample}",
        )
        _check(
            self.camera_resample_max_scale >= 1.0,
            f"{name}.camera_resample_max_scale",
            f"must be >= 1, got {self.camera_resample_max_scale}",
        )
        _check(bool(self.out_dir), f"{name}.out_dir", "must not be empty")
        _check(
            0.0 <= self.point_share <= 1.0, f"{name}.point_share", f"must be a share in [0, 1], got {self.point_share}"
        )
        _check(self.similarity_loss_weight >= 0, f"{name}.similarity_loss_weight", "must be >= 0 (0 = off)")
        _check(self.similarity_offset >= 1, f"{name}.similarity_offset", "must be at least 1 frame")
        _check(self.similarity_temperature > 0, f"{name}.similarity_temperature", "must be positive")


@dataclass
class EvalConfig:
    """Evaluation protocol (A.8): full videos, streaming, first frame skipped."""

    num_videos: int | None = None  # None = the whole split
    skip_first: bool = True
    mask_source: str = TrackerConfig.mask_source  # the node's default
    batch_size: int = 1

    def validate(self, name: str = "eval") -> None:
        _check(self.num_videos is None or self.num_videos >= 1, f"{name}.num_videos", "must be >= 1 or null")
        _check(
            self.mask_source in MASK_SOURCES,
            f"{name}.mask_source",
            f"must be one of {MASK_SOURCES}, got {self.mask_source!r}",
        )
        _check(self.batch_size >= 1, f"{name}.batch_size", "must be at least 1")


@dataclass
class RunConfig:
    """A whole training run; ``model`` is the savi_core model configuration."""

    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        self.data.validate()
        self.train.validate()
        self.eval.validate()
        m = self.model
        _check(
            self.data.max_instances == m.num_object_slots,
            "data.max_instances",
            f"must equal the model's object slots ({m.num_object_slots} = num_slots {m.num_slots}"
            f"{' - 1 background' if m.initializer.background_slot else ''}), got {self.data.max_instances}",
        )
        _check(
            tuple(self.data.resolution) == tuple(m.resolution),
            "data.resolution",
            f"{tuple(self.data.resolution)} differs from model.resolution {tuple(m.resolution)}",
        )
        self._validate_targets()
        _check(
            self.train.point_share == 0 or m.initializer.points,
            "train.point_share",
            "needs model.initializer.points: true (a box model that takes points)",
        )
        if self.data.feature_cache:
            _check(
                m.encoder.kind == "efficientnet_lite0",
                "data.feature_cache",
                f"caches a pretrained backbone's features; model.encoder.kind is {m.encoder.kind!r}",
            )
            _check(
                self.train.camera_resample == 0,
                "train.camera_resample",
                "changes the pixels after the cached features were read: must be 0 with data.feature_cache",
            )
        if not m.has_decoder:
            _check(
                self.train.attention_loss_weight > 0 or self.train.mask_loss_weight > 0,
                "train.attention_loss_weight",
                "a model without a decoder learns from its masks: must be > 0",
            )
        for key in ("mask_loss_weight", "attention_loss_weight"):
            _check(
                getattr(self.train, key) == 0 or self.data.kind in ("synthetic", "movi"),
                f"train.{key}",
                f"needs ground-truth segmentations, which data.kind {self.data.kind!r} does not have",
            )

    def _validate_targets(self) -> None:
        """Pixel targets go with the broadcast decoder, feature targets (and their similarity loss) with the mlp one."""
        m, tc = self.model, self.train
        mlp = m.has_decoder and m.decoder.kind == "mlp"
        if self.data.target == "features":
            _check(mlp, "data.target", "features are reconstructed by the mlp decoder: set model.decoder.kind: mlp")
        elif mlp:
            _check(
                False,
                "data.target",
                f"the mlp decoder reconstructs features: must be features, got {self.data.target!r}",
            )
        elif m.has_decoder:
            _check(
                m.decoder.target_channels == 3,
                "model.decoder.target_channels",
                "must be 3 (flow-RGB and RGB targets both have 3 channels)",
            )
        if tc.similarity_loss_weight > 0:
            _check(
                mlp and m.decoder.similarity,
                "train.similarity_loss_weight",
                "needs the mlp decoder's similarity head (model.decoder.similarity: true)",
            )
            _check(
                tc.similarity_offset < self.data.window,
                "train.similarity_offset",
                f"must be smaller than data.window ({self.data.window}) so a window holds both frames",
            )
        elif mlp and m.decoder.similarity:
            _check(False, "model.decoder.similarity", "the head is trained only with train.similarity_loss_weight > 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
        }

    def hash(self) -> str:
        """Hash of everything that changes the trained numbers (bookkeeping fields excluded)."""
        d = self.to_dict()
        for key in (
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
            "image_every",
            "out_dir",
            "device",
            "num_workers",
        ):
            d["train"].pop(key)
        d.pop("eval")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Check ``value`` against a (simple) type annotation, converting YAML lists to tuples."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: expected {annotation}, got {value!r}")
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), name, f"expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], name) for v in value)
        _check(len(value) == len(args), name, f"expected {len(args)} entries, got {len(value)}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args))
    if origin is dict:
        _check(isinstance(value, dict), name, f"expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        _check(isinstance(value, bool), name, f"expected true/false, got {value!r}")
        return value
    if annotation is int:
        _check(isinstance(value, int) and not isinstance(value, bool), name, f"expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # PyYAML reads "2e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool), name, f"expected a number, got {value!r}"
        )
        return float(value)
    if annotation is str:
        _check(isinstance(value, str), name, f"expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported field type {annotation}")


def _section_from_dict(cls: type, data: Any, name: str) -> Any:
    _check(isinstance(data, dict), name, f"must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        _check(key in known, f"{name}.{key}", f"unknown key (known: {sorted(known)})")
        values[key] = _coerce(value, hints[key], f"{name}.{key}")
    section = cls(**values)
    section.validate(name)
    return section


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from a plain dict (parsed YAML, or a checkpoint's JSON)."""
    _check(isinstance(data, dict), "config", f"must be a mapping, got {type(data).__name__}")
    known = {"model", *_SECTIONS}
    for key in data:
        _check(key in known, str(key), f"unknown section (known: {sorted(known)})")
    _check("model" in data, "model", "section is required (at least `preset: S|M|L`)")
    try:
        model = ModelConfig.from_dict(data["model"])
    except ConfigError as exc:
        raise ConfigError(f"model.{exc}") from exc
    except TypeError as exc:  # a wrongly typed value deep in the model section
        raise ConfigError(f"model: {exc}") from exc
    sections = {key: _section_from_dict(cls, data.get(key, {}), key) for key, cls in _SECTIONS.items()}
    cfg = RunConfig(model=model, **sections)
    cfg.validate()
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping: a pasted-twice section or key would
    silently override the first. Refuse it, naming the key and both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{key}: defined twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.batch_size=2", "model.encoder.channels=[16, 16]"]`` -> dotted keys to YAML-typed values."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        _check(bool(sep) and bool(key.strip()), item, "an override is KEY=VALUE, e.g. train.batch_size=2")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key.strip()}: cannot read the value {text!r} ({exc})") from exc
    return out


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config; ``overrides`` maps dotted keys (``"train.steps"``,
    ``"model.encoder.channels"``) to values, validated like the YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with path.open() as f:
        try:
            data = yaml.load(f, Loader=_UniqueKeyLoader) or {}
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    _check(isinstance(data, dict), str(path), "top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        *parents, key = dotted.split(".")
        _check(bool(parents) and all(parents) and bool(key), dotted, "an override needs a dotted key like train.steps")
        node = data
        for depth, name in enumerate(parents):
            node = node.setdefault(name, {})
            _check(isinstance(node, dict), ".".join(parents[: depth + 1]), "must be a mapping")
        node[key] = value
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
