"""Feature targets (DINOSAUR) and the temporal feature-similarity loss (VideoSAUR): losses on known
answers, validation at config load, and a short training run (backbone on the fly) that trains the decoder."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from savi_core.model.backbone import BackboneFeatures
from savi_core.model.checkpoint import load_checkpoint
from savi_core.model.config import ConfigError
from savi_core.model.savi import SAVi, SAViOutput
from training.config import TrainConfig, load_config
from training.losses import feature_targets, savi_loss, similarity_loss
from training.train import train

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ROOT / "experiments" / "configs" / "pretrained_features_cpu.yaml"
SIMILARITY = ROOT / "experiments" / "configs" / "pretrained_similarity_cpu.yaml"


def one_hot_features(t: int, h: int, w: int, shift: int = 0) -> torch.Tensor:
    """``[1, T, N, h, w]``: position ``i`` at frame ``t`` holds feature ``(i + shift * t) mod N`` (orthogonal
    unit vectors: a pattern that moves ``shift`` positions per frame)."""
    n = h * w
    ids = (torch.arange(n).view(1, n) + shift * torch.arange(t).view(t, 1)) % n  # [T, N]
    return F.one_hot(ids, n).float().permute(0, 2, 1).reshape(1, t, n, h, w)


def test_similarity_target_follows_the_motion_and_the_right_answer_costs_nothing():
    h, w, tau = 2, 3, 0.1
    features = one_hot_features(3, h, w, shift=1)
    mask = torch.ones(1, 3, dtype=torch.bool)
    # Position i at t meets its own feature at position i - 1 at t + 1 (the pattern moved by one).
    n = h * w
    peak = math.exp(1 / tau) / (math.exp(1 / tau) + n - 1)
    rest = 1 / (math.exp(1 / tau) + n - 1)
    answer = torch.full((1, 3, n, n), rest)  # [B, T, channel j, position i]
    for i in range(n):
        answer[0, :2, (i - 1) % n, i] = peak
    answer = answer.view(1, 3, n, h, w)
    assert similarity_loss(answer, features, mask, 1, tau).item() == pytest.approx(0.0, abs=1e-10)
    # Predicting "nothing moved" (the peak at j = i) is wrong by 2 * (peak - rest)^2 per position and pair.
    still = torch.full((1, 3, n, n), rest)
    still[0, :, torch.arange(n), torch.arange(n)] = peak
    expected = 2 * n * 2 * (peak - rest) ** 2
    assert similarity_loss(still.view(1, 3, n, h, w), features, mask, 1, tau).item() == pytest.approx(expected)
    # A pair with a padded frame counts nothing; no pair at all is a zero loss.
    mask[0, 2] = False
    assert similarity_loss(still.view(1, 3, n, h, w), features, mask, 1, tau).item() == pytest.approx(expected / 2)
    assert similarity_loss(still.view(1, 3, n, h, w), features, mask, 3, tau).item() == 0.0


def test_feature_targets_are_the_fused_unit_features_and_their_reconstruction_costs_nothing():
    torch.manual_seed(0)
    taps = BackboneFeatures(torch.randn(2, 3, 24, 16, 20), torch.randn(2, 3, 40, 8, 10), torch.randn(2, 3, 112, 4, 5))
    target = feature_targets(taps, 16)
    assert target.shape == (2, 3, 176, 4, 5)
    assert torch.allclose(target.norm(dim=2), torch.ones(1), atol=1e-5)
    # Each tap weighs the same: its share of the squared length is a third.
    assert torch.allclose(target[:, :, 40 + 24 :].square().sum(2), torch.full((1,), 1 / 3), atol=1e-5)
    mask = torch.ones(2, 3, dtype=torch.bool)
    batch = {"features": target, "frame_mask": mask, "conditioned": torch.ones(2, 1)}
    sim = torch.zeros(2, 3, 20, 4, 5)  # the last frame has no later one: its channels are not scored
    cells = target.flatten(3)
    sim[:, :2] = (
        torch.einsum("btci,btcj->btij", cells[:, :2], cells[:, 1:]).div(0.1).softmax(-1).transpose(-1, -2)
    ).reshape(2, 2, 20, 4, 5)
    right = SAViOutput(
        slots=None, predicted=None, attention=torch.zeros(2, 3, 2, 4, 5), reconstruction=torch.cat([target, sim], 2)
    )
    tc = TrainConfig(similarity_loss_weight=2.0, similarity_offset=1, similarity_temperature=0.1)
    loss, mse = savi_loss(right, batch, tc, background_slot=True, prototypes=True)
    assert loss.item() == pytest.approx(0.0, abs=1e-8) and mse.item() == pytest.approx(0.0, abs=1e-10)
    wrong = SAViOutput(
        slots=None, predicted=None, attention=right.attention, reconstruction=torch.cat([target * 0, sim], 2)
    )
    loss, mse = savi_loss(wrong, batch, tc, background_slot=True, prototypes=True)
    assert loss.item() == pytest.approx(3 * 4 * 5, rel=1e-4)  # unit vectors off by their length, 60 cells
    assert mse.item() == pytest.approx(1 / 176, rel=1e-4)


@pytest.mark.parametrize(
    "path, overrides, field",
    [
        (FEATURES, {"data.target": "rgb"}, "data.target"),
        (FEATURES, {"model.decoder.kind": "broadcast"}, "data.target"),
        (FEATURES, {"train.similarity_loss_weight": 1.0}, "train.similarity_loss_weight"),
        (SIMILARITY, {"train.similarity_loss_weight": 0.0}, "model.decoder.similarity"),
        (SIMILARITY, {"train.similarity_offset": 6}, "train.similarity_offset"),
        (SIMILARITY, {"train.similarity_offset": 0}, "train.similarity_offset"),
        (SIMILARITY, {"train.similarity_temperature": 0.0}, "train.similarity_temperature"),
        (SIMILARITY, {"model.decoder.target_channels": 3}, "model.decoder.target_channels"),
    ],
)
def test_config_refuses_targets_that_do_not_fit_naming_the_field(path, overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(path, overrides)


def test_ablation_configs_load():
    features, similarity = load_config(FEATURES), load_config(SIMILARITY)
    assert features.data.target == similarity.data.target == "features"
    assert features.model.decoder.kind == "mlp" and not features.model.decoder.similarity
    assert similarity.model.decoder.similarity and similarity.train.similarity_loss_weight > 0
    assert features.train.steps == similarity.train.steps
    pixels = load_config(ROOT / "training" / "configs" / "pretrained_cpu.yaml")
    assert not pixels.model.has_decoder and pixels.data.target == "rgb"


def test_short_run_without_a_cache_trains_the_decoder_and_the_tap_fusion(tmp_path):
    cfg = load_config(
        SIMILARITY,
        {
            "model.resolution": [64, 80],
            "data.resolution": [64, 80],
            "data.num_videos": 4,
            "data.num_frames": 8,
            "data.burn_in": 2,
            "data.window": 3,
            "data.feature_cache": "",
            "data.options": {"camera_pan": True},
            "train.batch_size": 2,
            "train.steps": 3,
            "train.warmup_steps": 1,
            "train.log_every": 1,
            "train.image_every": 3,
            "train.num_workers": 0,
            "train.out_dir": str(tmp_path / "run"),
        },
    )
    torch.manual_seed(cfg.train.seed)
    out = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(math.isfinite(r["loss"]) and r["mse"] > 0 for r in records)
    model, meta = load_checkpoint(out / "checkpoints" / "step_0000003")
    assert meta["extra"]["run_config"]["data"]["target"] == "features" and model.config.has_decoder
    torch.manual_seed(cfg.train.seed)
    start = SAVi(cfg.model)  # the run's initial weights (same seed)
    changed = [n for n, p in model.state_dict().items() if not torch.equal(p, start.state_dict()[n])]
    assert any(n.startswith("decoder.") for n in changed) and "encoder.tap_weights" in changed
