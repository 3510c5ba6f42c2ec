"""SAVi model: every preset and variant trains, is slot-permutation equivariant, and streams exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from savi_core.model.config import (
    ConfigError,
    DecoderConfig,
    EncoderConfig,
    InitializerConfig,
    ModelConfig,
    PredictorConfig,
    CorrectorConfig,
    preset,
)
from savi_core.model.initializers import Conditioning
from savi_core.model.savi import SAVi


def tiny(**changes) -> ModelConfig:
    """A small S-like model at 32x32 so CPU tests stay fast."""
    base = ModelConfig(
        preset="custom",
        resolution=(32, 32),
        num_slots=4,
        slot_dim=32,
        encoder=EncoderConfig(channels=(8, 8), strides=(1, 1), mlp_dims=(16, 16)),
        initializer=InitializerConfig(hidden_dim=32, seg_channels=(8, 8), seg_strides=(2, 1)),
        corrector=CorrectorConfig(qkv_dim=32, mlp_hidden=32),
        predictor=PredictorConfig(num_heads=4, qkv_dim=32, mlp_hidden=32),
        decoder=DecoderConfig(broadcast_size=(8, 8), channels=(16, 16), strides=(2, 2)),
    )
    return dataclasses.replace(base, **changes)


def conditioning_for(
    cfg: ModelConfig, batch: int, generator: torch.Generator, partial_mask: bool = False
) -> Conditioning:
    n = cfg.num_object_slots
    yx0 = torch.rand(batch, n, 2, generator=generator) * 0.5
    boxes = torch.cat([yx0, yx0 + 0.3], dim=-1)
    centers = yx0 + 0.15
    h, w = cfg.resolution
    seg = torch.randint(0, n + 1, (batch, h, w), generator=generator)
    conditioned = torch.ones(batch, n)
    if partial_mask:
        conditioned[:, -1] = 0.0
    return Conditioning(boxes=boxes, centers=centers, segmentation=seg, conditioned=conditioned, batch_size=batch)


VARIANTS = {
    "bbox": {},
    "com": {"initializer": InitializerConfig(kind="com", hidden_dim=32)},
    "segmentation": {
        "initializer": InitializerConfig(kind="segmentation", hidden_dim=32, seg_channels=(8, 8), seg_strides=(2, 1))
    },
    "learned": {"initializer": InitializerConfig(kind="learned", background_slot=False)},
    "gaussian": {"initializer": InitializerConfig(kind="gaussian", background_slot=False)},
    "partial_bbox": {"initializer": InitializerConfig(hidden_dim=32, partial=True)},
    "partial_segmentation": {
        "initializer": InitializerConfig(
            kind="segmentation", hidden_dim=32, partial=True, seg_channels=(8, 8), seg_strides=(2, 1)
        )
    },
    "no_background": {"initializer": InitializerConfig(hidden_dim=32, background_slot=False)},
    "mlp_predictor": {"predictor": PredictorConfig(kind="mlp", mlp_hidden=32)},
    "identity_predictor": {"predictor": PredictorConfig(kind="identity")},
    "two_iterations": {"corrector": CorrectorConfig(iterations=2, qkv_dim=32, mlp_hidden=32)},
    "output_stride_2": {"decoder": DecoderConfig(broadcast_size=(8, 8), channels=(16,), strides=(2,))},
    "rgb_target_4ch": {
        "decoder": DecoderConfig(broadcast_size=(8, 8), channels=(16, 16), strides=(2, 2), target_channels=4)
    },
}


def _check_all_grads(model: SAVi, cfg: ModelConfig, batch: int = 2, frames: int = 3) -> None:
    g = torch.Generator().manual_seed(0)
    video = torch.rand(batch, frames, 3, *cfg.resolution, generator=g)
    out = model(video, conditioning_for(cfg, batch, g, partial_mask=cfg.initializer.partial))
    loss = out.reconstruction.square().sum() + out.attention.sum() * 0.0
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_forward_backward_reaches_every_parameter(variant: str) -> None:
    cfg = tiny(**VARIANTS[variant])
    model = SAVi(cfg)
    _check_all_grads(model, cfg)


@pytest.mark.parametrize("name", ["S", "M", "L"])
def test_presets_forward_backward(name: str) -> None:
    cfg = preset(name)
    if name == "L":  # the ResNet-34 preset is heavy: fewer slots, same architecture
        cfg = dataclasses.replace(cfg, num_slots=3)
    model = SAVi(cfg)
    g = torch.Generator().manual_seed(1)
    video = torch.rand(1, 2, 3, *cfg.resolution, generator=g)
    out = model(video, conditioning_for(cfg, 1, g))
    assert out.masks.shape == (1, 2, cfg.num_slots, *cfg.resolution)
    assert out.reconstruction.shape == (1, 2, 3, *cfg.resolution)
    out.reconstruction.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_training_works_after_an_inference_mode_step() -> None:
    """Position grids cached by a streaming step under inference mode must not break a later backward."""
    cfg = tiny()
    model = SAVi(cfg)
    g = torch.Generator().manual_seed(2)
    video = torch.rand(1, 2, 3, *cfg.resolution, generator=g)
    cond = conditioning_for(cfg, 1, g)
    with torch.inference_mode():
        model.step(video[:, 0], model.init_slots(cond))
    model(video, cond).reconstruction.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_presets_match_the_official_configs() -> None:
    small, medium, large = preset("S"), preset("M"), preset("L")
    assert small.resolution == (64, 64) and small.encoder.channels == (32,) * 4 and small.encoder.strides == (1,) * 4
    assert medium.resolution == (128, 128) and medium.encoder.channels == (64,) * 4 and medium.encoder.strides[0] == 2
    assert large.encoder.kind == "resnet34" and large.encoder.stride == 8  # 16x16 features at 128x128
    for cfg in (small, medium, large):
        assert cfg.slot_dim == 128 and cfg.corrector.qkv_dim == 128 and cfg.corrector.iterations == 1
        assert cfg.predictor.num_heads == 4 and cfg.predictor.mlp_hidden == 256
        assert cfg.decoder.output_size == cfg.resolution and cfg.encoder.mlp_dims[0] == 64
        assert cfg.initializer.hidden_dim == 256 and cfg.num_slots == 11
        # The official code's choices where the paper's text differs (docs/PAPER_VS_CODE.md).
        assert cfg.encoder.final_activation and cfg.decoder.final_activation
        assert (cfg.layer_norm_eps, cfg.position_embedding, cfg.conv_padding) == (1e-6, "linear", "flax_same")
        assert cfg.initializer.unconditioned_value == 0.0
    # The encoder MLP keeps the backbone's width (official MLP without output_size).
    assert (small.encoder.mlp_dims, medium.encoder.mlp_dims, large.encoder.mlp_dims) == ((64, 32), (64, 64), (64, 512))
    assert large.encoder.resnet_root_kernel == 3 and not large.encoder.resnet_root_activation


def test_decoder_masks_sum_to_one_and_attention_masks_have_input_size() -> None:
    cfg = tiny(
        decoder=DecoderConfig(broadcast_size=(8, 8), channels=(16,), strides=(2,)),
        encoder=EncoderConfig(channels=(8, 8), strides=(2, 1), mlp_dims=(16, 16)),
    )
    model = SAVi(cfg).eval()
    g = torch.Generator().manual_seed(2)
    frame = torch.rand(2, 3, 32, 32, generator=g)
    slots = model.init_slots(conditioning_for(cfg, 2, g))
    dec = model.step(frame, slots, decode="decoder")
    assert dec.masks.shape == (2, cfg.num_slots, 16, 16)
    torch.testing.assert_close(dec.masks.sum(dim=1), torch.ones(2, 16, 16))
    att = model.step(frame, slots, decode="attention")
    assert att.masks.shape == (2, cfg.num_slots, 32, 32) and att.outputs is None
    torch.testing.assert_close(att.masks.sum(dim=1), torch.ones(2, 32, 32))
    assert att.attention.shape == (2, cfg.num_slots, 16, 16)
    torch.testing.assert_close(att.slots, dec.slots)


def test_slot_permutation_equivariance() -> None:
    cfg = tiny(num_slots=5)
    model = SAVi(cfg).eval()
    g = torch.Generator().manual_seed(3)
    video = torch.rand(1, 3, 3, 32, 32, generator=g)
    cond = conditioning_for(cfg, 1, g)
    perm = torch.tensor([2, 0, 3, 1])
    slot_perm = torch.cat([torch.tensor([0]), perm + 1])  # the background slot stays first
    permuted = Conditioning(boxes=cond.boxes[:, perm], conditioned=cond.conditioned[:, perm])
    with torch.no_grad():
        a = model(video, cond)
        b = model(video, permuted)
    torch.testing.assert_close(b.slots, a.slots[:, :, slot_perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.masks, a.masks[:, :, slot_perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.reconstruction, a.reconstruction, atol=1e-5, rtol=1e-4)


def test_streaming_step_equals_full_forward_over_24_frames() -> None:
    cfg = tiny()
    model = SAVi(cfg).eval()
    g = torch.Generator().manual_seed(4)
    video = torch.rand(2, 24, 3, 32, 32, generator=g)
    cond = conditioning_for(cfg, 2, g)
    with torch.no_grad():
        full = model(video, cond)
        slots = model.init_slots(cond)
        for t in range(24):
            step = model.step(video[:, t], slots)
            torch.testing.assert_close(step.masks, full.masks[:, t], atol=1e-5, rtol=0)
            torch.testing.assert_close(step.slots, full.slots[:, t], atol=1e-5, rtol=0)
            torch.testing.assert_close(step.reconstruction, full.reconstruction[:, t], atol=1e-5, rtol=0)
            slots = step.predicted


def test_forward_continues_from_carried_slots_like_one_long_clip() -> None:
    cfg = tiny()
    model = SAVi(cfg).eval()
    g = torch.Generator().manual_seed(6)
    video = torch.rand(1, 7, 3, 32, 32, generator=g)
    cond = conditioning_for(cfg, 1, g)
    with torch.no_grad():
        whole = model(video, cond)
        head = model(video[:, :3], cond, decode="none")
        tail = model(video[:, 3:], slots=head.predicted[:, -1])
    torch.testing.assert_close(tail.slots, whole.slots[:, 3:], atol=1e-5, rtol=0)
    torch.testing.assert_close(tail.masks, whole.masks[:, 3:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exactly one of cond"):
        model(video, cond, slots=head.predicted[:, -1])
    with pytest.raises(ValueError, match="exactly one of cond"):
        model(video)


def test_attention_bias_keeps_a_slot_off_the_inputs_it_masks_and_zero_bias_changes_nothing() -> None:
    torch.manual_seed(0)
    cfg = tiny()
    model = SAVi(cfg).eval()
    g = torch.Generator().manual_seed(1)
    frame = torch.rand(2, 3, *cfg.resolution, generator=g)
    slots = model.init_slots(conditioning_for(cfg, 2, g))
    plain = model.step(frame, slots, decode="attention")
    h, w = plain.attention.shape[-2:]
    zero = model.step(frame, slots, decode="attention", attention_bias=torch.zeros(2, cfg.num_slots, h, w))
    assert torch.equal(zero.attention, plain.attention) and torch.equal(zero.predicted, plain.predicted)
    bias = torch.zeros(2, cfg.num_slots, h, w)
    bias[:, 1, :, : w // 2] = -1e4  # object slot 0 may not attend to the left half
    gated = model.step(frame, slots, decode="attention", attention_bias=bias)
    assert gated.attention[:, 1, :, : w // 2].max() < 1e-6 and gated.attention[:, 1, :, w // 2 :].sum() > 0
    assert torch.allclose(gated.attention.sum(dim=1), torch.ones(2, h, w), atol=1e-5)
    assert not torch.allclose(gated.predicted[:, 1], plain.predicted[:, 1])
    with pytest.raises(ValueError, match="feature resolution"):
        model.step(frame, slots, attention_bias=torch.zeros(2, cfg.num_slots, h + 1, w))


def test_init_slots_for_replaces_only_the_selected_slots() -> None:
    cfg = tiny()
    model = SAVi(cfg).eval()
    g = torch.Generator().manual_seed(5)
    cond = conditioning_for(cfg, 1, g)
    slots = torch.randn(1, cfg.num_slots, cfg.slot_dim, generator=g)
    which = torch.tensor([[False, False, True, False]])
    with torch.no_grad():
        out = model.init_slots_for(slots, cond, which)
        fresh = model.init_slots(cond)
    torch.testing.assert_close(out[:, [0, 1, 3]], slots[:, [0, 1, 3]])
    torch.testing.assert_close(out[:, 2], fresh[:, 2])


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_unconditioned_boxes_are_encoded_as_the_unconditioned_value(value: float) -> None:
    cfg = tiny(
        initializer=InitializerConfig(hidden_dim=32, seg_channels=(8, 8), seg_strides=(2, 1), unconditioned_value=value)
    )
    model = SAVi(cfg).eval()
    boxes = torch.rand(1, 3, 4)
    other = boxes.clone()
    other[:, 2] = 0.123  # the value of an unconditioned entry must not matter
    cond_mask = torch.tensor([[1.0, 1.0, 0.0]])
    with torch.no_grad():
        a = model.init_slots(Conditioning(boxes=boxes, conditioned=cond_mask))
        b = model.init_slots(Conditioning(boxes=other, conditioned=cond_mask))
        c = model.init_slots(Conditioning(boxes=torch.cat([boxes[:, :2], torch.full((1, 1, 4), value)], 1)))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"num_slots": 0}, "num_slots"),
        ({"resolution": (30, 32)}, "decoder"),
        (
            {"resolution": (62, 64), "encoder": EncoderConfig(strides=(4, 1, 1, 1))},
            r"resolution: \(62, 64\) is not divisible by the encoder stride 4",
        ),
        ({"encoder": EncoderConfig(kind="vit")}, "encoder.kind"),
        ({"predictor": PredictorConfig(kind="lstm")}, "predictor.kind"),
        ({"initializer": InitializerConfig(kind="learned")}, "initializer.background_slot"),
        ({"decoder": DecoderConfig(strides=(2, 2, 3, 1))}, "decoder.strides"),
        ({"corrector": CorrectorConfig(iterations=0)}, "corrector.iterations"),
    ],
)
def test_invalid_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        dataclasses.replace(preset("S"), **changes)


def test_config_dict_round_trip_and_unknown_keys() -> None:
    cfg = tiny()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    from_preset = ModelConfig.from_dict(
        {"preset": "S", "num_slots": 7, "decoder": {"channels": [64, 64, 64], "strides": [2, 2, 2]}}
    )
    assert from_preset.num_slots == 7 and from_preset.encoder == preset("S").encoder
    assert from_preset.decoder.output_size == (64, 64)
    with pytest.raises(ConfigError, match="slots_number"):
        ModelConfig.from_dict({"preset": "S", "slots_number": 3})
    with pytest.raises(ConfigError, match=r"encoder\.chanels"):
        ModelConfig.from_dict({"preset": "S", "encoder": {"chanels": [1]}})
