"""The `bag` dataset kind on real bags written with rosbags' writer (MCAP and sqlite3, raw and
compressed), and a few training steps from a bag."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rosbags")

from savi_ros.bag import write_bag  # noqa: E402  (test helper: writes the bag a robot would record)
from training.datasets.bags import BagDataset, discover_bags  # noqa: E402
from training.datasets.common import ITEM_KEYS  # noqa: E402
from training.train import main as train_main  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
W, H, T = 80, 60, 8


def moving_square_frames(step_px: int = 2) -> np.ndarray:
    """A textured square moving ``step_px`` columns per frame over a textured background."""
    rng = np.random.default_rng(0)
    import cv2

    background = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
    square = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (20, 20), interpolation=cv2.INTER_CUBIC)
    frames = []
    for t in range(T):
        f = background.copy()
        f[20:40, 10 + step_px * t : 30 + step_px * t] = square
        frames.append(f)
    return np.stack(frames)


@pytest.fixture()
def bags(tmp_path) -> Path:
    root = tmp_path / "bags"
    root.mkdir()
    frames = moving_square_frames()
    boxes = {0: [(10.0, 20.0, 30.0, 40.0)], 4: [(18.0, 20.0, 38.0, 40.0)]}
    write_bag(root / "raw_mcap", frames, boxes, storage="mcap", detection_delay_s=0.05)
    write_bag(root / "png_sqlite", frames, boxes, storage="sqlite3", compressed="png")
    (root / "notes.txt").write_text("ignored")
    return root


def test_frames_flow_and_conditioning_from_raw_and_compressed_bags(bags, tmp_path):
    assert [s.name for s in discover_bags(bags)] == ["png_sqlite", "raw_mcap"]
    ds = BagDataset(
        bags,
        image_topic="/camera/image",
        detections_topic="/detections",
        resolution=(30, 40),
        window=None,
        max_instances=3,
        cache_dir=tmp_path / "cache",
    )
    assert len(ds) == 2
    first, second = ds[0], ds[1]
    for item in (first, second):
        assert set(item) == set(ITEM_KEYS)
        assert item["video"].shape == (T, 3, 30, 40) and item["target"].shape == (T, 3, 30, 40)
        # The window starts on frame 0, whose detections condition slot 0 with the box (normalised yxyx).
        torch.testing.assert_close(item["cond_boxes"][0], torch.tensor([20 / H, 10 / W, 40 / H, 30 / W]))
        assert (item["cond_boxes"][1:] == -1).all()
    # png is lossless: both bags hold the same frames.
    torch.testing.assert_close(first["video"], second["video"])
    # Flow inside the square: 2 px/frame at 80 wide -> -1 px at 40 wide (backward), within 10%.
    flow = np.asarray(ds._clip(1).flow, np.float32)
    for t in range(1, T):
        d_row, d_col = np.median(flow[t, 11:19, 8 + t : 13 + t].reshape(-1, 2), 0)
        assert abs(d_col + 1.0) <= 0.1 and abs(d_row) <= 0.1, (t, d_row, d_col)
    # A window starting on frame 4 takes frame 4's boxes; one starting elsewhere is unconditioned.
    clip = ds._clip(0)
    assert ds._cond_boxes(0, clip, 4) is not None and ds._cond_boxes(0, clip, 2) is None


def test_missing_topics_and_non_bags_are_clear_errors(bags, tmp_path):
    with pytest.raises(ValueError, match=r"no image topic '/camera/left'.*/camera/image"):
        BagDataset(bags, image_topic="/camera/left", resolution=(16, 16), window=None)[0]
    with pytest.raises(ValueError, match="no detections topic '/dets'"):
        BagDataset(bags, image_topic="/camera/image", detections_topic="/dets", resolution=(16, 16), window=None)[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no bags in"):
        BagDataset(empty, image_topic="/camera/image")


def test_training_runs_a_few_steps_from_a_bag(bags, tmp_path):
    run = tmp_path / "run"
    code = train_main(
        [
            "--config",
            str(REPO / "training/configs/bag_finetune.yaml"),
            "--data",
            str(bags / "raw_mcap"),
            "--out",
            str(run),
            "--steps",
            "2",
            "--set",
            "train.batch_size=1",
            "train.num_workers=0",
            f"data.options.cache_dir={tmp_path / 'cache'}",
            "train.checkpoint_every=2",
            "train.log_every=1",
            "eval.num_videos=1",
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000002"


def test_without_a_detections_topic_every_window_is_unconditioned(bags):
    ds = BagDataset(bags / "raw_mcap", image_topic="/camera/image", resolution=(16, 16), window=None, max_instances=2)
    item = ds[0]
    assert item["video"].shape[0] == T and (item["cond_boxes"] == -1).all()
