"""Why a prototype model's masks slip off fast-moving objects: what a boxed object's slot would win if it were
told where the object is, or what it looks like now (issue 24).

3D training-split videos of a run config (dev data: never the held-out families) stream through the Tracker
with their first-frame boxes, as the benchmark plays them. On every later frame, for every boxed object whose
slot is live and that covers at least one feature cell, the corrector step that made the frame's attention is
replayed four more times with one thing changed for that slot alone, and the share of the object's true cells
the slot wins (attention over 0.5, what the label map needs) is counted:

- ``as is``: the step as the Tracker ran it;
- ``no gate``: the slot's gate row removed (the gate's window placement and size cost nothing);
- ``true centre``: the slot's spatial prior centred on the object's true centre of mass (a perfect motion
  prediction of the prior), gate kept;
- ``true centre, no gate``: both;
- ``true look``: the slot's prototype replaced by the features pooled over the object's true cells this frame.

``--ceiling`` scores whole videos instead (mIoU, as the benchmark does): as the Tracker plays them, and with
every boxed object's slot given, before each corrector step, its prior centred on the object's true centre
and no gate row: what a perfect motion prediction of the window and the prior could bring at most.

Rows split the object-frames by the true centre's shift since the previous frame (camera pixels) and, with
``--entering N``, by whether the object covered fewer than N pixels on the first frame (boxed while coming into
view at the image's edge: its prototype pooled from a sliver of it). A benchmark
tool: it replays the model's own corrector on copies of its inputs and changes nothing. Run:
``.venv/bin/python bench/slip_diagnosis.py [--first 10] [--videos 20] [--frame-size 320x240]``.
"""

from __future__ import annotations

import argparse
import copy
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from savi_core.model.checkpoint import load_checkpoint
from savi_core.model.prototypes import GEOMETRY
from savi_core.model.savi import SAVi
from savi_core.tracking.tracker import Tracker
from training.config import load_config
from training.data import build_dataset
from training import metrics
from training.evaluate import _camera_images, first_frame_detections

ARMS = ("as is", "no gate", "true centre", "true centre, no gate", "true look")
SPEEDS = ((0.0, 6.0, "under 6 px"), (6.0, 12.0, "6 to 12 px"), (12.0, float("inf"), "12 px or more"))


def physics_videos(config: str, size: tuple[int, int], first: int, count: int) -> list[dict[str, torch.Tensor]]:
    """The 3D family's training-split videos ``first`` to ``first + count`` of ``config``'s data at ``size``."""
    data = copy.deepcopy(load_config(config).data)
    data.resolution = size
    data.validate()
    dataset = build_dataset(data, "train")
    dataset.window = None
    physics = [i for i in range(len(dataset)) if dataset.is_physics(i)]
    return [dataset[i] for i in physics[first : first + count]]


@torch.inference_mode()
def _played(item: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray, list]:
    """A video as the benchmark plays it: ground-truth ids, camera images and the first-frame detections."""
    truth = item["segmentations"].numpy()
    size = truth.shape[1:]
    return (
        truth,
        _camera_images(item["video"], size),
        first_frame_detections(item["cond_boxes"], item["conditioned"], size),
    )


def won(corrector: Callable, inputs: tuple, slot: int, cells: torch.Tensor) -> float:
    """Share of ``cells`` where ``slot``'s attention is over 0.5 in one corrector step on ``inputs``."""
    _, attention = corrector(*inputs)
    return float((attention[0, slot] > 0.5)[cells].float().mean())


def arms(corrector: Callable, step: tuple, slot: int, cells: torch.Tensor, centre: tuple[float, float]) -> list:
    """The shares of `ARMS` for one object's ``slot`` (``cells`` its true cells, ``centre`` its true (y, x))."""
    slots, features, grid, bias = step
    c = slots.shape[-1] - GEOMETRY  # one prototype per slot: [prototype | cy, cx, h, w, vy, vx | object]
    ungated = None if bias is None else bias.clone()
    if ungated is not None:
        ungated[0, slot] = 0.0
    moved = slots.clone()
    moved[0, slot, c : c + 2] = torch.tensor(centre, dtype=slots.dtype)
    looked = slots.clone()
    looked[0, slot, :c] = F.normalize(features[0, cells].mean(0), dim=-1)
    return [
        won(corrector, (slots, features, grid, bias), slot, cells),
        won(corrector, (slots, features, grid, ungated), slot, cells),
        won(corrector, (moved, features, grid, bias), slot, cells),
        won(corrector, (moved, features, grid, ungated), slot, cells),
        won(corrector, (looked, features, grid, bias), slot, cells),
    ]


