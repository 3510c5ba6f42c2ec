"""VideoFolderDataset on real files: an mp4 and a folder of PNG frames written here."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from savi_scenes import SceneConfig, generate_scene
from training.datasets.common import ITEM_KEYS, estimate_backward_flow, flow_rgb
from training.datasets.videos import VideoFolderDataset

# Content moves by (+1 row, +2 cols) per frame: backward flow is (-1, -2).
STEP = (1, 2)


def _translating_frames(num: int, size: int = 64) -> np.ndarray:
    """Grey-ish smooth noise shifted by STEP each frame (uint8 RGB [T,size,size,3])."""
    rng = np.random.default_rng(0)
    big = cv2.resize(rng.random((20, 20, 3)).astype(np.float32), (2 * size, 2 * size), interpolation=cv2.INTER_CUBIC)
    big = (np.clip(big, 0, 1) * 255).astype(np.uint8)
    out = []
    for t in range(num):
        r0, c0 = size // 2 - t * STEP[0], size // 2 - t * STEP[1]
        out.append(big[r0 : r0 + size, c0 : c0 + size])
    return np.stack(out)


def _write_mp4(path, frames: np.ndarray, fps: int = 12) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    scene = generate_scene(0, SceneConfig(height=48, width=80, num_frames=9))
    _write_mp4(root / "scene.mp4", scene.video)
    frames_dir = root / "pan"
    frames_dir.mkdir()
    for t, f in enumerate(_translating_frames(7)):
        cv2.imwrite(str(frames_dir / f"{t:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (root / "notes.txt").write_text("ignored")
    return root


def test_estimated_flow_points_backwards_in_row_col_order():
    flow = estimate_backward_flow(_translating_frames(5))
    assert flow.shape == (5, 64, 64, 2) and flow.dtype == np.float32
    assert np.all(flow[0] == 0)
    inner = flow[1:, 12:-12, 12:-12].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, 0), [-STEP[0], -STEP[1]], atol=0.15)


def test_items_from_mp4_and_frames_folder(folder, tmp_path):
    ds = VideoFolderDataset(folder, resolution=(32, 48), window=None, max_instances=3, cache_dir=tmp_path / "cache")
    assert ds.names == ["pan", "scene"]
    assert len(ds) == 2
    for index, frames in ((0, 7), (1, 9)):
        item = ds[index]
        assert set(item) == set(ITEM_KEYS)
        assert item["video"].shape == (frames, 3, 32, 48) and item["video"].dtype == torch.float32
        assert item["target"].shape == (frames, 3, 32, 48) and item["target"].dtype == torch.float32
        assert 0 <= item["video"].min() and item["video"].max() <= 1
        assert 0 <= item["target"].min() and item["target"].max() <= 1
        assert item["segmentations"].shape == (frames, 32, 48) and item["segmentations"].dtype == torch.int64
        assert (item["segmentations"] == 0).all()
        assert item["boxes"].shape == (frames, 3, 4) and (item["boxes"] == 0).all()
        assert item["visible"].shape == (frames, 3) and not item["visible"].any()
        assert not item["instance_mask"].any() and (item["conditioned"] == 0).all()
        assert (item["cond_boxes"] == -1).all() and item["frame_mask"].all()
        assert (item["target"][0] == 1).all()  # no flow into frame 0: white
    # The mp4 decodes to the scene it was written from (lossy codec: small mean error).
    scene = generate_scene(0, SceneConfig(height=48, width=80, num_frames=9))
    expected = cv2.resize(scene.video[4], (48, 32), interpolation=cv2.INTER_AREA)
    got = ds[1]["video"][4].permute(1, 2, 0).numpy() * 255
    assert np.abs(got - expected).mean() < 12


def test_target_is_flow_rgb_of_estimated_flow_and_moves_the_right_way(folder):
    ds = VideoFolderDataset(folder, resolution=(64, 64), window=None, max_instances=2)
    item = ds[0]
    frames = (item["video"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    flow = estimate_backward_flow(frames)
    torch.testing.assert_close(item["target"], torch.from_numpy(flow_rgb(flow)).permute(0, 3, 1, 2))
    # Motion (+1 row, +2 col) -> backward flow (-1, -2): d_col dominates and both are negative.
    median = np.median(flow[1:, 12:-12, 12:-12].reshape(-1, 2), 0)
    np.testing.assert_allclose(median, [-1, -2], atol=0.2)


def test_windows_change_with_epoch_and_pad_short_videos(folder):
    ds = VideoFolderDataset(folder, resolution=(16, 16), window=4, max_instances=2, target="rgb", samples_per_video=3)
    assert len(ds) == 6
    full = VideoFolderDataset(folder, resolution=(16, 16), window=None, max_instances=2, target="rgb")[1]
    starts = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for index in (3, 4, 5):
            video = ds[index]["video"]
            assert video.shape == (4, 3, 16, 16)
            hits = [s for s in range(6) if torch.equal(full["video"][s : s + 4], video)]
            assert hits
            starts.add(hits[0])
    assert len(starts) > 1
    short = VideoFolderDataset(folder, resolution=(16, 16), window=8, max_instances=2, target="rgb")[0]
    assert short["frame_mask"].tolist() == [True] * 7 + [False]


def test_flow_cache_is_reused_and_invalidated_by_changes(folder, tmp_path):
    cache = tmp_path / "cache"
    ds = VideoFolderDataset(folder, resolution=(16, 16), window=None, max_instances=2, cache_dir=cache)
    ds.prepare()
    flows = sorted(cache.glob("pan_*.flow.npy"))
    assert len(flows) == 1 and np.load(flows[0]).dtype == np.float16
    assert len(list(cache.glob("scene_*.flow.npy"))) == 1
    # Overwrite the cached flow: a new dataset must use it instead of estimating again.
    np.save(flows[0], np.zeros((7, 16, 16, 2), np.float16))
    reused = VideoFolderDataset(folder, resolution=(16, 16), window=None, max_instances=2, cache_dir=cache)[0]
    assert (reused["target"] == 1).all()
    # Touching a frame changes the fingerprint: the flow is estimated again into a new file.
    frame = folder / "pan" / "0003.png"
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    again = VideoFolderDataset(folder, resolution=(16, 16), window=None, max_instances=2, cache_dir=cache)[0]
    assert len(list(cache.glob("pan_*.flow.npy"))) == 2
    assert (again["target"] < 1).any()
    # Another resolution gets its own entry too.
    VideoFolderDataset(folder, resolution=(24, 16), window=None, max_instances=2, cache_dir=cache).prepare()
    assert len(list(cache.glob("pan_*.flow.npy"))) == 3


def test_boxes_json_conditions_windows_starting_at_frame_zero(folder, tmp_path):
    boxes = tmp_path / "boxes.json"
    # scene.mp4 is 80x48 pixels; boxes are x0, y0, x1, y1 in those pixels.
    boxes.write_text(json.dumps({"scene.mp4": [[8, 12, 40, 36], [0, 0, 80, 48]], "pan": []}))
    ds = VideoFolderDataset(folder, resolution=(32, 32), window=None, max_instances=3, boxes_json=boxes, target="rgb")
    item = ds[1]
    expected = [[12 / 48, 8 / 80, 36 / 48, 40 / 80], [0, 0, 1, 1], [-1, -1, -1, -1]]
    torch.testing.assert_close(item["cond_boxes"], torch.tensor(expected, dtype=torch.float32))
    assert item["conditioned"].tolist() == [1, 1, 0]
    assert item["instance_mask"].tolist() == [True, True, False]
    torch.testing.assert_close(item["cond_centers"][0], torch.tensor([24 / 48, 24 / 80]))
    assert not ds[0]["instance_mask"].any()
    # A window that starts later is unconditioned, but the instances still exist.
    windowed = VideoFolderDataset(
        folder, resolution=(32, 32), window=3, max_instances=3, boxes_json=boxes, target="rgb", samples_per_video=6
    )
    later = [windowed[i] for i in range(6, 12) if windowed[i]["conditioned"].sum() == 0]
    assert later and all(it["instance_mask"].tolist() == [True, True, False] for it in later)
    assert all((it["cond_boxes"] == -1).all() for it in later)


def test_bad_inputs_give_clear_errors(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no videos"):
        VideoFolderDataset(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoFolderDataset(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match="junk.mp4"):
        VideoFolderDataset(broken, max_instances=1)[0]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"nonexistent": [[0, 0, 1, 1]]}))
    with pytest.raises(ValueError, match="nonexistent"):
        VideoFolderDataset(folder, boxes_json=bad_json)
    bad_json.write_text(json.dumps({"pan": [[5, 0, 1, 1]]}))
    with pytest.raises(ValueError, match="x1 <= x0"):
        VideoFolderDataset(folder, boxes_json=bad_json)
    bad_json.write_text(json.dumps({"pan": [[0, 0, 1, 1]] * 3}))
    with pytest.raises(ValueError, match="max_instances"):
        VideoFolderDataset(folder, boxes_json=bad_json, max_instances=2)


def test_stride_and_max_frames(folder):
    ds = VideoFolderDataset(
        folder, resolution=(16, 16), window=None, max_instances=1, target="rgb", frame_stride=2, max_frames=3
    )
    assert ds[0]["video"].shape[0] == 3  # frames 0, 2, 4 of 7
    assert ds[1]["video"].shape[0] == 3  # of 9 (5 after the stride)
    every = VideoFolderDataset(folder, resolution=(16, 16), window=None, max_instances=1, target="rgb")[0]
    torch.testing.assert_close(ds[0]["video"], every["video"][0:6:2])


@pytest.mark.parametrize("kept, outcome", [(0.95, "warn"), (0.3, "refuse")])
def test_a_truncated_video_is_never_read_short_silently(tmp_path, kept, outcome):
    """An AVI cut short still declares its 24 frames: a short read warns, a mostly missing one is refused."""
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 12, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(24):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    root = tmp_path / "videos"
    root.mkdir()
    data = full.read_bytes()
    (root / "cut.avi").write_bytes(data[: int(len(data) * kept)])
    ds = VideoFolderDataset(root, resolution=(16, 16), window=None, max_instances=1, target="rgb")
    if outcome == "warn":
        with pytest.warns(UserWarning, match=r"cut\.avi: decoded 2\d of the 24 frames"):
            item = ds[0]
        assert 20 <= item["video"].shape[0] < 24
    else:
        with pytest.raises(ValueError, match=r"cut\.avi: decoded \d of the 24 frames .* refusing"):
            ds[0]


def _moving_object_frames(height: int, width: int, step_px: int, num: int = 6) -> tuple[np.ndarray, list]:
    """A textured square moving ``step_px`` columns per frame over a different textured background;
    returns the frames and, per frame, the (row, col) slices of the square's interior."""
    rng = np.random.default_rng(1)

    def texture(h: int, w: int, cells: int) -> np.ndarray:
        small = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    background = texture(height, width, 12)
    side = height // 3
    square = texture(side, side, 6)
    frames, interiors = [], []
    for t in range(num):
        frame = background.copy()
        r0, c0 = height // 3, width // 6 + t * step_px
        frame[r0 : r0 + side, c0 : c0 + side] = square
        frames.append(frame)
        q = side // 4
        interiors.append((slice(r0 + q, r0 + side - q), slice(c0 + q, c0 + side - q)))
    return np.stack(frames), interiors


