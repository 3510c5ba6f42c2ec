"""MOVi reader: fixture shards in the exact TFDS format, decoded field by field; corrupt input errors."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from training.flow import flow_to_rgb
from training.datasets.common import ITEM_KEYS
from training.datasets.example_proto import encode_example
from training.datasets.movi import MoviDataset, find_shards
from training.datasets.sketchy import SketchyDataset
from training.datasets.tfrecord import DatasetFormatError, RecordError, scan_records, write_tfrecord
from test.training.datasets import fixtures_writer as fw

T, H, W, N_INST = 4, 16, 20, 3


@pytest.fixture(scope="module")
def movi(tmp_path_factory):
    videos = [fw.make_movi_video(seed) for seed in range(3)]
    val = [fw.make_movi_video(10)]
    root = fw.write_movi_dir(
        tmp_path_factory.mktemp("movi") / "movi_a" / "128x128" / "1.0.0",
        {"train": [videos[:2], videos[2:]], "validation": [val]},
    )
    return root, videos, val


def _quantum(v, which):
    low, high = getattr(v, f"{which}_range")
    return (high - low) / 65535


def test_finds_shards_by_split(movi):
    root, _, _ = movi
    assert [p.name for p in find_shards(root, "train")] == [
        "movi_a-train.tfrecord-00000-of-00002",
        "movi_a-train.tfrecord-00001-of-00002",
    ]
    assert len(find_shards(root, "validation")) == 1
    with pytest.raises(FileNotFoundError, match=r"no '\*-validation.tfrecord"):
        find_shards(root / "..", "validation")
    with pytest.raises(ValueError, match="split must be one of"):
        find_shards(root, "test")


@pytest.mark.parametrize(
    "option, value",
    [("target", "depth"), ("flow", "both"), ("excess_instances", "drop"), ("max_instances", 0), ("window", 0)],
)
def test_bad_options_are_named(movi, option, value):
    with pytest.raises(ValueError, match=rf"^{option} must be .*, got {value!r}$"):
        MoviDataset(movi[0], "train", **{option: value})


@pytest.mark.parametrize("which", ["backward", "forward"])
def test_every_decoded_field_round_trips(movi, which):
    root, videos, _ = movi
    ds = MoviDataset(root, "train", flow=which)
    assert len(ds) == 3
    assert [r[1] for r in ds.records] == [0, 1, 0]
    for i, v in enumerate(videos):
        clip = ds.read(i)
        assert clip.name == v.name
        assert clip.video.dtype == np.uint8 and np.array_equal(clip.video, v.video)  # PNG: bit exact
        assert np.array_equal(clip.segmentations, v.segmentations)
        stored = getattr(v, f"{which}_flow")
        assert clip.flow.shape == (T, H, W, 2)
        assert np.abs(clip.flow - stored).max() <= 1e-5 + _quantum(v, which) / 2
        assert np.array_equal(clip.boxes, v.boxes)
        assert np.array_equal(clip.visible, v.visible)
        assert not clip.visible[0, 1] and clip.visible[1:, 1].any()
    part = ds.read(1, slice(1, 3))
    assert np.array_equal(part.video, videos[1].video[1:3])
    assert np.array_equal(part.boxes, videos[1].boxes[1:3])
    assert np.array_equal(part.visible, videos[1].visible[1:3])


def test_full_video_item(movi):
    root, _, val = movi
    ds = MoviDataset(root, "validation", max_instances=5, window=None, target="flow")
    item = ds[0]
    v = val[0]
    assert set(item) == set(ITEM_KEYS)
    assert item["video"].shape == (T, 3, H, W) and item["video"].dtype == torch.float32
    assert torch.equal(item["video"], torch.from_numpy(v.video).permute(0, 3, 1, 2).float() / 255)
    expected_target = flow_to_rgb(torch.from_numpy(v.backward_flow)).permute(0, 3, 1, 2)
    assert (item["target"] - expected_target).abs().max() <= 1 / 255 + 1e-6  # flow quantisation may flip a level
    assert torch.equal(item["segmentations"], torch.from_numpy(v.segmentations).long())
    assert item["boxes"].shape == (T, 5, 4)
    assert torch.equal(item["boxes"][:, :N_INST], torch.from_numpy(v.boxes))
    assert torch.all(item["boxes"][:, N_INST:] == 0)
    assert torch.equal(item["visible"][:, :N_INST], torch.from_numpy(v.visible))
    assert not item["visible"][:, N_INST:].any()
    assert item["instance_mask"].tolist() == [True] * N_INST + [False] * 2
    assert item["frame_mask"].tolist() == [True] * T
    cond = v.visible[0]
    assert item["conditioned"].tolist() == [float(c) for c in cond] + [0.0, 0.0]
    for i in range(5):
        if i < N_INST and cond[i]:
            assert torch.equal(item["cond_boxes"][i], torch.from_numpy(v.boxes[0, i]))
            rows, cols = np.nonzero(v.segmentations[0] == i + 1)
            expected = [(rows.mean() + 0.5) / H, (cols.mean() + 0.5) / W]
            assert np.allclose(item["cond_centers"][i].numpy(), expected, atol=1e-6)
        else:
            assert torch.all(item["cond_boxes"][i] == -1) and torch.all(item["cond_centers"][i] == -1)


def test_rgb_target_is_the_video(movi):
    root, _, _ = movi
    item = MoviDataset(root, "validation", window=None, target="rgb")[0]
    assert torch.equal(item["target"], item["video"])


def test_windows_are_deterministic_and_follow_the_epoch(movi):
    root, videos, _ = movi
    ds = MoviDataset(root, "train", window=2, seed=3)
    again = MoviDataset(root, "train", window=2, seed=3)
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        again.set_epoch(epoch)
        item = ds[2]
        assert torch.equal(item["video"], again[2]["video"])
        assert item["video"].shape == (2, 3, H, W) and item["frame_mask"].all()
        frames = (item["video"].permute(0, 2, 3, 1) * 255).round().byte().numpy()
        start = next(s for s in range(T - 1) if np.array_equal(frames, videos[2].video[s : s + 2]))
        starts.add(start)
        assert torch.equal(item["boxes"][:, :N_INST], torch.from_numpy(videos[2].boxes[start : start + 2]))
        cond = videos[2].visible[start]
        assert item["conditioned"][:N_INST].tolist() == [float(c) for c in cond]  # the window's first frame
    assert len(starts) > 1


def test_resize_scales_flow_per_axis(tmp_path):
    v = fw.make_movi_video(5, constant_flow=(4.0, -6.0))
    root = fw.write_movi_dir(tmp_path, {"train": [[v]]})
    ds = MoviDataset(root, "train", resolution=(8, 40), window=None)  # rows halved, columns doubled
    item = ds[0]
    assert item["video"].shape == (T, 3, 8, 40) and item["segmentations"].shape == (T, 8, 40)
    assert set(np.unique(item["segmentations"].numpy())) <= set(np.unique(v.segmentations))  # nearest: no blends
    flow = torch.tensor([4.0 * 8 / 16, -6.0 * 40 / 20]).expand(T, 8, 40, 2)
    wrong = torch.tensor([4.0, -6.0]).expand(T, 8, 40, 2)
    assert torch.allclose(item["target"], flow_to_rgb(flow).permute(0, 3, 1, 2), atol=1 / 255 + 1e-6)
    assert not torch.allclose(item["target"], flow_to_rgb(wrong).permute(0, 3, 1, 2), atol=1 / 255 + 1e-6)
    assert torch.equal(item["boxes"][:, :N_INST], torch.from_numpy(v.boxes))  # normalised: unchanged


def test_more_instances_than_slots(movi):
    root, videos, _ = movi
    ds = MoviDataset(root, "train", max_instances=2, window=None)
    with pytest.raises(
        DatasetFormatError,
        match=r"movi_a-train.tfrecord-00000-of-00002: record 0 at byte 0: "
        r"video has 3 instances but max_instances=2",
    ):
        ds[0]
    ds = MoviDataset(root, "train", max_instances=2, window=None, excess_instances="truncate")
    with pytest.warns(UserWarning, match="3 instances > max_instances=2"):
        item = ds[0]
    assert item["boxes"].shape == (T, 2, 4)
    assert torch.equal(item["boxes"], torch.from_numpy(videos[0].boxes[:, :2]))
    seg = videos[0].segmentations
    assert torch.equal(item["segmentations"], torch.from_numpy(np.where(seg == 3, 0, seg)).long())


# ------------------------------------------------------------------------------------------------
# Corrupt input
# ------------------------------------------------------------------------------------------------
def _broken(tmp_path, features: dict, drop: str | None = None):
    good = fw.movi_features(fw.make_movi_video(1))
    bad = {**good, **features}
    if drop:
        del bad[drop]
    write_tfrecord(tmp_path / "movi_x-train.tfrecord-00000-of-00001", [encode_example(good), encode_example(bad)])
    ds = MoviDataset(tmp_path, "train", window=None)
    ds[0]  # the good neighbour still reads
    return ds


def test_undecodable_png(tmp_path):
    good = fw.movi_features(fw.make_movi_video(1))
    frames = list(good["video"])
    frames[2] = frames[2][:40]  # a truncated PNG
    ds = _broken(tmp_path, {"video": frames})
    with pytest.raises(DatasetFormatError, match=r"record 1 at byte \d+: 'video' frame 2 is not a decodable image"):
        ds[1]


def test_frame_count_must_match_metadata(tmp_path):
    good = fw.movi_features(fw.make_movi_video(1))
    ds = _broken(tmp_path, {"segmentations": good["segmentations"][:-1]})
    with pytest.raises(DatasetFormatError, match=rf"'segmentations' has {T - 1} frames, metadata/num_frames is {T}"):
        ds[1]


def test_missing_key_is_named(tmp_path):
    ds = _broken(tmp_path, {}, drop="segmentations")
    with pytest.raises(
        DatasetFormatError,
        match=r"tfrecord-00000-of-00001: record 1 at byte \d+: "
        r"missing feature 'segmentations'",
    ):
        ds[1]


def test_wrong_flow_element_count(tmp_path):
    ds = _broken(tmp_path, {"backward_flow": np.zeros(T * H * W * 2 - 2, np.int64)})
    with pytest.raises(
        DatasetFormatError,
        match=rf"'backward_flow' has {T * H * W * 2 - 2} elements, "
        rf"expected {T * H * W * 2}",
    ):
        ds[1]


def test_inconsistent_ragged_boxes(tmp_path):
    ds = _broken(tmp_path, {"instances/bboxes/ragged_row_lengths_0": np.array([1, 1, 1])})
    with pytest.raises(DatasetFormatError, match="'instances/bboxes/ragged_flat_values' has .* values"):
        ds[1]


def test_segmentation_id_beyond_num_instances(tmp_path):
    ds = _broken(
        tmp_path,
        {
            "metadata/num_instances": [2],
            "instances/bboxes/ragged_row_lengths_0": np.array([0, 0]),
            "instances/bboxes/ragged_flat_values": np.zeros(0, np.float32),
            "instances/bbox_frames/ragged_row_lengths_0": np.array([0, 0]),
            "instances/bbox_frames/ragged_flat_values": np.zeros(0, np.int64),
        },
    )
    with pytest.raises(DatasetFormatError, match="'segmentations' holds id 3 but metadata/num_instances is 2"):
        ds[1]


def test_bad_payload_crc_in_a_shard(movi, tmp_path):
    root, _, _ = movi
    shard = find_shards(root, "train")[0]
    copy = tmp_path / shard.name
    data = bytearray(shard.read_bytes())
    second = scan_records(shard)[1]
    data[second.offset + 12 + 50] ^= 0x10
    copy.write_bytes(bytes(data))
    ds = MoviDataset(tmp_path, "train", window=None)
    ds[0]
    with pytest.raises(RecordError, match=rf"{shard.name}: record 1 at byte {second.offset}: payload checksum"):
        ds[1]


def test_truncated_shard_fails_when_indexing(movi, tmp_path):
    root, _, _ = movi
    shard = find_shards(root, "train")[0]
    (tmp_path / shard.name).write_bytes(shard.read_bytes()[:-7])
    second = scan_records(shard)[1]
    with pytest.raises(RecordError, match=rf"{shard.name}: record 1 at byte {second.offset}: truncated record"):
        MoviDataset(tmp_path, "train")


def test_not_an_example(tmp_path):
    write_tfrecord(tmp_path / "movi_x-train.tfrecord-00000-of-00001", [b"\x0a\xff\xff\xff"])
    with pytest.raises(DatasetFormatError, match="record 0 at byte 0: not a tf.train.Example"):
        MoviDataset(tmp_path, "train")[0]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_instances": 0}, "max_instances must be >= 1, got 0"),
        ({"window": 0}, "window must be >= 1 or None, got 0"),
        ({"resolution": (64,)}, r"resolution must be \(height, width\) >= 1 or None, got \(64,\)"),
        ({"resolution": (0, 64)}, "resolution must be"),
    ],
)
def test_clip_options_are_refused_naming_the_option(movi, tmp_path, options, message):
    """MOVi and Sketchy check the options every dataset shares alike (training.datasets.common)."""
    root, _, _ = movi
    with pytest.raises(ValueError, match=message):
        MoviDataset(root, **options)
    episode = fw.SketchyFixtureEpisode("1", "episode", "EPISODE_ROBOT_TELEOPERATION", ["rgb30__all"], "a.tar.bz2", [])
    fw.write_sketchy_metadata(tmp_path / "metadata.sqlite", [episode])
    with pytest.raises(ValueError, match=message):
        SketchyDataset(tmp_path, **options)
