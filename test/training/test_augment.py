import pytest
import torch

from savi_core.tracking.geometry import resize_frames
from training.augment import camera_resample


def _videos(b: int, t: int = 2, size: int = 16) -> torch.Tensor:
    """Sharp-edged frames: random squares of flat colour on black."""
    g = torch.Generator().manual_seed(1)
    video = torch.zeros(b, t, 3, size, size)
    for i in range(b):
        y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
        video[i, :, :, y : y + size // 2, x : x + size // 2] = torch.rand(3, 1, 1, generator=g)
    return video


def _edge_strength(video: torch.Tensor) -> torch.Tensor:
    return (video[..., 1:, :] - video[..., :-1, :]).abs().amax(dim=(-1, -2, -3, -4))


def test_probability_0_leaves_the_batch_alone():
    video = _videos(3)
    assert camera_resample(video, 0.0, 5.0) is video


def test_scale_1_only_quantises_to_8_bits_like_a_camera():
    video = torch.rand(2, 2, 3, 8, 8)
    out = camera_resample(video, 1.0, 1.0)
    assert torch.equal(out, (video * 255).round() / 255)


def test_resampled_videos_keep_their_size_and_range_with_softer_edges():
    video = _videos(6)
    out = camera_resample(video, 1.0, 5.0, torch.Generator().manual_seed(0))
    assert out.shape == video.shape and out.min() >= 0 and out.max() <= 1
    assert (_edge_strength(out) < _edge_strength(video) - 0.01).all()


def test_about_that_share_of_videos_is_resampled():
    video = _videos(400, t=1, size=8)
    out = camera_resample(video, 0.5, 5.0, torch.Generator().manual_seed(0))
    changed = (out - video).abs().flatten(1).amax(dim=1) > 1e-3
    assert 0.4 < changed.float().mean() < 0.6


@pytest.mark.parametrize(
    "probability, max_scale, match", [(-0.1, 2.0, "probability"), (1.1, 2.0, "probability"), (0.5, 0.9, "max_scale")]
)
def test_bad_arguments_are_refused(probability, max_scale, match):
    with pytest.raises(ValueError, match=match):
        camera_resample(_videos(1), probability, max_scale)


def test_resize_frames_keeps_leading_axes_and_antialiases_when_shrinking():
    checker = ((torch.arange(48)[:, None] + torch.arange(48)[None, :]) % 2).float()
    frames = checker.expand(2, 5, 3, 48, 48)
    small = resize_frames(frames, (16, 16))
    assert small.shape == (2, 5, 3, 16, 16)
    # A 3x shrink samples whole pixels: plain bilinear would give a 0/1 checkerboard again.
    assert torch.allclose(small, torch.full_like(small, 0.5), atol=0.01)
    assert resize_frames(frames, (48, 48)) is frames
    assert resize_frames(small, (32, 32)).shape == (2, 5, 3, 32, 32)