@pytest.mark.parametrize(
    "source, resolution, step_px",
    [
        ((64, 64), (64, 64), 1),  # 1 px/frame at 64x64
        ((240, 320), (240, 320), 1),  # 1 px/frame at camera size
        ((240, 320), (64, 64), 5),  # 5 px at 320 wide = 1 px at 64 wide: estimated before the resize
    ],
)
def test_estimated_flow_has_the_true_displacement_in_size(tmp_path, source, resolution, step_px):
    """The object's backward flow is -step columns (scaled to the model resolution) within 10%, 0 rows."""
    frames, interiors = _moving_object_frames(*source, step_px)
    root = tmp_path / "videos"
    (root / "object").mkdir(parents=True)
    for t, f in enumerate(frames):
        cv2.imwrite(str(root / "object" / f"{t:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    ds = VideoFolderDataset(root, resolution=resolution, window=None, max_instances=1, cache_dir=tmp_path / "cache")
    ds.prepare()
    flow = np.asarray(ds._clip(0).flow, np.float32)
    scale_r, scale_c = resolution[0] / source[0], resolution[1] / source[1]
    expected = -step_px * scale_c
    for t in range(1, len(frames)):
        rows, cols = interiors[t]
        rows = slice(int(rows.start * scale_r) + 1, int(rows.stop * scale_r) - 1)
        cols = slice(int(cols.start * scale_c) + 1, int(cols.stop * scale_c) - 1)
        d_row, d_col = np.median(flow[t, rows, cols].reshape(-1, 2), 0)
        assert abs(d_col - expected) <= 0.1 * abs(expected), (t, d_col, expected)
        assert abs(d_row) <= 0.1 * abs(expected), (t, d_row)
