"""The gate: an attention-logit bias that keeps each anchored track's slot near its object; the Tracker holds
a `Gate` for its model and asks it for the bias every step."""

from __future__ import annotations

from typing import Optional, Protocol

import numpy as np
import torch

from savi_core.model.config import ModelConfig

GATE_BIAS = -1e4  # attention logit added outside a slot's gate: its softmax share there is nil


class Gated(Protocol):
    """What the gate reads of a track: its box, velocity, anchor size and frames lost."""

    box: np.ndarray
    velocity: np.ndarray
    anchor_size: Optional[tuple[float, float]]
    lost_frames: int


def gate_bias(
    gated: list[tuple[int, Gated]],
    margin: float,
    num_slots: int,
    cell: float,
    cell_y: torch.Tensor,
    cell_x: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Attention-logit bias ``[1, K, h, w]`` at the feature resolution (cell centres ``cell_y``, ``cell_x``)
    keeping each ``(slot index, track)`` of ``gated`` inside its gate (``gate_margin``, never under one
    cell ``cell``); other slots see the whole image.

    A slot's state follows whatever it attends to, so a slot that attends to a neighbouring object of
    similar looks, or to the background, moves there for good; the gate bounds that to the margin."""
    bounds = [[-1.0, -1.0, 2.0, 2.0]] * num_slots  # ymin, xmin, ymax, xmax
    for slot, track in gated:
        frames = 1 + track.lost_frames
        x0, y0, x1, y1 = track.box
        cx, cy = (x0 + x1) / 2 + track.velocity[0], (y0 + y1) / 2 + track.velocity[1]
        # Never smaller than the anchor box: a partly hidden object's mask box shrinks, the object does not.
        half_w = max(x1 - x0, track.anchor_size[0]) / 2
        half_h = max(y1 - y0, track.anchor_size[1]) / 2
        grow = max(margin * frames * 2 * max(half_w / width, half_h / height), cell)
        bounds[slot] = [
            float(v)
            for v in (
                (cy - half_h) / height - grow,
                (cx - half_w) / width - grow,
                (cy + half_h) / height + grow,
                (cx + half_w) / width + grow,
            )
        ]
    b = torch.tensor(bounds, dtype=torch.float32).view(-1, 4, 1, 1)  # one conversion for all slots
    # Rows and columns tested apart, then combined once over the grid.
    inside = ((cell_y >= b[:, 0]) & (cell_y < b[:, 2])) & ((cell_x >= b[:, 1]) & (cell_x < b[:, 3]))
    return torch.where(inside, 0.0, GATE_BIAS).unsqueeze(0)


class Gate:
    """A model's feature-cell grid (cell centres, normalised) on ``device``, for `gate_bias` over its slots."""

    def __init__(self, config: ModelConfig, device: torch.device) -> None:
        self._device = device
        self._num_slots = config.num_slots
        self._offset = int(config.initializer.background_slot)
        stride = config.encoder.stride
        fh, fw = config.resolution[0] // stride, config.resolution[1] // stride
        self._cell_y = ((torch.arange(fh) + 0.5) / fh).view(1, fh, 1)  # feature-cell centres, normalised
        self._cell_x = ((torch.arange(fw) + 0.5) / fw).view(1, 1, fw)
        self._cell = 1.0 / min(fh, fw)  # the least a gate grows: a box smaller than a cell still holds one

    def bias(self, tracks: dict[int, Gated], margin: float, height: int, width: int) -> Optional[torch.Tensor]:
        """The bias for the anchored ones of ``tracks`` (object slot -> track) in a ``height x width`` image,
        on the device, or None with the gate off (``margin`` 0) or no anchored track."""
        gated = [(slot + self._offset, t) for slot, t in tracks.items() if t.anchor_size is not None]
        if not margin or not gated:
            return None
        bias = gate_bias(gated, margin, self._num_slots, self._cell, self._cell_y, self._cell_x, height, width)
        return bias.to(self._device)
