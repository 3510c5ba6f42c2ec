"""The feature cache: what it returns is what the backbone computes, keyed by frame content."""

import pytest
import torch

from savi_core.model.backbone import EfficientNetLite0
from training.feature_cache import TAP_KEYS, CachedFeatureDataset, FeatureCache, frame_key
from training.losses import merged_background


@pytest.fixture(scope="module")
def backbone() -> EfficientNetLite0:
    net = EfficientNetLite0()
    net.load_pretrained()
    return net


def test_cache_equals_recomputation_and_hits_on_the_second_read(backbone, tmp_path):
    frames = torch.rand(3, 3, 32, 48)
    cache = FeatureCache(tmp_path, backbone)
    first = cache.features(frames)
    assert cache.misses == 3 and cache.hits == 0
    with torch.no_grad():
        direct = backbone(frames)
    for name, tap in zip(TAP_KEYS, direct.as_tuple()):
        assert first[name].dtype == torch.float16
        assert torch.equal(first[name], tap.half()), name
    again = FeatureCache(tmp_path, backbone).features(frames)  # a new process reads the files
    for name in TAP_KEYS:
        assert torch.equal(again[name], first[name])
    assert len(list((tmp_path / backbone.sha256[:16]).rglob("*.safetensors"))) == 3


def test_a_changed_frame_misses_and_a_torn_file_is_recomputed(backbone, tmp_path):
    frames = torch.rand(2, 3, 32, 48)
    cache = FeatureCache(tmp_path, backbone)
    cache.features(frames)
    changed = frames.clone()
    changed[1, :, 0, 0] = 1.0 - changed[1, :, 0, 0]
    assert frame_key(changed[1]) != frame_key(frames[1])
    cache.features(changed)
    assert (cache.hits, cache.misses) == (1, 3)  # frame 0 again, frame 1 changed
    path = cache._path(frame_key(frames[0]))  # a file the next read needs
    path.write_bytes(path.read_bytes()[:100])
    fresh = FeatureCache(tmp_path, backbone)
    out = fresh.features(frames)
    assert fresh.misses == 1
    with torch.no_grad():  # one frame alone rounds a little differently from a batch of two
        assert torch.allclose(out["s16"].float(), backbone(frames).s16, rtol=1e-2, atol=1e-2)


def test_dataset_wrapper_adds_taps_with_a_time_axis(backbone, tmp_path):
    items = [{"video": torch.rand(4, 3, 32, 48), "frame_mask": torch.ones(4, dtype=torch.bool)}]
    dataset = CachedFeatureDataset(items, FeatureCache(tmp_path, backbone))
    item = dataset[0]
    assert item["s4"].shape == (4, 24, 8, 12) and item["s8"].shape == (4, 40, 4, 6)
    assert item["s16"].shape == (4, 112, 2, 3)


def test_merged_background_sums_every_background_slot_into_slot_zero():
    masks = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 4, 1, 1)
    conditioned = torch.tensor([[1.0, 0.0, 1.0]])  # object slots 1..3; slot 2 is unconditioned
    merged = merged_background(masks, conditioned).flatten()
    assert torch.allclose(merged, torch.tensor([0.4, 0.2, 0.0, 0.4]))
