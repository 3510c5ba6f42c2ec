"""SyntheticDataset: the item contract, windows, conditioning, targets and the disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from training.flow import flow_to_rgb
from savi_scenes import SceneConfig, generate_scene
from training.datasets.common import ITEM_KEYS, boxes_from_segmentation, window_start
from training.datasets.synthetic import SyntheticDataset

CFG = SceneConfig(height=32, width=40, num_frames=12, min_objects=2, max_objects=4)

DTYPES = {
    "video": torch.float32,
    "target": torch.float32,
    "segmentations": torch.int64,
    "boxes": torch.float32,
    "visible": torch.bool,
    "cond_boxes": torch.float32,
    "cond_centers": torch.float32,
    "conditioned": torch.float32,
    "instance_mask": torch.bool,
    "frame_mask": torch.bool,
}


def _shapes(t: int, n: int, h: int, w: int) -> dict[str, tuple[int, ...]]:
    return {
        "video": (t, 3, h, w),
        "target": (t, 3, h, w),
        "segmentations": (t, h, w),
        "boxes": (t, n, 4),
        "visible": (t, n),
        "cond_boxes": (n, 4),
        "cond_centers": (n, 2),
        "conditioned": (n,),
        "instance_mask": (n,),
        "frame_mask": (t,),
    }


@pytest.mark.parametrize("window, frames", [(6, 6), (None, 12)])
def test_item_contract(window, frames):
    ds = SyntheticDataset(3, seed_offset=5, scene_config=CFG, max_instances=5, window=window)
    item = ds[1]
    assert set(item) == set(ITEM_KEYS)
    for key, shape in _shapes(frames, 5, 32, 40).items():
        assert tuple(item[key].shape) == shape, key
        assert item[key].dtype == DTYPES[key], key
    for key in ("video", "target"):
        assert 0.0 <= item[key].min() and item[key].max() <= 1.0
    assert item["frame_mask"].all()
    n = generate_scene(6, CFG).num_objects
    assert item["instance_mask"].tolist() == [True] * n + [False] * (5 - n)
    assert item["segmentations"].max() <= n


def test_window_is_the_scene_slice_and_depends_on_epoch_only():
    ds = SyntheticDataset(8, seed_offset=100, scene_config=CFG, max_instances=4, window=6, target="rgb")
    starts = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(8):
            item = ds[i]
            start = window_start(12, 6, 100, i, epoch)
            starts.append(start)
            scene = generate_scene(100 + i, CFG)
            expected = torch.from_numpy(scene.video[start : start + 6]).permute(0, 3, 1, 2).float() / 255
            torch.testing.assert_close(item["video"], expected)
            torch.testing.assert_close(item["target"], expected)
            np.testing.assert_array_equal(item["segmentations"].numpy(), scene.segmentations[start : start + 6])
    assert len(set(starts)) > 2  # windows really move around
    assert starts[:8] != starts[8:]  # and change with the epoch
    again = SyntheticDataset(8, seed_offset=100, scene_config=CFG, max_instances=4, window=6, target="rgb")
    again.set_epoch(1)
    torch.testing.assert_close(again[3]["video"], ds[3]["video"])  # resume-exact


def test_flow_target_is_flow_rgb_of_backward_flow():
    ds = SyntheticDataset(1, seed_offset=9, scene_config=CFG, max_instances=4, window=None)
    scene = generate_scene(9, CFG)
    expected = flow_to_rgb(torch.from_numpy(scene.backward_flow)).permute(0, 3, 1, 2)
    torch.testing.assert_close(ds[0]["target"], expected)
    assert (ds[0]["target"][0] == 1.0).all()  # frame 0 has no motion: white


def test_conditioning_from_first_window_frame():
    cfg = SceneConfig(height=24, width=24, num_frames=10, min_objects=6, max_objects=6, size_range=(0.35, 0.5))
    ds = SyntheticDataset(12, scene_config=cfg, max_instances=8, window=5)
    seen_unconditioned = False
    for i in range(12):
        item = ds[i]
        seg = item["segmentations"].numpy()
        boxes, visible = boxes_from_segmentation(seg, 6)
        np.testing.assert_allclose(item["boxes"][:, :6].numpy(), boxes, atol=1e-6)  # id i+1 <-> slot i
        np.testing.assert_array_equal(item["visible"][:, :6].numpy(), visible)
        assert item["instance_mask"].tolist() == [True] * 6 + [False] * 2
        for k in range(8):
            if k < 6 and visible[0, k]:
                assert item["conditioned"][k] == 1
                torch.testing.assert_close(item["cond_boxes"][k], torch.from_numpy(boxes[0, k]))
                rows, cols = np.nonzero(seg[0] == k + 1)
                com = [(rows.mean() + 0.5) / 24, (cols.mean() + 0.5) / 24]
                np.testing.assert_allclose(item["cond_centers"][k].numpy(), com, atol=1e-5)
            else:
                seen_unconditioned |= k < 6
                assert item["conditioned"][k] == 0
                assert (item["cond_boxes"][k] == -1).all() and (item["cond_centers"][k] == -1).all()
    assert seen_unconditioned  # six big objects in 24x24: some start fully occluded


def test_short_video_is_padded_with_masked_frames():
    cfg = SceneConfig(height=16, width=16, num_frames=4, max_objects=3)
    item = SyntheticDataset(1, scene_config=cfg, max_instances=3, window=6)[0]
    assert item["frame_mask"].tolist() == [True] * 4 + [False] * 2
    assert item["video"].shape[0] == 6 and (item["video"][4:] == 0).all()


def test_rejects_too_few_instance_slots_and_bad_arguments():
    with pytest.raises(ValueError, match="max_instances"):
        SyntheticDataset(2, scene_config=SceneConfig(max_objects=6), max_instances=5)
    with pytest.raises(ValueError, match="target"):
        SyntheticDataset(2, max_instances=6, target="depth")
    with pytest.raises(IndexError):
        SyntheticDataset(2, max_instances=6)[2]


def test_disk_cache_is_written_and_reused(tmp_path):
    ds = SyntheticDataset(2, seed_offset=3, scene_config=CFG, max_instances=4, window=None, cache_dir=tmp_path)
    fresh = SyntheticDataset(2, seed_offset=3, scene_config=CFG, max_instances=4, window=None)
    first = ds[0]
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 1
    for key in ITEM_KEYS:
        torch.testing.assert_close(first[key], fresh[0][key])
    # Tamper with the cached scene: a reader that regenerated would not see it.
    with np.load(files[0]) as data:
        arrays = dict(data)
    arrays["video"] = np.zeros_like(arrays["video"])
    np.savez(files[0], **arrays)
    reread = SyntheticDataset(2, seed_offset=3, scene_config=CFG, max_instances=4, window=None, cache_dir=tmp_path)[0]
    assert reread["video"].abs().sum() == 0
    # Another scene config must not pick up these files.
    other = SyntheticDataset(
        2,
        seed_offset=3,
        scene_config=SceneConfig(height=32, width=40, num_frames=12, max_objects=4, textured=False),
        max_instances=4,
        window=None,
        cache_dir=tmp_path,
    )
    assert other[0]["video"].abs().sum() > 0


def test_batches_through_a_dataloader():
    ds = SyntheticDataset(4, scene_config=CFG, max_instances=4, window=6)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["video"].shape == (2, 6, 3, 32, 40)
    assert batch["cond_boxes"].shape == (2, 4, 4)
