"""The guided filter with exposed coefficients (`savi_core.tracking.guided_filter`): OpenCV's filter at one
resolution, and edges finer than its fitting resolution when applied to a larger guide."""

import cv2
import numpy as np

from savi_core.tracking import guided_filter


def test_fitted_and_applied_at_one_resolution_it_is_opencvs_guided_filter() -> None:
    rng = np.random.default_rng(0)
    guide = rng.random((3, 40, 56), dtype=np.float32)
    planes = rng.random((4, 40, 56), dtype=np.float32)
    ours = guided_filter.apply(guided_filter.coefficients(guide, planes, 5, 1e-3), guide)
    hwc = lambda a: np.ascontiguousarray(a.transpose(1, 2, 0))  # noqa: E731
    opencv = cv2.ximgproc.guidedFilter(hwc(guide), hwc(planes), 5, 1e-3)
    assert ours.shape == planes.shape
    np.testing.assert_allclose(hwc(ours), opencv, atol=1e-5)


def test_applied_to_a_finer_guide_the_mask_edge_lands_on_the_fine_edge() -> None:
    """A small object whose edges fall inside coarse pixels: fitted on the 4x coarser image and mask, the
    coefficients applied to the fine image put the mask on the object; the coarse result resampled
    bilinearly does not."""
    truth = np.zeros((64, 64), bool)
    truth[21:28, 37:43] = True  # 7 x 6 pixels, under 2 x 2 coarse ones, off their grid
    fine = np.where(truth, np.float32(0.8), np.float32(0.2))[None].repeat(3, 0)
    coarse = np.stack([cv2.resize(c, (16, 16), interpolation=cv2.INTER_AREA) for c in fine])
    soft = cv2.resize(truth.astype(np.float32), (16, 16), interpolation=cv2.INTER_AREA)[None]  # its coarse mask
    fit = guided_filter.coefficients(coarse, soft, 2, 1e-4)
    sharp = guided_filter.apply(fit, fine)[0] > 0.5
    resampled = cv2.resize(guided_filter.apply(fit, coarse)[0], (64, 64), interpolation=cv2.INTER_LINEAR) > 0.5
    assert np.array_equal(sharp, truth)
    assert (resampled != truth).sum() >= 10
