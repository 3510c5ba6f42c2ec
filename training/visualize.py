"""Images for TensorBoard: one clip's frames, target, reconstruction and slot masks in a grid."""

from __future__ import annotations

import colorsys

import torch
import torch.nn.functional as F


def palette(num_colors: int) -> torch.Tensor:
    """``[K, 3]`` distinct colours in [0, 1]; colour 0 (the background slot) is dark grey."""
    colors = [(0.25, 0.25, 0.25)]
    colors += [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95) for i in range(max(0, num_colors - 1))]
    return torch.tensor(colors[:num_colors], dtype=torch.float32)


def masks_to_rgb(masks: torch.Tensor) -> torch.Tensor:
    """Slot masks ``[T, K, H, W]`` (summing to 1 over K) -> the argmax slot's colour ``[T, 3, H, W]``."""
    colors = palette(masks.shape[1]).to(masks.device)
    return colors[masks.argmax(dim=1)].permute(0, 3, 1, 2)


def clip_image(batch: dict[str, torch.Tensor], output, index: int = 0) -> torch.Tensor:
    """Rows video / target / reconstruction / masks of clip ``index``, frames side by side: ``[3, 4H, TW]``
    (a model without a decoder, or one reconstructing features, shows its masks in the reconstruction's row too)."""
    video = batch["video"][index].detach().float()
    size = video.shape[-2:]

    def at_input_size(x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="nearest")

    masks = at_input_size(masks_to_rgb(output.masks[index].detach().float()))
    reconstruction = (
        masks
        if output.reconstruction is None or output.reconstruction.shape[-3] != 3  # features are no picture
        else at_input_size(output.reconstruction[index].detach().float()).clamp(0, 1)
    )
    rows = [video, batch["target"][index].detach().float(), reconstruction, masks]
    grid = torch.cat([torch.cat(list(row), dim=-1) for row in rows], dim=-2)  # [3, 4H, TW]
    return grid.cpu()