def diagnose(model: SAVi, videos: list[dict[str, torch.Tensor]], entering: int = 0) -> dict[str, np.ndarray]:
    """Summed shares per row (the last entry of each row counts its object-frames): per speed, and with
    ``entering`` > 0 per speed of the objects under that many pixels on the first frame and of the others."""
    if model.config.corrector.kind != "prototype" or model.config.corrector.prototypes != 1:
        raise SystemExit("the diagnosis replays a prototype corrector with one prototype per slot")
    corrector = model.corrector
    step: dict[str, tuple] = {}  # the inputs of the corrector's last call
    run = corrector.forward

    def recorded(slots, features, grid, bias=None):
        step["last"] = (slots, features, grid, bias)
        return run(slots, features, grid, bias)

    corrector.forward = recorded
    tracker = Tracker(model)
    offset = int(model.config.initializer.background_slot)
    stride = model.config.encoder.stride
    fh, fw = model.config.resolution[0] // stride, model.config.resolution[1] // stride
    rows: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(ARMS) + 1))
    for item in videos:
        tracker.reset()
        truth, images, detections = _played(item)
        frames, height, width = truth.shape
        boxed = [int(d.det_id) for d in detections]
        last: dict[int, np.ndarray] = {}
        small = {o: bool((truth[0] == o).sum() < entering) for o in boxed}
        for f in range(frames):
            slots_of = {o: tracker._book.slot_of(o) for o in boxed}  # the slot that ran this frame
            tracker.step(images[f], detections if f == 0 else None, stamp=f / 10)
            ran = step["last"]
            for o in boxed:
                mask = truth[f] == o
                if not mask.any():
                    last.pop(o, None)
                    continue
                centre = np.array(np.nonzero(mask)).mean(1)  # (y, x) camera pixels
                shift = float(np.hypot(*(centre - last[o]))) if o in last else 0.0
                last[o] = centre
                if f == 0 or slots_of[o] is None:
                    continue
                pooled = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], (fh, fw), mode="area")
                cells = pooled.flatten() > 0.5
                if not cells.any():
                    continue
                shares = arms(run, ran, slots_of[o] + offset, cells, (centre[0] / height, centre[1] / width))
                name = next(label for lo, hi, label in SPEEDS if lo <= shift < hi)
                if entering:
                    name = ("entering, " if small[o] else "in view, ") + name
                rows[name] += np.array([*shares, 1.0])
    corrector.forward = run
    return rows


def ceiling(model: SAVi, videos: list[dict[str, torch.Tensor]], oracle: bool) -> float:
    """Mean mIoU of ``videos`` through the Tracker; with ``oracle`` every boxed object's slot has its prior at
    the object's true centre and no gate on every frame after the first."""
    corrector = model.corrector
    run = corrector.forward
    truth_now: dict[int, tuple[float, float]] = {}  # slot -> true centre (y, x), normalised

    def told(slots, features, grid, bias=None):
        slots = slots.clone()
        bias = None if bias is None else bias.clone()
        c = slots.shape[-1] - GEOMETRY
        for slot, centre in truth_now.items():
            slots[0, slot, c : c + 2] = torch.tensor(centre, dtype=slots.dtype)
            if bias is not None:
                bias[0, slot] = 0.0
        return run(slots, features, grid, bias)

    if oracle:
        corrector.forward = told
    tracker = Tracker(model)
    offset = int(model.config.initializer.background_slot)
    scores = []
    for item in videos:
        tracker.reset()
        truth, images, detections = _played(item)
        frames, height, width = truth.shape
        labels = np.zeros(truth.shape, np.int64)
        for f in range(frames):
            truth_now.clear()
            for d in detections:
                slot, mask = tracker._book.slot_of(int(d.det_id)), truth[f] == int(d.det_id)
                if f > 0 and slot is not None and mask.any():
                    ys, xs = np.nonzero(mask)
                    truth_now[slot + offset] = (ys.mean() / height, xs.mean() / width)
            labels[f] = tracker.step(images[f], detections if f == 0 else None, stamp=f / 10).label_map
        pred, gt = torch.from_numpy(labels)[None], torch.from_numpy(truth).long()[None]
        scores.append(float(metrics.miou(pred, gt, model.num_object_slots, True, item["frame_mask"][None])[0]))
    corrector.forward = run
    return float(np.nanmean(scores))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="training/configs/pretrained_cpu.yaml", help="run config (its data)")
    p.add_argument("--checkpoint", default="savi_ros/models/default")
    p.add_argument("--frame-size", default="320x240", help="WxH of the camera images")
    p.add_argument("--first", type=int, default=10, help="first 3D training video (the fit scores the first 10)")
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--entering", type=int, default=0, help="split rows at this first-frame area (pixels); 0: no split")
    p.add_argument("--ceiling", action="store_true", help="score whole videos as played and with the oracle instead")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.frame_size.split("x"))
    videos = physics_videos(args.config, (height, width), args.first, args.videos)
    model, _ = load_checkpoint(args.checkpoint)
    if args.ceiling:
        played, told = (100 * ceiling(model, videos, oracle) for oracle in (False, True))
        print(f"mIoU over {args.videos} 3D training videos from {args.first}: as played {played:.2f}, "
              f"prior at the true centre and no gate for the boxed objects' slots {told:.2f}")  # fmt: skip
        return
    rows = diagnose(model, videos, args.entering)
    print(f"share of a boxed object's true cells its slot wins, {args.videos} 3D training videos from {args.first}")
    print("| true centre's shift per frame | object-frames | " + " | ".join(ARMS) + " |")
    print("| --- " * (len(ARMS) + 2) + "|")
    kinds = ("entering, ", "in view, ") if args.entering else ("",)
    for name in (kind + label for kind in kinds for _, _, label in SPEEDS):
        total = rows[name]
        if total[-1]:
            shares = " | ".join(f"{v / total[-1]:.3f}" for v in total[:-1])
            print(f"| {name} | {int(total[-1])} | {shares} |")


if __name__ == "__main__":
    main()
