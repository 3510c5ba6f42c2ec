"""Trainer pieces (schedule, loss, sampler, optimiser state, checkpoints) and a tiny end-to-end run."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from savi_core.model.checkpoint import load_checkpoint
from savi_core.model.initializers import Conditioning
from training.config import TrainConfig, load_config
from training.data import EpochBatchSampler, build_dataset, next_position
from training.state import ResumeError, optimizer_state_dict, optimizer_tensors
from training.losses import mask_loss, reconstruction_loss
from training.step import burn_in_frames, learning_rate
from training.train import EXIT_NONFINITE, main, train

TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"


def test_schedule_warms_up_linearly_then_cosine_to_zero():
    cfg = TrainConfig(lr=2e-4, warmup_steps=100, steps=1100)
    assert learning_rate(0, cfg) == 0.0
    assert learning_rate(50, cfg) == pytest.approx(1e-4)
    assert learning_rate(100, cfg) == pytest.approx(2e-4)
    assert learning_rate(600, cfg) == pytest.approx(1e-4)  # half-way through the cosine
    assert learning_rate(1100, cfg) == pytest.approx(0.0, abs=1e-12)
    decay = [learning_rate(s, cfg) for s in range(100, 1101, 50)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert learning_rate(3, TrainConfig(lr=1.0, warmup_steps=0, steps=10)) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.3))
    )


def test_loss_sums_time_pixels_channels_and_averages_batch():
    recon = torch.zeros(2, 3, 3, 4, 5)
    target = torch.ones(2, 3, 3, 4, 5)
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, mse = reconstruction_loss(recon, target, mask)
    assert loss.item() == pytest.approx(3 * 3 * 4 * 5)  # per clip: every value is off by 1
    assert mse.item() == pytest.approx(1.0)
    mask[1, 1:] = False  # padded frames of clip 1 do not count
    loss, mse = reconstruction_loss(recon, target, mask)
    assert loss.item() == pytest.approx((3 + 1) * 60 / 2)
    assert mse.item() == pytest.approx(1.0)
    # A decoder at half resolution is compared with the area-downsampled target.
    loss, _ = reconstruction_loss(
        torch.zeros(1, 1, 3, 2, 2), torch.full((1, 1, 3, 4, 4), 0.5), torch.ones(1, 1, dtype=torch.bool)
    )
    assert loss.item() == pytest.approx(12 * 0.25)


def test_sampler_shards_one_permutation_and_resumes_mid_epoch():
    single = [i for batch in EpochBatchSampler(10, 4, seed=3, epoch=1) for i in batch]
    assert len(single) == 8 and len(set(single)) == 8  # 10 // 4 batches, no repeats
    ranks = [list(EpochBatchSampler(10, 2, seed=3, epoch=1, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    # Rank r's batch b holds the same videos as the single-process batch b of the global batch size.
    for b in range(2):
        assert sorted(ranks[0][b] + ranks[1][b]) == sorted(single[4 * b : 4 * b + 4])
    assert list(EpochBatchSampler(10, 4, seed=3, epoch=1, start=1)) == [single[4:8]]
    assert list(EpochBatchSampler(10, 4, seed=3, epoch=2)) != [single[:4], single[4:]]
    assert next_position(0, 1, 2) == (1, 0) and next_position(0, 0, 2) == (0, 1)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochBatchSampler(3, 2, seed=0, epoch=0, world_size=2)


def test_optimizer_state_round_trips_through_tensors_and_json():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    tensors, meta = optimizer_tensors(opt)
    meta = json.loads(json.dumps(meta))  # exactly what is written to disk
    other = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=5.0)
    other.load_state_dict(optimizer_state_dict(tensors, meta))
    a, b = opt.state_dict(), other.state_dict()
    assert b["param_groups"][0]["lr"] == 1e-2
    for pid in a["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a["state"][pid][key], b["state"][pid][key])


def test_mask_loss_targets_slot_per_object_and_ignores_unconditioned_objects():
    # 1 clip, 1 frame, 3 slots (background + 2 objects), 2x2 pixels: bg, object 1, object 2, object 2.
    seg = torch.tensor([[[[0, 1], [2, 2]]]])
    frame_mask = torch.ones(1, 1, dtype=torch.bool)
    perfect = torch.nn.functional.one_hot(torch.tensor([[[[0, 1], [2, 2]]]]), 3).permute(0, 1, 4, 2, 3).float()
    both = torch.ones(1, 2)
    assert mask_loss(perfect, seg, both, frame_mask, background_slot=True).item() == pytest.approx(0.0, abs=1e-4)
    uniform = torch.full((1, 1, 3, 2, 2), 1 / 3)
    assert mask_loss(uniform, seg, both, frame_mask, True).item() == pytest.approx(4 * math.log(3), rel=1e-5)
    # Object 2 was not conditioned: its two pixels have no slot and do not count.
    only_first = torch.tensor([[1.0, 0.0]])
    assert mask_loss(uniform, seg, only_first, frame_mask, True).item() == pytest.approx(2 * math.log(3), rel=1e-5)
    # Without a background slot object i is slot i - 1 and background pixels are ignored.
    two = torch.full((1, 1, 2, 2, 2), 0.5)
    assert mask_loss(two, seg, both, frame_mask, False).item() == pytest.approx(3 * math.log(2), rel=1e-5)
    # Padded frames do not count; masks at half resolution compare with nearest-downsampled ids.
    assert mask_loss(uniform, seg, both, torch.zeros(1, 1, dtype=torch.bool), True).item() == 0.0
    small = torch.full((1, 1, 3, 1, 1), 1 / 3)
    assert mask_loss(small, seg, both, frame_mask, True).item() == pytest.approx(math.log(3), rel=1e-5)


def _tiny(tmp_path: Path, **train) -> object:
    overrides = {f"train.{k}": v for k, v in train.items()}
    overrides["train.out_dir"] = str(tmp_path / "run")
    return load_config(TINY, overrides)


def test_tiny_run_writes_logs_checkpoints_and_tensorboard(tmp_path):
    cfg = _tiny(tmp_path)
    out = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, cfg.train.steps + 1))
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in records)
    assert records[0]["lr"] == 0.0 and records[2]["lr"] == pytest.approx(cfg.train.lr)
    ckpts = out / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_0000006"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_0000004", "step_0000006"]  # keep 2
    assert list(ckpts.glob(".tmp_*")) == []
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/mse", "train/lr", "train/grad_norm"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Images("train/clip")] == [3, 6]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    # The model part is a plain savi_core checkpoint that reproduces the trained weights' outputs.
    model, meta = load_checkpoint(ckpts / "step_0000006")
    assert meta["extra"]["step"] == 6 and meta["extra"]["run_config"]["train"]["steps"] == 6
    final = json.loads((out / "final.json").read_text())
    assert final["world_size"] == 1 and final["step"] == 6
    video = torch.rand(1, 2, 3, 16, 16)
    cond = Conditioning(boxes=torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]]))
    assert torch.isfinite(model(video, cond).reconstruction).all()
    # Starting over in a directory with checkpoints is refused (no silent mixing of runs).
    with pytest.raises(ResumeError, match="--resume"):
        train(cfg)


def test_nonfinite_loss_stops_with_exit_code_2_and_keeps_a_good_checkpoint(tmp_path, capsys):
    data = yaml.safe_load(TINY.read_text())
    data["train"].update(lr=1e30, warmup_steps=0, checkpoint_every=1, steps=8)
    config = tmp_path / "explode.yaml"
    config.write_text(yaml.safe_dump(data))
    rc = main(["--config", str(config), "--out", str(tmp_path / "run")])
    assert rc == EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "step 2" in err and "last good checkpoint" in err
    latest = tmp_path / "run" / "checkpoints" / (tmp_path / "run" / "checkpoints" / "latest").read_text().strip()
    model, _ = load_checkpoint(latest)  # refuses non-finite weights
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cli_reports_bad_config_with_exit_code_1(tmp_path, capsys):
    assert main(["--config", str(TINY), "--out", str(tmp_path / "r"), "--resume"]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_mask_and_attention_loss_weights_add_their_auxiliary_terms(tmp_path):
    def first_loss(masks: float, attention: float) -> float:
        name = f"m{masks}_a{attention}"
        cfg = load_config(
            TINY,
            {
                "train.mask_loss_weight": masks,
                "train.attention_loss_weight": attention,
                "train.steps": 1,
                "train.out_dir": str(tmp_path / name),
            },
        )
        out = train(cfg)
        return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    paper, on_masks, on_attention = first_loss(0.0, 0.0), first_loss(1.0, 0.0), first_loss(0.0, 1.0)
    # Same seed and batch: each difference is one cross-entropy term, and the two terms add up.
    assert on_masks > paper + 1.0 and on_attention > paper + 1.0
    assert first_loss(1.0, 1.0) == pytest.approx(on_masks + on_attention - paper, rel=1e-4)


def test_burn_in_draws_half_fresh_windows_and_never_eats_the_window():
    g = torch.Generator().manual_seed(0)
    draws = [burn_in_frames(12, 18, 6, g) for _ in range(2000)]
    assert 0.4 < draws.count(0) / len(draws) < 0.6  # half of the steps start from the boxes
    assert set(draws) == set(range(13))
    assert {burn_in_frames(12, 9, 6, g) for _ in range(200)} == {0, 1, 2, 3}  # a short clip: 3 spare frames
    assert {burn_in_frames(0, 18, 6, g) for _ in range(50)} == {0}
    assert {burn_in_frames(5, 6, 6, g) for _ in range(50)} == {0}


def test_burn_in_run_trains_on_window_frames_after_a_gradient_free_start(tmp_path):
    cfg = load_config(TINY, {"data.burn_in": 2, "data.num_frames": 6, "train.out_dir": str(tmp_path / "run")})
    items = build_dataset(cfg.data, "train")
    assert items[0]["video"].shape[0] == cfg.data.window + 2  # clips carry the burn-in frames
    out = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == cfg.train.steps and all(math.isfinite(r["loss"]) for r in records)
    # Same seed, no burn-in: the steps that started later in the clip see other frames, other losses.
    plain = train(load_config(TINY, {"data.num_frames": 6, "train.out_dir": str(tmp_path / "plain")}))
    plain_losses = [json.loads(line)["loss"] for line in (plain / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in records] != plain_losses


def test_camera_resample_changes_what_the_model_sees_and_stays_finite(tmp_path):
    def losses(probability: float, name: str) -> list[float]:
        cfg = load_config(
            TINY, {"train.camera_resample": probability, "train.steps": 2, "train.out_dir": str(tmp_path / name)}
        )
        out = train(cfg)
        return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]

    plain, resampled = losses(0.0, "plain"), losses(1.0, "resampled")
    assert all(math.isfinite(v) for v in resampled)
    assert resampled != plain  # same seed and data: only the resampled inputs differ
    assert losses(1.0, "again") == resampled  # drawn from the per-step seeds: reproducible


def test_init_checkpoint_starts_from_its_weights_and_refuses_another_model(tmp_path):
    from savi_core.model.config import ConfigError
    from training.state import latest_checkpoint

    first = train(load_config(TINY, {"train.out_dir": str(tmp_path / "first"), "train.steps": 2}))
    start, _ = load_checkpoint(latest_checkpoint(first))
    cfg = load_config(
        TINY,
        {
            "train.out_dir": str(tmp_path / "second"),
            "train.steps": 1,
            "train.lr": 1e-12,
            "train.init_checkpoint": str(first),
        },
    )
    second, _ = load_checkpoint(latest_checkpoint(train(cfg)))
    # One step at a vanishing learning rate: the weights are still the first run's, not a fresh init.
    for name, tensor in start.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], tensor, atol=1e-6, rtol=0, msg=name)
    other = load_config(
        TINY, {"train.out_dir": str(tmp_path / "third"), "train.init_checkpoint": str(first), "model.slot_dim": 8}
    )
    with pytest.raises(
        ConfigError, match=r"train\.init_checkpoint: .* another model config \(differs in \['slot_dim'\]\)"
    ):
        train(other)


def test_point_share_gives_points_as_zero_size_boxes_and_a_box_model_may_learn_them(tmp_path):
    from savi_core.model.config import ConfigError
    from training.conditioning import as_points
    from training.state import latest_checkpoint

    boxes = torch.tensor([[[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8], [-1.0, -1.0, -1.0, -1.0]]])
    centers = torch.tensor([[[0.3, 0.4], [0.6, 0.5], [-1.0, -1.0]]])
    conditioned = torch.tensor([[1.0, 1.0, 0.0]])
    every = as_points(boxes, centers, conditioned, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(every[0, :2], torch.tensor([[0.3, 0.4, 0.3, 0.4], [0.6, 0.5, 0.6, 0.5]]))
    assert torch.equal(every[0, 2], boxes[0, 2])  # unconditioned slots keep their padding
    assert torch.equal(as_points(boxes, centers, conditioned, 0.0, torch.Generator()), boxes)
    half = torch.stack(
        [as_points(boxes, centers, conditioned, 0.5, torch.Generator().manual_seed(s))[0, 0] for s in range(200)]
    )
    assert 60 < (half[:, 0] == half[:, 2]).sum() < 140

    with pytest.raises(ConfigError, match=r"train\.point_share: needs model\.initializer\.points: true"):
        load_config(TINY, {"train.point_share": 0.5})
    with pytest.raises(ConfigError, match=r"train\.point_share: must be a share in \[0, 1\]"):
        load_config(TINY, {"train.point_share": 1.5, "model.initializer.points": True})
    with pytest.raises(ConfigError, match=r"model\.initializer\.points: only box models"):
        load_config(TINY, {"model.initializer.kind": "com", "model.initializer.points": True})
    # A box model's weights start a model that also takes points: only what it is taught differs.
    first = train(load_config(TINY, {"train.out_dir": str(tmp_path / "boxes"), "train.steps": 1}))
    cfg = load_config(
        TINY,
        {
            "train.out_dir": str(tmp_path / "points"),
            "train.steps": 2,
            "train.point_share": 0.5,
            "model.initializer.points": True,
            "train.init_checkpoint": str(first),
        },
    )
    model, _ = load_checkpoint(latest_checkpoint(train(cfg)))
    assert model.config.initializer.points
