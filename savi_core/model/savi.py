"""SAVi: the recurrent model. The time loop lives here and only here.

``forward`` (training, whole clips) is literally a loop over ``step`` (streaming inference), so the two
paths cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from savi_core.model.backbone import BackboneFeatures
from savi_core.model.config import ModelConfig
from savi_core.model.corrector import SlotAttention
from savi_core.model.decoder import MLPDecoder, SpatialBroadcastDecoder
from savi_core.model.encoder import Encoder, PretrainedEncoder
from savi_core.model.initializers import Conditioning, SlotInitializer
from savi_core.model.predictor import build_predictor
from savi_core.model.prototypes import KinematicPredictor, PrototypeCorrector, PrototypeInitializer, split

MASK_SOURCES = ("decoder", "attention")
DECODE_MODES = MASK_SOURCES + ("none",)


@dataclass
class StepOutput:
    """One frame. ``masks`` are decoder alphas at the decoder resolution (``decoder`` mode; the mlp decoder's,
    at a feature stride, resized to the input frame) or the corrector attention resized to the input frame
    (``attention`` mode); both sum to 1 over slots."""

    slots: torch.Tensor  # [B, K, D] corrected
    predicted: torch.Tensor  # [B, K, D] carried to the next frame
    attention: torch.Tensor  # [B, K, h, w] at the feature resolution
    masks: torch.Tensor | None = None  # [B, K, H', W']
    outputs: torch.Tensor | None = None  # [B, K, C, H', W'] (decoder only)
    reconstruction: torch.Tensor | None = None  # [B, C, H', W'] (decoder only)


@dataclass
class SAViOutput:
    """A whole clip: the per-frame ``StepOutput`` fields stacked on a time axis after the batch."""

    slots: torch.Tensor
    predicted: torch.Tensor
    attention: torch.Tensor
    masks: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


def upsample_attention(attention: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Attention ``[B, K, h, w]`` -> the ``attention`` masks ``[B, K, *size]`` (bilinear). Each slot's plane
    is resampled on its own, so a caller may resample only the slots it needs and get the same values."""
    if tuple(attention.shape[-2:]) == tuple(size):
        return attention
    return F.interpolate(attention, size=tuple(size), mode="bilinear", align_corners=False)


