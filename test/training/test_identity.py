"""ID switches and IDF1 (motmetrics) on id maps with a known answer."""

import math

import torch

from training.identity import identity_counts, identity_summary


def two_objects(frames: int = 5) -> torch.Tensor:
    gt = torch.zeros(1, frames, 8, 8, dtype=torch.long)
    gt[0, :, 0:4, 0:4] = 1
    gt[0, :, 4:8, 4:8] = 2
    return gt


def test_perfect_tracking_has_no_switches_and_idf1_one():
    gt = two_objects()
    summary = identity_summary(identity_counts(gt.clone(), gt))
    assert summary == {"idf1": 1.0, "id_switches": 0, "object_frames": 8, "id_switches_per_100": 0.0}


def test_swapped_ids_count_two_switches_and_lower_idf1():
    gt = two_objects()
    pred = gt.clone()
    pred[0, 3:] = torch.where(gt[0, 3:] == 1, 2, torch.where(gt[0, 3:] == 2, 1, 0))  # swap from frame 3 on
    summary = identity_summary(identity_counts(pred, gt))
    assert summary["id_switches"] == 2 and summary["object_frames"] == 8
    assert math.isclose(summary["idf1"], 0.5)  # 4 of 8 object-frames keep the id the matching prefers
    assert math.isclose(summary["id_switches_per_100"], 25.0)


def test_a_mask_under_half_overlap_is_a_miss_not_a_match():
    gt = two_objects(frames=2)
    pred = torch.zeros_like(gt)
    pred[0, :, 0:2, 0:2] = 1  # IoU 0.25 with object 1
    counts = identity_counts(pred, gt)
    assert counts["idtp"] == 0 and counts["idfn"] == 2 and counts["idfp"] == 1
