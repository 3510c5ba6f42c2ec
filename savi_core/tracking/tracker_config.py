"""The Tracker's parameters: each one's name, type, default, allowed values and description, defined once.

The ROS node declares exactly these (plus its own node-level ones, defined the same way in
``savi_ros.params``), ``config/tracker.yaml`` and the parameter table of ``docs/INTERFACE.md`` are
rendered from them, and a test checks that all of them agree. The defaults are the ones users get.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from savi_core.model.savi import MASK_SOURCES

PRECISIONS = ("fp32", "fp16", "bf16")
REINIT_MODES = ("add_new", "refresh", "first")
MASK_EDGES = ("auto", "guided", "bilinear")


def parameter(default: Any, description: str, choices: tuple[str, ...] = (), live: bool = False) -> Any:
    """A dataclass field carrying its user-facing description, for strings its allowed values, and whether a
    running node applies a new value at once (``live``) or on its next configure transition."""
    return field(default=default, metadata={"description": description, "choices": choices, "live": live})


@dataclass
class TrackerConfig:
    """Tracker behaviour (the rules are in docs/INTERFACE.md, "How tracks start, live and end").

    Invalid values raise ValueError naming the field.
    """

    precision: str = parameter("fp32", "fp32 | fp16 (CUDA only) | bf16", PRECISIONS)
    mask_source: str = parameter(
        "attention",
        "attention (corrector attention: faster, and the better masks of the pixel-trained models) | "
        "decoder (decoder alpha masks, as in the paper; a model without a decoder, such as the default, "
        "gives its attention either way)",
        MASK_SOURCES,
        live=True,
    )
    score_threshold: float = parameter(0.3, "detections scoring below this are ignored, in [0, 1]", live=True)
    class_ids: tuple[str, ...] = parameter(
        (), "allow-list of detection class ids, e.g. [person, car]; empty = all classes", live=True
    )
    max_tracks: int = parameter(10, "most tracks alive at once (also capped by the model's object slots)")
    reinit: str = parameter(
        "add_new",
        "add_new (later detections start new tracks) | refresh (as add_new, and a "
        "detection of a live track re-anchors it from the box, same id) | first (only the first "
        "detections)",
        REINIT_MODES,
        live=True,
    )
    new_object_iou: float = parameter(
        0.3, "a detection overlapping a live track at least this much (IoU) starts nothing", live=True
    )
    min_mask_area: int = parameter(
        20,
        "a track whose mask is smaller than this (pixels) is lost for that frame: "
        "not in tracks, not drawn in masks, still live",
        live=True,
    )
    lost_after_frames: int = parameter(
        10,
        "a track becomes dormant (or ends, with dormant_seconds 0) after this many consecutive lost frames",
        live=True,
    )
    max_area_growth: float = parameter(
        0.0,
        "a track whose mask covers more than this many times the area of the box that last anchored it "
        "(its detection, prompt or first mask) is lost for that frame: its slot has taken the background or "
        "another object; 0 = no limit",
        live=True,
    )
    gate_margin: float = parameter(
        0.25,
        "a track's slot sees only the image inside its last box (mask box, or the detection that matched "
        "it) grown on every side by this many times the box's longer side, widening with each lost frame; "
        "keeps a slot from drifting to a similar object or the background; 0 = no gate",
        live=True,
    )
    swap_margin: float = parameter(
        0.5,
        "two tracks whose boxes touched trade ids when each mask's colours match the other track's object "
        "better than its own by this much (sum of the two Bhattacharyya distances of colour histograms, 0..2): "
        "undoes slots that traded objects while crossing; 0 = off",
        live=True,
    )
    dormant_seconds: float = parameter(
        10.0,
        "seconds (image stamp time) a lost track stays dormant: no slot, not in tracks or masks, its id "
        "kept in label_info and revived when a detection or prompt of a new object matches its appearance; "
        "then it ends; 0 = a lost track ends at once",
        live=True,
    )
    reid_threshold: float = parameter(
        0.58,
        "least appearance similarity (0..1: the mean of the Bhattacharyya coefficients of RGB and of "
        "hue-saturation histograms and, for models with features, the cosine of pooled backbone features) for a "
        "new object to take a dormant or lost track's id",
        live=True,
    )
    mask_threshold: float = parameter(
        0.5, "a pixel belongs to a track only if its slot probability is at least this", live=True
    )
    mask_edges: str = parameter(
        "auto",
        "guided (the tracks' masks are refined by a guided filter fitted on the model's frame and applied to "
        "the camera image, so their edges follow the camera's) | bilinear (plain resize) | auto (guided for models "
        "whose masks come at a feature stride above 1, such as the pretrained-backbone models)",
        MASK_EDGES,
        live=True,
    )

    def __post_init__(self) -> None:
        if isinstance(self.class_ids, str):
            raise ValueError(f"class_ids: must be a list of strings, got the string {self.class_ids!r}")
        self.class_ids = tuple(self.class_ids)
        self.validate()

    def validate(self) -> None:
        def check(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise ValueError(f"{name}: {message}, got {getattr(self, name)!r}")

        def is_number(value: object) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices:
                check(getattr(self, f.name) in choices, f.name, f"must be one of {choices}")
        for name in ("score_threshold", "new_object_iou", "mask_threshold", "reid_threshold"):
            value = getattr(self, name)
            check(is_number(value) and 0.0 <= value <= 1.0, name, "must be a number in [0, 1]")
        check(all(isinstance(c, str) for c in self.class_ids), "class_ids", "must be a list of strings")
        for name, integer, least, note in (
            ("max_tracks", True, 1, ""),
            ("min_mask_area", True, 0, ""),
            ("lost_after_frames", True, 1, ""),
            ("gate_margin", False, 0, ""),
            ("swap_margin", False, 0, " (0 = off)"),
            ("dormant_seconds", False, 0, " (0 = lost tracks end at once)"),
        ):
            value = getattr(self, name)
            kind = "an integer" if integer else "a number"
            check(
                (is_int if integer else is_number)(value) and value >= least, name, f"must be {kind} >= {least}{note}"
            )
        check(
            is_number(self.max_area_growth) and (self.max_area_growth == 0 or self.max_area_growth >= 1),
            "max_area_growth",
            "must be 0 (no limit) or a number >= 1",
        )
