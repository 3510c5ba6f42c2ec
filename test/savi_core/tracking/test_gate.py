"""The gate's bias: bounds gathered for all slots and one conversion give the bits of per-slot tensors."""

from types import SimpleNamespace

import numpy as np
import torch

from savi_core.tracking.gate import GATE_BIAS, gate_bias


def _reference(gated, margin, num_slots, cell, cell_y, cell_x, height, width):
    """The gate as defined per slot: each slot's bounds as its own tensor, the four tests over the grid."""
    bounds = torch.tensor([[-1.0, -1.0, 2.0, 2.0]]).repeat(num_slots, 1)
    for slot, track in gated:
        x0, y0, x1, y1 = track.box
        cx, cy = (x0 + x1) / 2 + track.velocity[0], (y0 + y1) / 2 + track.velocity[1]
        half_w = max(x1 - x0, track.anchor_size[0]) / 2
        half_h = max(y1 - y0, track.anchor_size[1]) / 2
        grow = max(margin * (1 + track.lost_frames) * 2 * max(half_w / width, half_h / height), cell)
        bounds[slot] = torch.tensor(
            [(cy - half_h) / height - grow, (cx - half_w) / width - grow, (cy + half_h) / height + grow,
             (cx + half_w) / width + grow]
        )  # fmt: skip
    b = bounds.view(-1, 4, 1, 1)
    inside = (cell_y >= b[:, 0]) & (cell_y < b[:, 2]) & (cell_x >= b[:, 1]) & (cell_x < b[:, 3])
    return torch.where(inside, 0.0, GATE_BIAS).unsqueeze(0)


def test_gate_bias_gives_the_bits_of_the_per_slot_definition():
    rng = np.random.default_rng(5)
    fh, fw, height, width = 32, 40, 480, 640
    cell_y = ((torch.arange(fh) + 0.5) / fh).view(1, fh, 1)
    cell_x = ((torch.arange(fw) + 0.5) / fw).view(1, 1, fw)
    gated = []
    for slot, dtype in zip((1, 3, 4, 7), (np.float64, np.float32, np.float64, np.float32)):
        x0, y0 = rng.uniform(0, 500), rng.uniform(0, 380)
        box = np.array([x0, y0, x0 + rng.uniform(1, 140), y0 + rng.uniform(1, 100)], dtype)
        track = SimpleNamespace(
            box=box,
            velocity=(float(rng.normal(0, 3)), float(rng.normal(0, 3))),
            anchor_size=(float(rng.uniform(1, 120)), float(rng.uniform(1, 90))),
            lost_frames=int(rng.integers(0, 3)),
        )
        gated.append((slot, track))
    args = (gated, 0.25, 9, 1 / 32, cell_y, cell_x, height, width)
    bias = gate_bias(*args)
    assert torch.equal(bias, _reference(*args))
    assert (bias[0, 1] == 0).any() and (bias[0, 1] == GATE_BIAS).any()  # a gate, not the whole image
