"""How a detection's or a person's box, point or mask conditions a slot, for the kind of initializer the model
has (boxes, centres of mass, segmentations): the model-constant part of starting a track, apart from the
Tracker's rules about when a track starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
from torch import nn

from savi_core.model.initializers import Conditioning
from savi_core.tracking.datatypes import Prompt
from savi_core.tracking.geometry import boxes_xyxy_to_yxyx


@dataclass
class Start:
    """What conditions a slot this step: always a box (association, the lost rule), and the point or mask
    the box came from, which conditions the slot instead when the model takes it."""

    box: np.ndarray
    point: Optional[tuple[float, float]] = None
    mask: Optional[np.ndarray] = None


def prompt_start(prompt: Prompt, height: int, width: int) -> Optional[Start]:
    """A prompt on this image: its box (a point's is the pixel it falls in), or None when it lies
    outside the image (or a mask is not of the image's size)."""
    if prompt.mask is not None:
        if prompt.mask.shape != (height, width):
            return None
        ys, xs = np.nonzero(prompt.mask)
        return Start(
            np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64), mask=prompt.mask.astype(bool)
        )
    if prompt.point_xy is not None:
        x, y = prompt.point_xy
        if not (0 <= x < width and 0 <= y < height):
            return None
        return Start(np.array([np.floor(x), np.floor(y), np.floor(x) + 1, np.floor(y) + 1]), point=(x, y))
    box = np.clip(np.asarray(prompt.box_xyxy, np.float64), 0.0, [width, height, width, height])
    return Start(box) if box[2] > box[0] and box[3] > box[1] else None


class SlotConditioning:
    """The conditioning of ``model``'s object slots on ``device``: its initializer kind, whether it was trained
    on points, its object slot count and resolution (and, for segmentation models, the pixel-centre grids)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device = device
        self.init_kind = model.config.initializer.kind
        self._takes_points = model.config.initializer.points
        self._num_objects = model.num_object_slots
        self._resolution = tuple(model.config.resolution)
        if self.init_kind == "segmentation":
            h, w = self._resolution
            self._pixel_y = ((torch.arange(h, device=self.device) + 0.5) / h).view(1, h, 1)
            self._pixel_x = ((torch.arange(w, device=self.device) + 0.5) / w).view(1, 1, w)

    @property
    def prompt_kinds(self) -> tuple[str, ...]:
        """What `add_objects` takes for this model. Boxes and masks always (a mask reaches a box model as
        its tight box, a centre-of-mass model as its centre of mass); points when the model was trained on
        centres of mass, or on points as zero-size boxes (``initializer.points``)."""
        points = self.init_kind == "com" or (self.init_kind == "bbox" and self._takes_points)
        return ("boxes", "points", "masks") if points else ("boxes", "masks")

    def check_prompts(self, prompts: list[Prompt]) -> None:
        """ValueError naming the first prompt this model cannot take, or that is not a finite non-empty box,
        a finite point or a non-empty 2-D mask."""
        for index, prompt in enumerate(prompts):
            given = [v is not None for v in (prompt.box_xyxy, prompt.point_xy, prompt.mask)]
            if sum(given) != 1:
                raise ValueError(f"prompt {index}: give exactly one of a box, a point or a mask")
            if prompt.kind not in self.prompt_kinds:
                raise ValueError(
                    f"prompt {index}: this model takes {' and '.join(self.prompt_kinds)}, not "
                    f"{prompt.kind} (its initializer is {self.init_kind!r})"
                )
            if prompt.box_xyxy is not None:
                box = np.asarray(prompt.box_xyxy, np.float64)
                if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                    raise ValueError(f"prompt {index}: a box must be 4 finite numbers x0 < x1, y0 < y1 (pixels)")
            elif prompt.point_xy is not None:
                point = np.asarray(prompt.point_xy, np.float64)
                if point.shape != (2,) or not np.isfinite(point).all():
                    raise ValueError(f"prompt {index}: a point must be 2 finite numbers (x, y) in pixels")
            elif prompt.mask.ndim != 2 or not prompt.mask.any():
                raise ValueError(f"prompt {index}: a mask must be a 2-D array with at least one pixel set")

    def conditioning(
        self, starts: dict[int, Start], height: int, width: int, features: Optional[torch.Tensor]
    ) -> Conditioning:
        """Conditioning for all object slots; only ``starts``' slots are conditioned (the rest get -1).
        Box models: a box, or a point as the zero-size box ``(y, x, y, x)``; centre-of-mass models: the
        point, the mask's centre of mass or the box's centre; segmentation models: the mask, or the box
        filled, at the model resolution (later slots drawn on top). ``features``: the frame's, for models
        whose slots start from them."""
        yxyx = torch.full((1, self._num_objects, 4), -1.0)
        conditioned = torch.zeros(1, self._num_objects)
        conditioned[0, list(starts)] = 1.0
        size = torch.tensor([height, width, height, width], dtype=torch.float32)
        boxed = []  # slots conditioned by their box: converted together below
        for slot, start in starts.items():
            if start.point is not None:
                x, y = start.point
                yxyx[0, slot] = torch.tensor([y, x, y, x], dtype=torch.float32) / size
            elif start.mask is not None and self.init_kind == "com":
                ys, xs = np.nonzero(start.mask)
                y, x = ys.mean() + 0.5, xs.mean() + 0.5
                yxyx[0, slot] = torch.tensor([y, x, y, x], dtype=torch.float32) / size
            else:
                boxed.append(slot)
        if boxed:
            pixels = torch.as_tensor(np.stack([starts[slot].box for slot in boxed]), dtype=torch.float32)
            yxyx[0, boxed] = boxes_xyxy_to_yxyx(pixels, height, width)
        yxyx, conditioned = yxyx.to(self.device), conditioned.to(self.device)
        cond = Conditioning(conditioned=conditioned, features=features)
        if self.init_kind == "bbox":
            cond.boxes = yxyx
        elif self.init_kind == "com":
            cond.centers = (yxyx[..., :2] + yxyx[..., 2:]) / 2
        else:
            b = yxyx[0].view(-1, 4, 1, 1)
            inside = (
                (self._pixel_y >= b[:, 0])
                & (self._pixel_y < b[:, 2])
                & (self._pixel_x >= b[:, 1])
                & (self._pixel_x < b[:, 3])
            )
            for slot, start in starts.items():
                if start.mask is not None:
                    small = cv2.resize(
                        start.mask.astype(np.uint8), self._resolution[::-1], interpolation=cv2.INTER_NEAREST
                    )
                    inside[slot] = torch.from_numpy(small > 0).to(self.device)
            ids = torch.arange(1, self._num_objects + 1, device=self.device).view(-1, 1, 1)
            cond.segmentation = (inside * ids).amax(dim=0, keepdim=True)
        return cond
