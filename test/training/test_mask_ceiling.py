"""The mask path's ceiling (training.mask_ceiling): perfect grid attention through the Tracker's mask path."""

import numpy as np
import pytest

from training.mask_ceiling import feature_grid, grid_ceiling_ids


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _scene(height: int = 32, width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Two frames: a red rectangle aligned to 4-pixel cells and a blue one that is not, on grey."""
    ids = np.zeros((2, height, width), np.int64)
    ids[:, 4:16, 8:20] = 1
    ids[:, 18:29, 21:34] = 2
    images = np.full((2, height, width, 3), 90, np.uint8)
    images[ids == 1] = (220, 30, 30)
    images[ids == 2] = (30, 30, 220)
    return ids, images


def test_the_grid_rounds_up_as_same_convolutions_do():
    assert feature_grid((128, 160), 4) == (32, 40)
    assert feature_grid((130, 161), 4) == (33, 41)
    assert feature_grid((32, 40), 1) == (32, 40)


def test_at_the_cameras_own_grid_the_ceiling_is_the_truth():
    ids, images = _scene()
    out = grid_ceiling_ids(ids, images, (32, 40), (32, 40), guided=False, threshold=0.5)
    assert np.array_equal(out, ids)


def test_a_coarse_grid_keeps_cell_aligned_edges_and_loses_the_others_unless_guided():
    ids, images = _scene()
    bilinear = grid_ceiling_ids(ids, images, (32, 40), (8, 10), guided=False, threshold=0.5)
    # Cell shares of 0 and 1 resampled bilinearly put an edge half-way between cell centres, on the cells' edge:
    # the aligned rectangle comes back but for its four corner pixels (0.625 squared is under a half).
    missed = (ids == 1) & (bilinear != 1)
    assert not ((bilinear == 1) & (ids != 1)).any() and missed[0].sum() == 4
    assert _iou(bilinear == 2, ids == 2) < _iou(bilinear == 1, ids == 1) < 1.0
    guided = grid_ceiling_ids(ids, images, (32, 40), (8, 10), guided=True, threshold=0.5)
    # The filter moves the shared cells' edges onto the colour edge.
    assert _iou(guided == 2, ids == 2) > _iou(bilinear == 2, ids == 2)


def test_an_object_thinner_than_a_cell_is_lost_and_empty_frames_stay_empty():
    ids = np.zeros((2, 32, 40), np.int64)
    ids[0, 10:22, 20] = 1  # one pixel wide: under a quarter of every cell
    images = np.full((2, 32, 40, 3), 90, np.uint8)
    out = grid_ceiling_ids(ids, images, (32, 40), (8, 10), guided=False, threshold=0.5)
    assert not out.any()


def test_mismatched_shapes_are_refused():
    ids, images = _scene()
    with pytest.raises(ValueError, match="must share"):
        grid_ceiling_ids(ids[:1], images, (32, 40), (8, 10), guided=False, threshold=0.5)
