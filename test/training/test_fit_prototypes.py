"""Fitting a prototype model by the tracking metric on training videos: values from the grid, never worse
than where it started on the videos it scored, passes until one changes nothing, a checkpoint that loads."""

import json

import yaml

from savi_core.model.checkpoint import load_checkpoint
import pytest
import torch

from training.fit_prototypes import GRID, MAX_PASSES, main

CONFIG = {
    "model": {
        "preset": "custom",
        "resolution": [64, 80],
        "num_slots": 5,
        "slot_dim": 183,
        "encoder": {
            "kind": "efficientnet_lite0",
            "output_stride": 4,
            "backbone_sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        },
        "initializer": {"kind": "bbox", "background_slot": True, "points": True},
        "corrector": {"kind": "prototype"},
        "predictor": {"kind": "kinematic"},
    },
    "data": {
        "kind": "synthetic",
        "resolution": [64, 80],
        "max_instances": 4,
        "window": 3,
        "target": "rgb",
        "num_videos": 4,
        "num_frames": 3,
        "min_objects": 1,
        "max_objects": 2,
        "options": {"physics_share": 0.5},
    },
    "train": {"batch_size": 2, "steps": 1, "attention_loss_weight": 1.0},
}


CAMERA = ["--frame-size", "96x72"]


def _close(a, b) -> bool:
    return bool(torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fit")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    # Scored at a camera size other than the model's (64 x 80), as the node and the benchmark score.
    assert main(["--config", str(config), "--videos", "1", "--out", str(tmp_path / "fit"), *CAMERA]) == 0
    return config, tmp_path / "fit"


def test_fit_chooses_grid_values_and_never_scores_below_the_untrained_matching(fitted):
    _, out = fitted
    result = json.loads((out / "fit.json").read_text())
    assert set(result["chosen"]) == set(GRID)
    for name, value in result["chosen"].items():
        assert any(_close(value, v) for v in GRID[name]), name
    assert result["miou"] >= result["log"][0]["start"]
    model, meta = load_checkpoint(out)
    assert abs(float(model.corrector.prior.detach()) - result["chosen"]["corrector.prior"]) < 1e-6
    assert _close(model.encoder.tap_weights, result["chosen"]["encoder.tap_weights"])
    assert float(model.corrector.prior_mass) == result["chosen"]["corrector.prior_mass"]
    assert meta["extra"]["fit"]["videos_per_world"] == 1
    assert result["frame_size"] == [72, 96]


def test_fit_passes_until_one_changes_nothing(fitted):
    _, out = fitted
    result = json.loads((out / "fit.json").read_text())
    passes = result["passes"]
    assert 1 <= passes <= MAX_PASSES
    trials = [entry for entry in result["log"][1:] if entry["pass"] == passes]
    if passes < MAX_PASSES:  # the last pass tried every other grid value and none scored better
        assert len(trials) == sum(len(values) - 1 for values in GRID.values())
        assert all(entry["miou"] <= result["miou"] for entry in trials)
    # Every pass but the last improved on the best score before it.
    best = result["log"][0]["start"]
    for sweep in range(1, passes):
        scores = [entry["miou"] for entry in result["log"][1:] if entry["pass"] == sweep]
        assert max(scores) > best
        best = max(best, *scores)


def test_fit_starts_from_an_earlier_fit_and_refuses_unknown_parameters(fitted, tmp_path):
    config, out = fitted
    earlier = json.loads((out / "fit.json").read_text())
    again = tmp_path / "again"
    assert (
        main(["--config", str(config), "--videos", "1", "--out", str(again), "--start", str(out / "fit.json"), *CAMERA])
        == 0
    )
    result = json.loads((again / "fit.json").read_text())
    assert abs(result["log"][0]["start"] - earlier["miou"]) < 1e-9  # the same videos score the same
    if earlier["passes"] < MAX_PASSES:  # started at a fixed point of the search: the first pass changes nothing
        assert result["passes"] == 1 and _close(result["miou"], earlier["miou"])
    # A fitted checkpoint directory names the same values as its fit.json.
    from_checkpoint = tmp_path / "from_checkpoint"
    assert (
        main(["--config", str(config), "--videos", "1", "--out", str(from_checkpoint), "--start", str(out), *CAMERA])
        == 0
    )
    assert json.loads((from_checkpoint / "fit.json").read_text())["log"][0]["start"] == result["log"][0]["start"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"chosen": {"corrector.nonsense": 1.0}}))
    assert main(["--config", str(config), "--videos", "1", "--out", str(tmp_path / "x"), "--start", str(bad)]) == 1
    assert main(["--config", str(config), "--out", str(tmp_path / "y"), "--frame-size", "320by240"]) == 1