class SAVi(nn.Module):
    """The paper's model, or (``corrector.kind: prototype``) prototype slots over frozen pretrained
    features, whose initializer pools each box's features and so needs the frame's features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.prototypes = cfg.corrector.kind == "prototype"
        self.decoder: nn.Module | None = None
        if self.prototypes:
            self.encoder: nn.Module = PretrainedEncoder(cfg)
            looks = cfg.corrector.prototypes
            self.initializer: nn.Module = PrototypeInitializer(cfg.num_slots, cfg.encoder.feature_dim, looks)
            self.corrector: nn.Module = PrototypeCorrector(cfg.corrector.spatial_prior, looks)
            self.predictor: nn.Module = (
                KinematicPredictor(looks) if cfg.predictor.kind == "kinematic" else nn.Identity()
            )
            if cfg.has_decoder:
                self.decoder = MLPDecoder(cfg)
            return
        self.encoder = Encoder(cfg)
        self.initializer = SlotInitializer(cfg)
        self.corrector = SlotAttention(cfg.corrector, cfg.slot_dim, cfg.encoder.feature_dim, cfg.layer_norm_eps)
        self.predictor = build_predictor(cfg.predictor, cfg.slot_dim, cfg.layer_norm_eps)
        self.decoder = MLPDecoder(cfg) if cfg.decoder.kind == "mlp" else SpatialBroadcastDecoder(cfg)

    @property
    def num_object_slots(self) -> int:
        return self.config.num_object_slots

    @property
    def needs_features(self) -> bool:
        """Whether ``Conditioning.features`` (this frame's :meth:`encode`) must come with the conditioning."""
        return self.prototypes

    def encode(self, frame: torch.Tensor) -> torch.Tensor:
        """Frame ``[B, 3, H, W]`` in [0, 1] -> features ``[B, h, w, C]`` (what ``step`` attends over)."""
        return self.encoder(frame)

    def init_slots(self, cond: Conditioning, kept: torch.Tensor | None = None) -> torch.Tensor:
        """Initial slot state ``[B, K, D]`` for the first frame."""
        if not self.prototypes:
            return self.initializer(cond)
        return self._init_prototype_slots(cond, kept)

    def _init_prototype_slots(
        self, cond: Conditioning, kept: torch.Tensor | None = None, objects_only: bool = False
    ) -> torch.Tensor:
        """`init_slots` of a prototype model; ``objects_only``: the caller keeps every slot but the conditioned
        object slots (`PrototypeInitializer.forward`)."""
        if cond.features is None or cond.boxes is None:
            raise ValueError(
                "this model starts slots from the frame's features: Conditioning needs boxes and "
                "features (SAVi.encode of the frame)"
            )
        b, h, w, c = cond.features.shape
        conditioned = (
            cond.conditioned
            if cond.conditioned is not None
            else torch.ones(cond.boxes.shape[:2], device=cond.boxes.device)
        )
        if cond.boxes.shape[1] != self.num_object_slots:
            raise ValueError(
                f"conditioning has {cond.boxes.shape[1]} objects, the model has {self.num_object_slots} object slots"
            )
        return self.initializer(
            cond.features.reshape(b, h * w, c),
            (h, w),
            cond.boxes.to(cond.features.dtype),
            conditioned.to(cond.features.dtype),
            1,
            kept,
            objects_only,
        )

    def init_slots_for(self, slots: torch.Tensor, cond: Conditioning, which: torch.Tensor) -> torch.Tensor:
        """Re-initialise the slots where ``which [B, K]`` is true from ``cond``; keep the others.

        Used when a new object appears mid-video: its free slot restarts from the new box while every
        tracked slot keeps its state (and prototype slots' new background avoids the kept objects).
        """
        if not self.prototypes:
            return torch.where(which.unsqueeze(-1), self.init_slots(cond).to(slots.dtype), slots)
        offset = int(self.config.initializer.background_slot)
        # Only conditioned object slots restart (a track's start or re-anchor): no new background is wanted.
        background = which[:, :offset].any()
        if cond.conditioned is not None:
            background = background | (which[:, offset:] & (cond.conditioned <= 0.5)).any()
        objects_only = not bool(background)
        kept = None
        if not objects_only or self.config.corrector.prototypes > 1:  # several looks need the background
            proto, *_, obj = split(slots, self.config.corrector.prototypes)
            kept = (proto * ((obj > 0.5) & ~which).view(*obj.shape, 1, 1).to(proto.dtype)).flatten(1, 2)
        fresh = self._init_prototype_slots(cond, kept, objects_only)
        return torch.where(which.unsqueeze(-1), fresh.to(slots.dtype), slots)

    def step(
        self,
        frame: torch.Tensor | None,
        slots: torch.Tensor,
        decode: str = "decoder",
        attention_bias: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> StepOutput:
        """One frame ``[B, 3, H, W]`` in [0, 1] with the carried slots ``[B, K, D]``; ``attention_bias
        [B, K, h, w]`` at the feature resolution is added to the corrector's attention logits.
        ``features`` (:meth:`encode` of the frame, when already computed) skip the encoder; without a
        frame, attention masks stay at the feature resolution."""
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        if decode == "decoder" and self.decoder is None:
            raise ValueError("this model has no decoder: its masks are its attention (decode='attention')")
        if features is None:
            features = self.encoder(frame)
        b, h, w, c = features.shape
        if attention_bias is not None:
            if attention_bias.shape[-2:] != (h, w):
                raise ValueError(
                    f"attention_bias must be at the feature resolution {(h, w)}, got {tuple(attention_bias.shape[-2:])}"
                )
            attention_bias = attention_bias.reshape(b, -1, h * w)
        if self.prototypes:
            slots, attn = self.corrector(slots, features.reshape(b, h * w, c), (h, w), attention_bias)
        else:
            slots, attn = self.corrector(slots, features.reshape(b, h * w, c), attention_bias)
        attention = attn.reshape(b, -1, h, w)
        predicted = self.predictor(slots)
        out = StepOutput(slots=slots, predicted=predicted, attention=attention)
        if decode == "decoder":
            outputs, logits = self.decoder(slots)
            masks = logits.softmax(dim=1)
            out.outputs = outputs
            out.reconstruction = (masks.unsqueeze(2) * outputs).sum(dim=1)
            if isinstance(self.decoder, MLPDecoder) and frame is not None and masks.shape[-2:] != frame.shape[-2:]:
                masks = F.interpolate(masks, size=frame.shape[-2:], mode="bilinear", align_corners=False)
            out.masks = masks
        elif decode == "attention":
            out.masks = upsample_attention(attention, frame.shape[-2:] if frame is not None else (h, w))
        return out

    def forward(
        self,
        video: torch.Tensor | BackboneFeatures,
        cond: Conditioning | None = None,
        decode: str = "decoder",
        slots: torch.Tensor | None = None,
    ) -> SAViOutput:
        """A clip ``[B, T, 3, H, W]`` (or, for the pretrained encoder, its cached backbone taps with a time
        axis): initialise from ``cond``, or continue from ``slots [B, K, D]`` carried over from earlier
        frames (exactly one of the two), and step through every frame."""
        if (cond is None) == (slots is None):
            raise ValueError("pass exactly one of cond (first frame) and slots (carried from earlier frames)")
        cached = isinstance(video, BackboneFeatures)
        length = video.s4.shape[1] if cached else video.shape[1]

        def frame_features(t: int) -> torch.Tensor | None:
            if cached:
                return self.encoder.head(BackboneFeatures(video.s4[:, t], video.s8[:, t], video.s16[:, t]))
            return self.encoder(video[:, t]) if self.prototypes else None

        steps: list[StepOutput] = []
        for t in range(length):
            features = frame_features(t)
            if slots is None:
                if self.prototypes and cond.features is None:
                    cond = dataclasses.replace(cond, features=features)
                slots = self.init_slots(cond)
            step = self.step(None if cached else video[:, t], slots, decode=decode, features=features)
            steps.append(step)
            slots = step.predicted

        def stack(name: str) -> torch.Tensor | None:
            values = [getattr(s, name) for s in steps]
            return None if values[0] is None else torch.stack(values, dim=1)

        return SAViOutput(
            slots=stack("slots"),
            predicted=stack("predicted"),
            attention=stack("attention"),
            masks=stack("masks"),
            outputs=stack("outputs"),
            reconstruction=stack("reconstruction"),
        )
