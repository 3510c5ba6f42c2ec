"""FG-ARI against sklearn, mIoU against hand-computed A.8 values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from training.metrics import fg_ari, known_objects_ids, mean_over_videos, miou, per_frame_fg_ari

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def sklearn_fg_ari(pred: torch.Tensor, gt: torch.Tensor, frames: list[int]) -> float:
    """Reference: one video, sklearn on the foreground pixels of the given frames (NaN if none)."""
    p, g = pred[frames].reshape(-1).cpu().numpy(), gt[frames].reshape(-1).cpu().numpy()
    fg = g != 0
    return adjusted_rand_score(g[fg], p[fg]) if fg.any() else math.nan


def assert_close(actual: float, expected: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("skip_first", [True, False])
def test_fg_ari_matches_sklearn_on_random_videos(device: str, skip_first: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        b, t, h, w = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 7), rng.integers(1, 7)
        gt = torch.from_numpy(rng.integers(0, rng.integers(1, 6), (b, t, h, w)))
        # Non-contiguous, negative and huge prediction ids: only equality may matter.
        palette = torch.tensor([-7, 0, 3, 2**40, 123456789, 5])
        pred = palette[torch.from_numpy(rng.integers(0, rng.integers(1, 7), (b, t, h, w)))]
        scores = fg_ari(pred.to(device), gt.to(device), skip_first=skip_first)
        assert scores.dtype == torch.float64 and scores.shape == (b,) and scores.device.type == device
        frames = list(range(1 if skip_first else 0, t))
        for v in range(b):
            assert_close(float(scores[v]), sklearn_fg_ari(pred[v], gt[v], frames))


def test_fg_ari_adversarial_cases_match_sklearn() -> None:
    t, h, w = 3, 4, 5
    n = t * h * w
    gt_multi = torch.arange(n).reshape(t, h, w) % 3 + 1
    cases = {
        "pred one cluster, gt several": (torch.zeros(t, h, w, dtype=torch.long), gt_multi),
        "both one cluster": (torch.full((t, h, w), 9), torch.full((t, h, w), 4)),
        "pred every pixel its own": (torch.arange(n).reshape(t, h, w), gt_multi),
        "gt every pixel its own, pred one": (
            torch.zeros(t, h, w, dtype=torch.long),
            torch.arange(1, n + 1).reshape(t, h, w),
        ),
        "both every pixel its own": (torch.arange(n).reshape(t, h, w) * 5, torch.arange(1, n + 1).reshape(t, h, w)),
        "permuted labels": ((gt_multi * 7) % 4, gt_multi),
        "split object": (torch.arange(n).reshape(t, h, w) % 6, gt_multi),
        "single foreground pixel": (
            torch.zeros(t, h, w, dtype=torch.long),
            torch.zeros(t, h, w, dtype=torch.long).index_put_(
                (torch.tensor([2]), torch.tensor([1]), torch.tensor([1])), torch.tensor(3)
            ),
        ),
        "two foreground pixels, split": (
            torch.arange(n).reshape(t, h, w),
            torch.zeros(t, h, w, dtype=torch.long).index_put_(
                (torch.tensor([1, 2]), torch.tensor([0, 3]), torch.tensor([0, 4])), torch.tensor(3)
            ),
        ),
    }
    for name, (pred, gt) in cases.items():
        for skip_first in (True, False):
            frames = list(range(1 if skip_first else 0, t))
            got = float(fg_ari(pred[None], gt[None], skip_first=skip_first)[0])
            expected = sklearn_fg_ari(pred, gt, frames)
            assert got == pytest.approx(expected, abs=1e-12), name
    # Sanity of the reference itself on the headline cases.
    both_one = cases["both one cluster"]
    assert float(fg_ari(both_one[0][None], both_one[1][None])[0]) == 1.0
    assert float(fg_ari(cases["permuted labels"][0][None], gt_multi[None])[0]) == 1.0
    assert float(fg_ari(cases["pred one cluster, gt several"][0][None], gt_multi[None])[0]) == 0.0


def test_fg_ari_empty_foreground_is_nan_and_excluded_from_means() -> None:
    gt = torch.zeros(3, 3, 4, 4, dtype=torch.long)
    gt[1, 1:, :2] = 1
    gt[1, 1:, 2:] = 2
    gt[2, 0] = 1  # foreground only in the skipped first frame
    pred = torch.randint(0, 3, gt.shape, generator=torch.Generator().manual_seed(1))
    pred[1] = gt[1]
    scores = fg_ari(pred, gt)
    assert math.isnan(float(scores[0])) and math.isnan(float(scores[2])) and float(scores[1]) == 1.0
    assert not math.isnan(float(fg_ari(pred, gt, skip_first=False)[2]))
    assert mean_over_videos(scores) == (1.0, 1)
    mean, count = mean_over_videos(torch.full((2,), math.nan))
    assert math.isnan(mean) and count == 0


def test_fg_ari_one_cluster_for_whole_video_penalises_identity_switch() -> None:
    gt = torch.zeros(1, 3, 2, 4, dtype=torch.long)
    gt[..., :2], gt[..., 2:] = 1, 2
    pred = gt.clone()
    pred[0, 2] = 3 - gt[0, 2]  # ids swap in the last frame: perfect per frame, not per video
    assert float(fg_ari(pred, gt)[0]) < 0.5
    per_frame = per_frame_fg_ari(pred, gt)
    assert math.isnan(float(per_frame[0, 0])) and torch.equal(per_frame[0, 1:], torch.ones(2, dtype=torch.float64))


def test_fg_ari_frame_mask_and_per_frame_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    gt = torch.from_numpy(rng.integers(0, 4, (2, 5, 4, 4)))
    pred = torch.from_numpy(rng.integers(0, 3, (2, 5, 4, 4)))
    frame_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    scores = fg_ari(pred, gt, frame_mask=frame_mask)
    assert_close(float(scores[0]), sklearn_fg_ari(pred[0], gt[0], [1, 2, 3, 4]))
    assert_close(float(scores[1]), sklearn_fg_ari(pred[1], gt[1], [1, 2]))
    per_frame = per_frame_fg_ari(pred, gt, skip_first=False, frame_mask=frame_mask)
    for v in range(2):
        for f in range(5):
            expected = sklearn_fg_ari(pred[v], gt[v], [f]) if frame_mask[v, f] else math.nan
            assert_close(float(per_frame[v, f]), expected)


def test_fg_ari_rejects_bad_input() -> None:
    ids = torch.zeros(1, 2, 3, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="differ in shape"):
        fg_ari(ids, torch.zeros(1, 2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        fg_ari(ids.float(), ids)
    with pytest.raises(ValueError, match=r"\[B,T,H,W\]"):
        fg_ari(ids[0], ids[0])
    with pytest.raises(ValueError, match="frame_mask"):
        fg_ari(ids, ids, frame_mask=torch.ones(1, 3, dtype=torch.bool))


def _frames(*frames: list[list[int]]) -> torch.Tensor:
    return torch.tensor(frames)[None]  # [1, T, H, W]


@pytest.mark.parametrize("device", DEVICES)
def test_miou_hand_checked(device: str) -> None:
    # Frame 0 is skipped; its content must not matter.
    gt = _frames(
        [[1, 1, 0], [2, 2, 0]],
        [[1, 1, 0], [2, 2, 0]],
        [[1, 0, 0], [0, 0, 0]],
    )
    pred = _frames(
        [[2, 2, 2], [2, 2, 2]],
        [[1, 0, 0], [2, 2, 2]],  # obj1: 1/2, obj2: 2/3
        [[1, 1, 0], [0, 0, 0]],  # obj1: 1/2, obj2 absent & predicted empty: 1
    )
    expected = ((0.5 + 0.5) / 2 + (2 / 3 + 1.0) / 2) / 2
    assert float(miou(pred.to(device), gt.to(device), num_objects=2)[0]) == pytest.approx(expected)
    per_frame = miou(pred.to(device), gt.to(device), num_objects=2, per_frame=True)
    assert math.isnan(float(per_frame[0, 0]))
    assert per_frame[0, 1:].tolist() == pytest.approx([(0.5 + 2 / 3) / 2, (0.5 + 1.0) / 2])
    # One stray pixel of an absent object zeroes that frame for that object.
    pred[0, 2, 0, 2] = 2
    expected_stray = ((0.5 + 0.5) / 2 + (2 / 3 + 0.0) / 2) / 2
    assert float(miou(pred, gt, num_objects=2)[0]) == pytest.approx(expected_stray)
    # Including frame 0: obj1 IoU 0 there (predicted id 2 everywhere), obj2 2/6.
    assert float(miou(pred, gt, num_objects=2, skip_first=False)[0]) == pytest.approx(
        ((0 + 0.5 + 0.5) / 3 + (2 / 6 + 2 / 3 + 0.0) / 3) / 2
    )


def test_miou_no_matching_and_counted_objects() -> None:
    gt = _frames([[1, 2]], [[1, 2]], [[1, 2]])
    swapped = _frames([[2, 1]], [[2, 1]], [[2, 1]])
    assert float(miou(swapped, gt, num_objects=2)[0]) == 0.0
    assert float(fg_ari(swapped, gt)[0]) == 1.0  # ARI is permutation invariant, mIoU is not
    assert float(miou(gt, gt, num_objects=2)[0]) == 1.0
    # Object 3 is never visible: ignored by default, counted (as 1.0 when predicted empty) by instance_mask.
    assert float(miou(gt, gt, num_objects=3)[0]) == 1.0
    pred = gt.clone()
    pred[0, 1, 0, 0] = 3
    assert float(miou(pred, gt, num_objects=3)[0]) == pytest.approx((0.5 + 1.0) / 2)
    mask = torch.tensor([[True, True, True]])
    assert float(miou(pred, gt, num_objects=3, instance_mask=mask)[0]) == pytest.approx((0.5 + 1 + 0.5) / 3)
    # An object seen only in the skipped first frame still counts: afterwards it must be predicted empty.
    gt_leaves = _frames([[1, 2]], [[1, 0]], [[1, 0]])
    assert float(miou(gt_leaves, gt_leaves, num_objects=2)[0]) == 1.0
    assert float(miou(gt, gt_leaves, num_objects=2)[0]) == pytest.approx((1.0 + 0.0) / 2)
    # Prediction ids outside 1..N (other slots) are ignored rather than rejected.
    odd = torch.where(gt == 0, torch.tensor(7), gt)
    assert float(miou(odd, gt, num_objects=2)[0]) == 1.0


def test_miou_frame_mask_empty_video_and_errors() -> None:
    gt = torch.tensor([[[[1]], [[1]], [[0]]], [[[0]], [[0]], [[0]]]])  # [2, 3, 1, 1]
    pred = torch.tensor([[[[1]], [[1]], [[1]]], [[[0]], [[0]], [[0]]]])
    assert float(miou(pred, gt, num_objects=1)[0]) == 0.5
    frame_mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = miou(pred, gt, num_objects=1, frame_mask=frame_mask)
    assert float(scores[0]) == 1.0 and math.isnan(float(scores[1]))  # video 1 has no object
    assert math.isnan(float(miou(pred[:, :1], gt[:, :1], num_objects=1)[0]))  # only the skipped frame
    with pytest.raises(ValueError, match="num_objects=1"):
        miou(pred, gt + 1, num_objects=1)
    with pytest.raises(ValueError, match="num_objects"):
        miou(pred, gt, num_objects=0)
    with pytest.raises(ValueError, match="instance_mask"):
        miou(pred, gt, num_objects=1, instance_mask=torch.ones(2, 2, dtype=torch.bool))


def test_miou_is_mean_of_per_frame_miou_on_random_batch() -> None:
    g = torch.Generator().manual_seed(5)
    gt = torch.randint(0, 5, (3, 6, 5, 5), generator=g)
    pred = torch.randint(0, 6, (3, 6, 5, 5), generator=g)
    frame_mask = torch.rand(3, 6, generator=g) > 0.3
    frame_mask[:, :2] = True
    scores = miou(pred, gt, num_objects=4, frame_mask=frame_mask)
    per_frame = miou(pred, gt, num_objects=4, frame_mask=frame_mask, per_frame=True)
    assert torch.allclose(scores, torch.nanmean(per_frame, dim=1))
    # Batched result equals video-by-video evaluation.
    for v in range(3):
        single = miou(pred[v : v + 1], gt[v : v + 1], num_objects=4, frame_mask=frame_mask[v : v + 1])
        assert torch.allclose(single, scores[v : v + 1])


def test_fg_ari_dense_and_sparse_contingency_agree() -> None:
    # Small non-negative ids use a dense table; shifting the prediction ids far below zero keeps the
    # partition but forces the sparse path. Both must equal sklearn.
    g = torch.Generator().manual_seed(11)
    gt = torch.randint(0, 6, (4, 5, 6, 6), generator=g)
    pred = torch.randint(0, 8, (4, 5, 6, 6), generator=g)
    dense = fg_ari(pred, gt)
    sparse = fg_ari(pred - 10**12, gt)
    assert torch.allclose(dense, sparse, rtol=0, atol=1e-12)
    for v in range(4):
        assert_close(float(dense[v]), sklearn_fg_ari(pred[v], gt[v], [1, 2, 3, 4]))


def test_known_objects_ids_is_the_ceiling_of_a_box_protocol() -> None:
    """Object 1 on every frame, object 2 from frame 2 (of 4; frames 1-3 scored): a perfect tracker never told
    of object 2 gets it right only on frame 1 (absent, predicted empty): 1/3; told on frame 2, 1.0; told on
    frame 3 it misses frame 2: 2/3."""
    gt = torch.zeros(1, 4, 2, 2, dtype=torch.long)
    gt[:, :, 0, 0] = 1
    gt[:, 2:, 1, 1] = 2
    never = known_objects_ids(gt, torch.tensor([[0, -1]]))
    assert torch.equal(never, torch.where(gt == 2, 0, gt))
    assert float(miou(never, gt, 2)) == pytest.approx((1 + 1 / 3) / 2)
    assert float(miou(known_objects_ids(gt, torch.tensor([[0, 2]])), gt, 2)) == pytest.approx(1.0)
    assert float(miou(known_objects_ids(gt, torch.tensor([[0, 3]])), gt, 2)) == pytest.approx((1 + 2 / 3) / 2)
