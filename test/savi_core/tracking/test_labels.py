"""The camera side of a step: guided masks put a coarse, bleeding feature-grid mask back on the image's edges."""

import torch
import torch.nn.functional as F

from savi_core.model.savi import upsample_attention
from savi_core.tracking.labels import guided_masks


def _iou(mask: torch.Tensor, truth: torch.Tensor) -> float:
    return float((mask & truth).sum() / (mask | truth).sum())


def test_guided_masks_recover_an_object_from_attention_that_bleeds_two_cells_around_it() -> None:
    """The attention of the prototype models comes at a stride-4 grid, bleeds a cell or two past the object
    and peaks below 1 (measured on the dev videos: most of the lost mIoU lay within 4 pixels of the edges).
    The guided filter's window must span that ramp to find the colour edge inside it: here an off-grid
    ellipse on a plain background, whose attention is its grid-pooled mask blurred over 5x5 cells at 0.8,
    comes back exactly, where bilinear upsampling of the same attention misses a fifth of it."""
    h, w = 128, 160
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    truth = ((ys - 61.3) / 23.0) ** 2 + ((xs - 83.7) / 31.0) ** 2 <= 1
    colours = torch.tensor([0.8, 0.3, 0.2]).view(3, 1, 1), torch.tensor([0.3, 0.5, 0.6]).view(3, 1, 1)
    noise = 0.03 * torch.randn(3, h, w, generator=torch.Generator().manual_seed(0))
    frame = (torch.where(truth, *colours) + noise).clamp(0, 1)
    pooled = F.interpolate(truth.float()[None, None], size=(h // 4, w // 4), mode="area")
    obj = 0.8 * F.avg_pool2d(pooled, 5, 1, 2, count_include_pad=False)[0, 0]
    attention = torch.stack([1 - obj, obj])  # background slot 0, the tracked object in slot 1

    guided = guided_masks(attention, frame, [1], grid=True)[1] > 0.5
    bilinear = upsample_attention(attention[None], (h, w))[0, 1] > 0.5

    assert _iou(guided, truth) > 0.99
    assert _iou(bilinear, truth) < 0.8


def test_guided_masks_come_at_the_camera_size_up_to_twice_the_model_resolution() -> None:
    """Applied to the camera image, the masks come at its size (a 320x240 camera for a 128x160 model) or,
    for larger cameras, at the largest size of the same aspect within twice the model resolution; each
    pixel's planes still sum to 1."""
    from savi_core.tracking.labels import guided_size

    assert guided_size((240, 320), (128, 160)) == (240, 320)
    assert guided_size((480, 640), (128, 160)) == (240, 320)
    assert guided_size((720, 1280), (128, 160)) == (180, 320)
    assert guided_size((64, 64), (128, 160)) == (64, 64)
    attention = torch.softmax(torch.randn(1, 5, 32, 40, generator=torch.Generator().manual_seed(1)), dim=1)[0]
    frame = torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(2))
    camera = F.interpolate(frame[None], size=(480, 640), mode="bilinear")[0].permute(1, 2, 0).contiguous().numpy()
    masks = guided_masks(attention, frame, [1, 3], grid=True, camera=camera)
    assert masks.shape == (5, 240, 320)
    assert torch.allclose(masks.sum(0), torch.ones(240, 320), atol=1e-5)
    assert masks[[2, 4]].abs().sum() == 0  # untracked slots other than the rest's hold nothing
