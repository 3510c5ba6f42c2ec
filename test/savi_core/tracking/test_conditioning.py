"""The conditioning of slots from starts: boxes of several slots converted together give each slot the numbers
its own box gives, beside points in other slots."""

import numpy as np
import torch

from savi_core.model.config import tiny_config
from savi_core.model.savi import SAVi
from savi_core.tracking.conditioning import SlotConditioning, Start
from savi_core.tracking.geometry import boxes_xyxy_to_yxyx


def test_boxes_converted_together_give_each_slot_its_own_box_and_points_stay_points():
    model = SAVi(tiny_config(num_slots=6, kind="bbox", points=True)).eval()
    conditioner = SlotConditioning(model, torch.device("cpu"))
    height, width = 37, 53
    starts = {
        4: Start(np.array([3.3, 1.7, 20.9, 30.2])),
        0: Start(np.array([0.0, 0.0, 53.0, 37.0])),
        2: Start(np.array([10.0, 11.0, 11.0, 12.0]), point=(10.4, 11.6)),
        1: Start(np.array([40.1, 2.2, 52.7, 36.9])),
    }
    cond = conditioner.conditioning(starts, height, width, None)
    for slot in (4, 0, 1):
        alone = boxes_xyxy_to_yxyx(torch.as_tensor(starts[slot].box, dtype=torch.float32), height, width)
        assert torch.equal(cond.boxes[0, slot], alone)
    point = torch.tensor([11.6, 10.4, 11.6, 10.4]) / torch.tensor([height, width, height, width], dtype=torch.float32)
    assert torch.equal(cond.boxes[0, 2], point)
    assert torch.equal(cond.boxes[0, 3], torch.full((4,), -1.0))
    assert cond.conditioned.tolist() == [[1.0, 1.0, 1.0, 0.0, 1.0]]
