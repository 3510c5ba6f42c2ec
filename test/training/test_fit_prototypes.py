"""Fitting a prototype model by the tracking metric on training videos: values from the grid, never worse
than the untrained matching on the videos it scored, a checkpoint that loads."""

import json

import yaml

from savi_core.model.checkpoint import load_checkpoint
from training.fit_prototypes import GRID, main

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
        "num_frames": 4,
        "min_objects": 1,
        "max_objects": 2,
        "options": {"physics_share": 0.5},
    },
    "train": {"batch_size": 2, "steps": 1, "attention_loss_weight": 1.0},
}


def test_fit_chooses_grid_values_and_never_scores_below_the_untrained_matching(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["--config", str(config), "--videos", "1", "--out", str(tmp_path / "fit")]) == 0
    fitted = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert set(fitted["chosen"]) == set(GRID)
    for name, value in fitted["chosen"].items():
        assert any(abs(value - v) < 1e-5 for v in GRID[name]), name
    assert fitted["miou"] >= fitted["log"][0]["start"]
    model, meta = load_checkpoint(tmp_path / "fit")
    assert abs(float(model.corrector.prior) - fitted["chosen"]["corrector.prior"]) < 1e-6
    assert meta["extra"]["fit"]["videos_per_world"] == 1
