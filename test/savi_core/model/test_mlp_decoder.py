"""DINOSAUR's MLP decoder on the prototype model: shapes, what trains and what stays frozen, config
validation, and a checkpoint that the Tracker reads its masks from (mask_source decoder)."""

import numpy as np
import pytest
import torch

from savi_core.model.backbone import BackboneFeatures
from savi_core.model.checkpoint import load_checkpoint, save_checkpoint
from savi_core.model.config import PRETRAINED_FEATURE_DIM, ConfigError, ModelConfig, prototype_config
from savi_core.model.initializers import Conditioning
from savi_core.model.savi import SAVi
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig


def mlp_config(similarity: bool = False, resolution: tuple[int, int] = (64, 80), **decoder) -> ModelConfig:
    data = prototype_config(resolution).to_dict()
    data["decoder"].update(
        kind="mlp", target_channels=PRETRAINED_FEATURE_DIM, hidden=32, layers=2, stride=16, similarity=similarity
    )
    data["decoder"].update(decoder)
    return ModelConfig.from_dict(data)


def conditioning(objects: int) -> Conditioning:
    boxes = torch.zeros(1, objects, 4)
    boxes[0, 0] = torch.tensor([0.2, 0.2, 0.6, 0.5])
    conditioned = torch.zeros(1, objects)
    conditioned[0, 0] = 1
    return Conditioning(boxes=boxes, conditioned=conditioned)


def test_decoder_outputs_features_similarity_and_masks_at_its_stride():
    torch.manual_seed(0)
    cfg = mlp_config(similarity=True)
    model = SAVi(cfg).eval()
    assert cfg.has_decoder and cfg.decoder_grid == (4, 5)
    one = conditioning(model.num_object_slots)
    two = Conditioning(boxes=one.boxes.expand(2, -1, -1), conditioned=one.conditioned.expand(2, -1))
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, 64, 80), two)
    k = cfg.num_slots
    assert out.outputs.shape == (2, 3, k, PRETRAINED_FEATURE_DIM + 20, 4, 5)  # features, then 4 x 5 affinities
    assert out.reconstruction.shape == (2, 3, PRETRAINED_FEATURE_DIM + 20, 4, 5)
    assert out.masks.shape == (2, 3, k, 64, 80)  # alpha resized to the frame, as attention masks are
    assert torch.allclose(out.masks.sum(2), torch.ones(1), atol=1e-5)
    assert out.attention.shape == (2, 3, k, 16, 20)
    # From cached taps (no frames) the masks stay on the decoder's grid.
    taps = model.encoder.frozen(torch.rand(3, 3, 64, 80))
    cached = BackboneFeatures(*(tap.unsqueeze(0) for tap in taps.as_tuple()))
    with torch.no_grad():
        assert model(cached, conditioning(model.num_object_slots)).masks.shape == (1, 3, k, 4, 5)


def test_decoder_and_prototype_parameters_get_gradients_the_frozen_backbone_none():
    torch.manual_seed(0)
    model = SAVi(mlp_config()).train()
    backbone = model.encoder.backbone
    before = {name: t.clone() for name, t in backbone.state_dict().items()}
    assert all(not p.requires_grad for p in backbone.parameters())
    assert not any(name.startswith("encoder.backbone") for name in model.state_dict())
    out = model(torch.rand(1, 3, 3, 64, 80), conditioning(model.num_object_slots))
    out.reconstruction.square().sum().backward()
    for name in ("decoder.slot_in.weight", "decoder.pos", "decoder.mlp.3.weight", "encoder.tap_weights"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in backbone.parameters())
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    assert all(torch.equal(before[name], t) for name, t in backbone.state_dict().items())


@pytest.mark.parametrize(
    "change, field",
    [
        ({"target_channels": 3}, "decoder.target_channels"),
        ({"stride": 32}, "decoder.stride"),
        ({"hidden": 0}, "decoder.hidden"),
        ({"layers": 0}, "decoder.layers"),
        ({"kind": "upsampler"}, "decoder.kind"),
    ],
)
def test_bad_decoder_fields_are_named(change, field):
    with pytest.raises(ConfigError, match=field):
        mlp_config(**change)


def test_decoder_stride_must_divide_the_resolution_and_needs_the_prototype_model():
    with pytest.raises(ConfigError, match="decoder.stride"):
        mlp_config(resolution=(72, 80))  # 72 rows: whole stride-4 cells, not stride-16 ones
    data = ModelConfig(preset="S").to_dict()
    data["decoder"].update(kind="mlp", target_channels=64)
    with pytest.raises(ConfigError, match="decoder.kind.*prototype corrector"):
        ModelConfig.from_dict(data)
    data = ModelConfig(preset="S").to_dict()
    data["decoder"]["similarity"] = True
    with pytest.raises(ConfigError, match="decoder.similarity"):
        ModelConfig.from_dict(data)
    assert not prototype_config().has_decoder  # v7's layout: its masks are its attention


def square_scene(t: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((120, 160, 3), 120, np.uint8)
    labels = np.zeros((120, 160), bool)
    labels[40:80, 30 + 3 * t : 70 + 3 * t] = True
    image[labels] = (220, 40, 30)
    return image, labels


def test_checkpoint_with_the_decoder_loads_and_the_tracker_reads_its_masks(tmp_path):
    torch.manual_seed(0)
    model = SAVi(mlp_config(resolution=(64, 80)))
    save_checkpoint(tmp_path / "ckpt", model)
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config.to_dict() == model.config.to_dict()
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    decoder = Tracker(loaded, TrackerConfig(mask_source="decoder"))
    attention = Tracker(loaded, TrackerConfig(mask_source="attention"))
    assert decoder.mask_source == "decoder" and attention.mask_source == "attention"
    for tracker in (decoder, attention):
        image, _ = square_scene(0)
        assert tracker.step(image, [Detection(box_xyxy=(30, 40, 70, 80))]).started == [1]
        for t in range(1, 4):
            result = tracker.step(square_scene(t)[0])
            assert result.label_map.shape == (120, 160) and 1 in result.live_track_ids
    # The untrained decoder paints differently from the attention: the two sources really differ.
    assert not np.array_equal(decoder.step(square_scene(4)[0]).label_map, attention.step(square_scene(4)[0]).label_map)
