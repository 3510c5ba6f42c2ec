"""Prototype slots over the frozen backbone: the untrained matching on a known answer, the slot
layout, the checkpoint that names its backbone, and config validation."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from savi_core.model.backbone import WEIGHT_SHA256, BackboneFeatures
from savi_core.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from savi_core.model.config import ConfigError, ModelConfig, prototype_config
from savi_core.model.initializers import Conditioning
from savi_core.model.prototypes import split
from savi_core.model.savi import SAVi
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig


@pytest.fixture(scope="module")
def neutral() -> SAVi:
    model = SAVi(prototype_config((64, 80)))
    model.corrector.make_neutral()
    return model.eval()


def scene(t: int, height: int = 120, width: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A red square moving right and a striped green disc moving down on a grey checker floor."""
    ys, xs = np.mgrid[:height, :width]
    image = np.where(((ys // 10 + xs // 10) % 2)[..., None] == 0, 150, 110).astype(np.uint8).repeat(3, 2)
    labels = np.zeros((height, width), np.uint16)
    square = (abs(ys - 50) < 16) & (abs(xs - (40 + 4 * t)) < 16)
    image[square] = (220, 30, 30)
    labels[square] = 1
    disc = (ys - (30 + 3 * t)) ** 2 + (xs - 115) ** 2 < 18**2
    image[disc] = np.where(((xs[disc] // 4) % 2)[:, None] == 0, (30, 200, 40), (10, 120, 20))
    labels[disc] = 2
    return image, labels


def test_untrained_matching_tracks_a_known_scene():
    model = SAVi(prototype_config())
    model.corrector.make_neutral()
    tracker = Tracker(model)
    image, labels = scene(0)
    boxes = [(24, 34, 56, 66), (97, 12, 133, 48)]
    result = tracker.step(image, [Detection(box_xyxy=b, det_id=str(i + 1)) for i, b in enumerate(boxes)])
    assert result.started == [1, 2]
    for t in range(1, 8):
        image, labels = scene(t)
        result = tracker.step(image)
        for track in (1, 2):
            pred, true = result.label_map == track, labels == track
            # Stride-4 cells on an object's border mix it with the floor and go to the floor.
            assert (pred & true).sum() / (pred | true).sum() > 0.6, (t, track)
            assert (pred & true).sum() / pred.sum() > 0.95, (t, track)


def test_box_slot_pools_the_box_and_background_avoids_it(neutral):
    image, _ = scene(0)
    frame = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
    frame = F.interpolate(frame, size=(64, 80), mode="bilinear", antialias=True, align_corners=False)
    features = neutral.encode(frame)  # [1, 16, 20, C]
    boxes = torch.full((1, 16, 4), -1.0)
    boxes[0, 0] = torch.tensor([34 / 120, 24 / 160, 66 / 120, 56 / 160])
    conditioned = torch.zeros(1, 16)
    conditioned[0, 0] = 1
    slots = neutral.init_slots(Conditioning(boxes=boxes, conditioned=conditioned, features=features))
    proto, centre, size, velocity, obj = split(slots)
    assert obj[0].tolist() == [0.0, 1.0] + [0.0] * 15
    assert torch.allclose(centre[0, 1], torch.tensor([0.5 * (34 + 66) / 120, 0.5 * (24 + 56) / 160]))
    flat = features.reshape(-1, features.shape[-1])
    similarity = flat @ F.normalize(proto[0, :, 0], dim=-1).T  # [cells, slots]
    square_cell = 6 * 20 + 5  # the feature cell under the square's centre (y 50/120, x 40/160) on the 16 x 20 grid
    assert similarity[square_cell].argmax() == 1
    # Every background prototype is nearer to some cell outside the box than to the square's middle.
    assert (similarity[square_cell, [0] + list(range(2, 17))] < similarity[square_cell, 1]).all()


def test_state_dict_holds_only_trained_parameters_and_checkpoint_names_the_backbone(neutral, tmp_path):
    keys = set(neutral.state_dict())
    assert keys and not any("backbone" in k or "_blocks" in k for k in keys)
    assert sum(p.numel() for p in neutral.parameters()) < 20
    save_checkpoint(tmp_path / "ok", neutral)
    loaded, _ = load_checkpoint(tmp_path / "ok")
    for key, value in neutral.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    image, _ = scene(0)
    frame = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
    assert torch.equal(loaded.encode(frame), neutral.encode(frame))


def test_projection_starts_as_the_untrained_matching_and_travels_in_the_checkpoint(neutral, tmp_path):
    cfg = prototype_config((64, 80))
    cfg.encoder.projection = True
    model = SAVi(cfg).eval()
    model.load_state_dict(neutral.state_dict(), strict=False)
    image, _ = scene(0)
    frame = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
    assert torch.allclose(model.encode(frame), neutral.encode(frame), atol=1e-6)
    with torch.no_grad():
        model.encoder.projection.copy_(torch.diag(torch.linspace(0.5, 2.0, 176)))
    save_checkpoint(tmp_path / "metric", model)
    loaded, _ = load_checkpoint(tmp_path / "metric")
    assert torch.equal(loaded.encoder.projection, model.encoder.projection)
    projected = loaded.encode(frame)
    assert torch.allclose(projected.norm(dim=-1), torch.ones(()), atol=1e-5)
    assert not torch.allclose(projected, neutral.encode(frame), atol=1e-3)


def test_checkpoint_with_another_backbone_hash_is_refused_naming_both(neutral, tmp_path):
    save_checkpoint(tmp_path / "bad", neutral)
    meta = json.loads((tmp_path / "bad" / "config.json").read_text())
    other = "0" * 64
    meta["model"]["encoder"]["backbone_sha256"] = other
    (tmp_path / "bad" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "bad")
    assert other in str(err.value) and WEIGHT_SHA256 in str(err.value)


def test_training_mode_keeps_the_backbone_frozen(neutral):
    model = SAVi(prototype_config((64, 80)))
    model.train()
    assert not model.encoder.backbone.training
    assert all(not p.requires_grad for p in model.encoder.backbone.parameters())
    assert not any(p is q for p in model.parameters() for q in model.encoder.backbone.parameters())


@pytest.mark.parametrize(
    "change, field",
    [
        ({"encoder": {"kind": "cnn"}}, "encoder.kind"),
        ({"slot_dim": 64}, "slot_dim"),
        ({"predictor": {"kind": "transformer"}}, "predictor.kind"),
        ({"encoder": {"backbone_sha256": "abc"}}, "encoder.backbone_sha256"),
        ({"encoder": {"output_stride": 2}}, "encoder.output_stride"),
        ({"encoder": {"projection": "yes"}}, "encoder.projection"),
        ({"encoder": {"kind": "cnn", "projection": True}}, "encoder.projection"),
    ],
)
def test_bad_prototype_configs_name_the_field(change, field):
    data = prototype_config().to_dict()
    for key, value in change.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ModelConfig.from_dict(data)


def test_clip_forward_from_cached_taps_equals_forward_from_frames(neutral):
    video = torch.rand(1, 3, 3, 64, 80)
    boxes = torch.full((1, 16, 4), -1.0)
    boxes[0, 0] = torch.tensor([0.2, 0.2, 0.6, 0.5])
    conditioned = torch.zeros(1, 16)
    conditioned[0, 0] = 1
    cond = Conditioning(boxes=boxes, conditioned=conditioned)
    with torch.no_grad():
        from_frames = neutral(video, cond, decode="attention")
        taps = neutral.encoder.frozen(video.flatten(0, 1))
        cached = BackboneFeatures(*(t.unflatten(0, (1, 3)) for t in taps.as_tuple()))
        from_taps = neutral(cached, cond, decode="attention")
    # Batched and single-frame convolutions round differently; temperature 100 magnifies that a little.
    assert (from_frames.attention - from_taps.attention).abs().max() < 1e-3
    with pytest.raises(ValueError, match="no decoder"):
        neutral(video, cond, decode="decoder")


def test_decoder_mask_source_on_a_model_without_decoder_gives_its_attention(neutral):
    image, labels = scene(0)
    boxes = [Detection(box_xyxy=(24, 34, 56, 66), det_id="1")]
    results = []
    for source in ("attention", "decoder"):
        tracker = Tracker(neutral, TrackerConfig(mask_source=source))
        assert tracker.mask_source == "attention"
        results.append(tracker.step(image, boxes).label_map)
    assert (results[0] == 1).sum() > 0 and np.array_equal(results[0], results[1])


def test_remove_track_between_steps_restarts_the_slot_of_a_model_that_starts_from_features(neutral):
    """`remove_track` is called between steps (the node's service, outside any inference mode); the slot it
    frees restarts from the last frame's features, which were computed in inference mode: it must not build
    an autograd graph over them (that raises), and the remaining track goes on."""
    tracker = Tracker(neutral)
    image, _ = scene(0)
    boxes = [(24, 34, 56, 66), (97, 12, 133, 48)]
    tracker.step(image, [Detection(box_xyxy=b, det_id=str(i + 1)) for i, b in enumerate(boxes)])
    assert tracker.remove_track(1)
    result = tracker.step(scene(1)[0])
    assert result.live_track_ids == [2] and (result.label_map == 2).sum() > 0 and not (result.label_map == 1).any()


def _reference_weights(cells, centre, half, sigma):
    """The box's Gaussian weights computed per cell from its (y, x) centre."""
    offset = cells.view(1, 1, -1, 2) - centre.unsqueeze(2)
    inside = (offset.abs() <= half.unsqueeze(2)).all(-1)
    return torch.exp(-0.5 * (offset / sigma.unsqueeze(2)).square().sum(-1)) * inside


def _reference_background(features, cells, boxes, on, protos, kept, k):
    """Background prototypes as the farthest-point seeds and k-means are defined: per cell, per seed, a
    one-hot membership per round."""
    b, n, _ = features.shape
    inside = (
        (cells.view(1, 1, n, 2) >= boxes[..., :2].unsqueeze(2))
        & (cells.view(1, 1, n, 2) <= boxes[..., 2:].unsqueeze(2))
    ).all(-1) & on.unsqueeze(-1)
    candidate = ~inside.any(1)
    candidate = torch.where(candidate.any(1, keepdim=True), candidate, torch.ones_like(candidate))
    known = protos * on.unsqueeze(-1)
    if kept is not None:
        known = torch.cat([known, kept], dim=1)
    near = 1 - torch.einsum("bnc,bec->bne", features, known)
    near = torch.where((known.abs().sum(-1) > 0).unsqueeze(1), near, torch.full_like(near, 2.0))
    dist = torch.where(candidate, near.amin(-1), torch.full((b, n), -1.0))
    seeds = []
    for _ in range(k):
        seed = features[torch.arange(b), dist.argmax(1)]
        seeds.append(seed)
        far = torch.where(candidate, 1 - torch.einsum("bnc,bc->bn", features, seed), torch.full_like(dist, -1.0))
        dist = torch.minimum(dist, far)
    centres = torch.stack(seeds, 1)
    for round_ in range(3):
        member = F.one_hot(torch.einsum("bnc,bkc->bnk", features, centres).argmax(-1), k).float()
        member = member * candidate.unsqueeze(-1)
        if round_ < 2:
            sums = torch.einsum("bnk,bnc->bkc", member, features)
            centres = torch.where(member.sum(1).unsqueeze(-1) > 0, F.normalize(sums, dim=-1), centres)
    means = F.normalize(torch.einsum("bnk,bnc->bkc", member, features), dim=-1)
    return torch.where(member.sum(1).unsqueeze(-1) > 0, means, centres)


@pytest.mark.parametrize("seed", range(4))
def test_initializer_on_the_separable_grid_gives_the_bits_of_the_per_cell_definitions(seed):
    """The initializer tests boxes per grid row and column and seeds without per-step masking: the same bits
    as the per-cell weights and the masked farthest-point / one-hot k-means it replaces."""
    from savi_core.model.prototypes import PrototypeInitializer, _box_weights, cell_axes, cell_centres

    g = torch.Generator().manual_seed(seed)
    b, h, w, c, m, k = 2, 7 + seed, 9, 16, 5, 8
    features = F.normalize(torch.randn(b, h * w, c, generator=g), dim=-1)
    corners = torch.rand(b, m, 2, 2, generator=g)
    boxes = torch.cat([corners.amin(2), corners.amax(2)], dim=-1)  # [B, M, 4] y0, x0, y1, x1
    boxes[:, 0, 2:] = boxes[:, 0, :2]  # a point
    boxes[:, 1] = torch.tensor([0.5 / h, 0.5 / w, 1.5 / h, 2.5 / w])  # edges on cell centres
    on = torch.rand(b, m, generator=g) > 0.3
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = torch.rand(b, m, 2, generator=g) / 2
    sigma = torch.rand(b, m, 2, generator=g) / 4 + 0.01
    axes, cells = cell_axes(h, w, torch.device("cpu")), cell_centres(h, w, torch.device("cpu"))
    assert torch.equal(_box_weights(axes, centre, half, sigma), _reference_weights(cells, centre, half, sigma))
    init = PrototypeInitializer(k, c)
    protos = F.normalize(torch.randn(b, m, c, generator=g), dim=-1)
    for kept in (None, F.normalize(torch.randn(b, 3, c, generator=g), dim=-1)):
        got = init._background(features, axes, boxes, on, protos, kept)
        assert torch.equal(got, _reference_background(features, cells, boxes, on, protos, kept, k))


def test_corrector_attention_gives_the_bits_of_the_per_cell_spatial_prior():
    """The corrector sums its spatial prior's squared distances per grid row and column: the attention must
    be the same bits as with the prior computed per cell."""
    from savi_core.model.prototypes import GEOMETRY, PrototypeCorrector, cell_centres

    g = torch.Generator().manual_seed(2)
    b, k, c, h, w = 2, 6, 16, 7, 9
    corrector = PrototypeCorrector()
    with torch.no_grad():
        corrector.prior.fill_(0.7)
    features = F.normalize(torch.randn(b, h * w, c, generator=g), dim=-1)
    slots = torch.rand(b, k, c + GEOMETRY, generator=g)
    slots[..., -1] = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    slots[:, 4, c + 2 : c + 4] = 0.0  # a point: the extent's floor of two cells
    bias = torch.randn(b, k, h * w, generator=g)
    with torch.no_grad():
        _, attn = corrector(slots, features, (h, w), bias)
        proto, centre, size, obj = slots[..., :c], slots[..., c : c + 2], slots[..., c + 2 : c + 4], slots[..., -1]
        logits = torch.einsum("bksc,bnc->bksn", F.normalize(proto.unsqueeze(2), dim=-1), features)[:, :, 0]
        logits = logits * corrector.log_temperature.exp()
        extent = torch.maximum(size, 2 * features.new_tensor([1.0 / h, 1.0 / w]))
        d = (cell_centres(h, w, features.device).view(1, 1, -1, 2) - centre.unsqueeze(2)) / extent.unsqueeze(2)
        logits = logits - (obj * corrector.prior).unsqueeze(-1) * d.square().sum(-1) + bias
    assert torch.equal(attn, logits.softmax(dim=1))


@pytest.mark.parametrize("prototypes", [1, 2])
def test_restarting_only_conditioned_object_slots_skips_the_background_search_and_keeps_the_bits(prototypes):
    """A re-anchor restarts conditioned object slots alone: with one look per slot no background prototype is
    searched for (most of a restart's time), with several the looks still get it; either way the restarted
    slots are what the full restart (`init_slots` with the kept prototypes) gives them."""
    from savi_core.model import prototypes as prototypes_module

    model = SAVi(prototype_config((64, 80), prototypes=prototypes)).eval()
    image, _ = scene(0)
    frame = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 255
    frame = F.interpolate(frame, size=(64, 80), mode="bilinear", antialias=True, align_corners=False)
    features = model.encode(frame)
    boxes = torch.full((1, 16, 4), -1.0)
    boxes[0, 0] = torch.tensor([34 / 120, 24 / 160, 66 / 120, 56 / 160])
    boxes[0, 1] = torch.tensor([12 / 120, 97 / 160, 48 / 120, 133 / 160])
    conditioned = torch.zeros(1, 16)
    conditioned[0, :2] = 1
    slots = model.init_slots(Conditioning(boxes=boxes, conditioned=conditioned, features=features))
    slots = model.step(frame, slots, decode="none").predicted  # the slots have moved on
    moved = boxes.clone()
    moved[0, 1] += 0.05  # the disc's track is re-anchored from a new box
    cond = Conditioning(boxes=moved, conditioned=torch.eye(16)[1:2], features=features)
    which = torch.zeros(1, 17, dtype=torch.bool)
    which[0, 2] = True
    searched = []
    search = prototypes_module.PrototypeInitializer._background

    def counted(self, *args, **kwargs):
        searched.append(1)
        return search(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prototypes_module.PrototypeInitializer, "_background", counted)
        out = model.init_slots_for(slots, cond, which)
    assert len(searched) == (0 if prototypes == 1 else 1)
    proto, *_, obj = split(slots, prototypes)
    kept = (proto * ((obj > 0.5) & ~which).view(1, 17, 1, 1)).flatten(1, 2)
    full = model.init_slots(cond, kept)
    assert torch.equal(out[0, 2], full[0, 2])
    assert torch.equal(out[0, [0, 1, *range(3, 17)]], slots[0, [0, 1, *range(3, 17)]])
    which[0, 0] = True  # with the background slot, the search runs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prototypes_module.PrototypeInitializer, "_background", counted)
        model.init_slots_for(slots, cond, which)
    assert len(searched) == (1 if prototypes == 1 else 2)
