"""`run_demo`: scoring of recorded messages, checkpoint inspection, and (slow) the whole demo end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from savi_core.model.checkpoint import save_checkpoint
from savi_core.model.config import ModelConfig
from savi_core.model.savi import SAVi
from savi_ros.demo.camera_node import CameraConfig, FrameTag
from savi_ros.demo.options import DemoOptions, inspect_checkpoint, parse_args
from savi_ros.demo.recorder import Recording
from savi_ros.demo.scoring import evaluate

ROOT = Path(__file__).resolve().parents[3]


def _tiny_checkpoint(directory: Path, trained: bool | None = False) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(
        {
            "preset": "custom",
            "resolution": [32, 32],
            "num_slots": 4,
            "slot_dim": 32,
            "encoder": {"channels": [16, 16], "strides": [1, 1], "mlp_dims": [32, 32]},
            "initializer": {"hidden_dim": 32},
            "corrector": {"qkv_dim": 32, "mlp_hidden": 32},
            "predictor": {"qkv_dim": 32, "mlp_hidden": 32},
            "decoder": {"broadcast_size": [8, 8], "channels": [16, 16], "strides": [2, 2]},
        }
    )
    return save_checkpoint(directory, SAVi(cfg), extra={} if trained is None else {"trained": trained})


def test_demo_options_give_the_camera_its_own_defaults_and_the_chosen_values():
    assert DemoOptions().camera_config() == CameraConfig(num_scenes=4)
    chosen = DemoOptions(scenes=2, frames=5, rate=2.0, width=40, height=30, seed=7, min_objects=1, max_objects=3)
    assert chosen.camera_config() == CameraConfig(
        width=40, height=30, rate=2.0, num_scenes=2, frames_per_scene=5, seed=7, min_objects=1, max_objects=3
    )


def _recording(opts: DemoOptions, masks_for) -> Recording:
    """What the recorder would hold if the tracker answered frame (s, t) with ``masks_for(scene, t)``."""
    rec = Recording()
    camera = opts.camera_config()
    stamp = 1_000_000_000
    for s in range(opts.scenes):
        scene = camera.make_scene(opts.seed + s)
        for t in range(opts.frames):
            stamp += 100_000_000
            rec.tags[stamp] = FrameTag("camera", s, t, opts.seed + s)
            labels = masks_for(scene, t)
            if labels is not None:
                rec.masks[stamp] = labels
                rec.latency_s[stamp] = 0.01 * (t + 1)
                rec.tracks[stamp] = [(i + 1, "object", (1.0, 2.0, 10.0, 12.0), 0.9) for i in range(scene.num_objects)]
    return rec


@pytest.mark.parametrize("world", ["2d", "3d", "mixed"])
def test_perfect_masks_score_one_and_missing_frames_are_excluded(tmp_path, world):
    opts = DemoOptions(scenes=2, frames=5, width=40, height=30, out=tmp_path, world=world)
    rec = _recording(opts, lambda scene, t: None if t == 3 else scene.segmentations[t].astype(np.uint16))
    metrics, frames, sheet = evaluate(rec, opts, sheet_frames=3)
    assert [s["frames_published"] for s in metrics["scenes"]] == [5, 5]
    assert [s["frames_with_output"] for s in metrics["scenes"]] == [4, 4]
    assert metrics["mean_fg_ari"] == pytest.approx(1.0) and metrics["mean_miou"] == pytest.approx(1.0)
    assert metrics["latency"]["count"] == 8 and metrics["latency"]["max_ms"] == pytest.approx(50.0)
    assert len(frames) == 10 and frames[0].shape == (30, 40, 3)
    assert sheet.shape == (2 * 30 + 4, 3 * 40 + 2 * 4, 3)


def test_wrong_ids_and_empty_masks_score_low(tmp_path):
    opts = DemoOptions(scenes=1, frames=4, width=40, height=30, min_objects=3, max_objects=3, out=tmp_path)
    # Every object's pixels get the id of the next object: the partition is right (FG-ARI 1) but no
    # id names its object (mIoU 0), the distinction the two metrics exist for.
    shifted = evaluate(
        _recording(
            opts, lambda scene, t: (scene.segmentations[t] % 3 + 1).astype(np.uint16) * (scene.segmentations[t] > 0)
        ),
        opts,
    )[0]
    assert shifted["mean_fg_ari"] == pytest.approx(1.0) and shifted["mean_miou"] == pytest.approx(0.0)
    empty = evaluate(_recording(opts, lambda scene, t: np.zeros(scene.segmentations[t].shape, np.uint16)), opts)[0]
    assert empty["mean_miou"] == pytest.approx(0.0)
    nothing = evaluate(_recording(opts, lambda scene, t: None), opts)[0]
    assert nothing["scenes"][0]["fg_ari"] is None and nothing["latency"] == {"count": 0}


def test_inspect_checkpoint_reads_trained_flag_and_slots(tmp_path):
    info = inspect_checkpoint(str(_tiny_checkpoint(tmp_path / "a", trained=False)))
    assert info.trained is False and info.num_object_slots == 3
    assert inspect_checkpoint(str(_tiny_checkpoint(tmp_path / "b", trained=None))).trained is None


def test_cli_refuses_bad_options():
    for argv, message in ((["--scenes", "0"], "--scenes"), (["--rate", "0"], "'rate'")):
        proc = subprocess.run(
            [sys.executable, "-m", "savi_ros.demo.run_demo", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and message in proc.stderr
    assert parse_args(["--scenes", "2", "--mask-source", "attention"]).mask_source == "attention"


# End to end: three processes over DDS and a model; the slowest test here (about 15-25 s on 2 cores).
def test_run_demo_end_to_end_writes_outputs(tmp_path):
    ckpt = _tiny_checkpoint(tmp_path / "ckpt", trained=False)
    out = tmp_path / "demo_out"
    frames = 6
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "savi_ros.demo.run_demo",
            "--scenes",
            "1",
            "--frames",
            str(frames),
            "--rate",
            "10",
            "--width",
            "64",
            "--height",
            "48",
            "--checkpoint",
            str(ckpt),
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "UNTRAINED" in proc.stdout

    video = cv2.VideoCapture(str(out / "overlay.mp4"))
    count = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        assert frame.shape == (48, 64, 3)
        count += 1
    assert count == frames

    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] == 48

    metrics = json.loads((out / "metrics.json").read_text())
    (scene,) = metrics["scenes"]
    assert scene["frames_published"] == frames and scene["frames_with_output"] >= 1
    assert metrics["trained"] is False and metrics["latency"]["count"] >= 1
    assert metrics["exit_codes"]["camera"] == 0


def test_baselines_score_the_demo_scenes_of_both_worlds(tmp_path):
    from savi_ros.demo.scoring import baseline_scores

    opts = DemoOptions(scenes=2, frames=4, width=80, height=64, out=tmp_path)
    camera = opts.camera_config()
    seeds = [opts.seed, opts.seed + 1]
    assert camera.make_scene(seeds[1]).video.shape == camera.make_scene(seeds[1]).video.shape
    scores = baseline_scores(opts, seeds)
    assert set(scores) == {"feature_prototype", "csrt_grabcut"}
    for name, values in scores.items():
        assert 0.0 < values["mean_miou"] <= 1.0, name
