"""DAVIS J&F (vos-benchmark) on id maps with a known answer."""

import math

import pytest
import torch

from training.davis import davis_scores, davis_summary


def two_squares(frames: int = 4) -> torch.Tensor:
    gt = torch.zeros(1, frames, 32, 32, dtype=torch.long)
    gt[0, :, 4:12, 4:12] = 1  # 8 x 8
    gt[0, :, 20:30, 20:30] = 2  # 10 x 10
    return gt


def test_a_perfect_prediction_scores_one():
    gt = two_squares()
    assert davis_summary(davis_scores(gt, gt)) == {"j": 1.0, "f": 1.0, "j_and_f": 1.0}


def test_a_lost_object_scores_zero_for_that_object_only():
    gt = two_squares()
    pred = torch.where(gt == 2, torch.zeros_like(gt), gt)
    scores = davis_scores(pred, gt)
    assert scores == {"j": [1.0, 0.0], "f": [1.0, 0.0]}
    assert davis_summary(scores)["j_and_f"] == 0.5


def test_a_one_pixel_shift_costs_iou_but_not_the_boundary_within_its_tolerance():
    gt = two_squares()
    summary = davis_summary(davis_scores(torch.roll(gt, 1, dims=-1), gt))
    assert math.isclose(summary["j"], (56 / 72 + 90 / 110) / 2)  # 8x8: 56 of 72 pixels; 10x10: 90 of 110
    assert summary["f"] == 1.0  # tolerance: ceil(0.8% of the 45-pixel diagonal) = 1 pixel


def test_only_scored_frames_count():
    gt = two_squares(frames=3)
    pred = gt.clone()
    pred[0, 0] = 0  # wrong on the conditioned first frame, which is skipped
    assert davis_summary(davis_scores(pred, gt))["j_and_f"] == 1.0
    assert davis_summary(davis_scores(pred, gt, skip_first=False))["j"] == pytest.approx(2 / 3)
    pred[0, 2] = 0  # wrong on a padded frame that the frame mask excludes
    assert davis_summary(davis_scores(pred, gt, torch.tensor([[True, True, False]])))["j_and_f"] == 1.0


def test_no_object_gives_nan_and_mismatched_shapes_are_refused():
    empty = torch.zeros(1, 3, 8, 8, dtype=torch.long)
    assert math.isnan(davis_summary(davis_scores(empty, empty))["j_and_f"])
    with pytest.raises(ValueError, match=r"\[B,T,H,W\]"):
        davis_scores(empty, empty[:, :2])


def test_an_object_seen_only_on_the_skipped_first_frame_is_not_scored():
    gt = two_squares(frames=3)
    gt[0, 1:][gt[0, 1:] == 2] = 0  # object 2 leaves after the conditioned frame
    pred = gt.clone()
    pred[0, 1:, 20:30, 20:30] = 2  # ... and is still painted where it was
    assert davis_scores(pred, gt) == {"j": [1.0], "f": [1.0]}  # mIoU would score object 2 at 0
