"""Evaluate a checkpoint: ``python -m training.evaluate --checkpoint RUN_OR_STEP_DIR [--data PATH] [--baselines]``.

Protocol (paper A.8) on what the node publishes: each full-length video is played through the
``Tracker`` as 8-bit camera images, the conditioning boxes are the first frame's detections (with the
object ids as detection ids, so track id = object id), and the label maps are scored (FG-ARI,
mIoU, DAVIS J&F, IDF1 and ID switches; first frame skipped). ``--model-only`` scores the bare model
instead, as a diagnostic.
Writes ``<out>/metrics.json`` (per video, per frame and means) and ``<out>/per_frame.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from training import metrics
from savi_core.model.checkpoint import CheckpointError, load_checkpoint
from savi_core.model.config import ConfigError
from savi_core.device import resolve_device
from savi_core.tracking.geometry import resize_frames, resize_probabilities
from savi_core.numerics import flush_denormals
from savi_core.model.savi import MASK_SOURCES, SAVi
from savi_core.tracking.tracker import Detection, Prompt, Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from training.conditioning import add_box_noise, add_center_noise, as_points, conditioning_from_batch
from training.config import DATA_KINDS, DataConfig, EvalConfig, config_from_dict, load_config
from training.data import build_dataset
from training.davis import davis_scores, davis_summary
from training.identity import identity_counts, identity_summary
from training.mask_ceiling import CEILING, feature_grid, grid_ceiling_ids
from training.report import format_table, plot_per_frame
from training.datasets.common import FRAME_KEYS, resize_id_maps
from training.state import checkpoint_dir

METHODS = ("savi", "static_box", "flow_kmeans_com", "csrt_box", "csrt_grabcut")
#: GrabCut iterations of the csrt_grabcut baseline (OpenCV's usual few; each costs another pass).
GRABCUT_ITERATIONS = 3
PROMPTS = ("boxes", "points")
#: How the objects are given (docs/TRAINING.md, "Evaluation"): ``first-frame`` (the paper's: boxes of the
#: objects visible on frame 0, nothing later) or ``first-appearance`` (also every later object's box, on the
#: first frame it shows: YouTube-VOS's semi-supervised protocol) or ``first-appearance-detector`` (as
#: first-appearance, and on such a frame the boxes of every object shown too: a detector firing when an
#: object appears, which the Tracker's starts expect: a new track restarts the slots of the tracks not
#: re-detected with it, savi_core/tracking/starts.py).
BOX_PROTOCOLS = ("first-frame", "first-appearance", "first-appearance-detector")
#: The protocols with a mIoU ceiling of their own (the detector variant gives the objects when first-appearance does).
CEILING_PROTOCOLS = ("first-frame", "first-appearance")
#: first-appearance: a late object is given once its visible area reaches this share of the frame (0.1%:
#: 77 pixels at 320x240, a 9x9 patch), not on the first sliver that enters the image.
MIN_APPEARANCE_AREA = 0.001


class _WithExtras(Dataset):
    """Adds the item's index and, for the flow baseline, its ground-truth flow in pixels."""

    def __init__(self, dataset: Dataset, with_flow: bool) -> None:
        self.dataset = dataset
        self.with_flow = with_flow

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.dataset[index])
        item["index"] = torch.tensor(index)
        if self.with_flow:
            item["flow"] = torch.from_numpy(video_flow(self.dataset, index))
        return item


def video_flow(dataset: Dataset, index: int) -> np.ndarray:
    """Ground-truth backward flow ``[T,H,W,2]`` (d_row, d_col) pixels of a full video, at item resolution."""
    from training.datasets.common import resize_flow

    if hasattr(dataset, "scene_arrays"):  # synthetic scenes
        return np.ascontiguousarray(dataset.scene_arrays(index)["backward_flow"], np.float32)
    if hasattr(dataset, "read") and hasattr(dataset, "flow"):  # MOVi
        flow = dataset.read(index).flow
        return resize_flow(flow, dataset.resolution) if dataset.resolution is not None else flow
    raise ValueError(f"the flow k-means baseline needs ground-truth flow, which {type(dataset).__name__} does not have")


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, zero-padding videos of different lengths (``frame_mask`` marks the real frames)."""
    length = max(int(item["video"].shape[0]) for item in items)
    out = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key in FRAME_KEYS or key == "flow":
            values = [torch.cat([v, v.new_zeros((length - v.shape[0], *v.shape[1:]))]) for v in values]
        out[key] = torch.stack(values)
    return out


def _camera_images(video: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Float frames ``[T, 3, h, w]`` -> the uint8 RGB ``[T, H, W, 3]`` images a camera of ``size`` would send."""
    frames = resize_frames(video, size).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return frames.permute(0, 2, 3, 1).cpu().numpy()


def first_frame_detections(boxes: torch.Tensor, conditioned: torch.Tensor, size: tuple[int, int]) -> list[Detection]:
    """Conditioning boxes ``[N, 4]`` (normalised yxyx) -> pixel detections whose id is the instance id
    (``i + 1``), so the Tracker's track ids are the ground truth's object ids."""
    height, width = size
    detections = []
    for i, (box, on) in enumerate(zip(boxes.tolist(), conditioned.tolist())):
        if on > 0.5:
            y0, x0, y1, x1 = box
            detections.append(Detection(box_xyxy=(x0 * width, y0 * height, x1 * width, y1 * height), det_id=str(i + 1)))
    return detections


def box_frames(batch: dict[str, torch.Tensor], boxes: str) -> torch.Tensor:
    """``[B, N]``: the frame on which each object's box is given, -1 for never. The conditioned objects
    get theirs on frame 0; with ``first-appearance`` every other object gets its ``boxes`` row on the first
    real frame where it is ``visible`` with at least ``MIN_APPEARANCE_AREA`` of the frame's pixels."""
    if boxes not in BOX_PROTOCOLS:
        raise ValueError(f"boxes must be one of {BOX_PROTOCOLS}, got {boxes!r}")
    conditioned = batch["conditioned"] > 0.5
    given = torch.where(conditioned, 0, -1)  # first-appearance-detector gives the same objects as first-appearance
    if boxes == "first-frame":
        return given
    shown = shown_objects(batch)
    first = torch.where(shown.any(dim=1), shown.int().argmax(dim=1), -1)  # argmax: the first True
    return torch.where(conditioned, given, first)


def shown_objects(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, T, N]``: the objects ``visible`` on each real frame with at least ``MIN_APPEARANCE_AREA`` of its
    pixels (what a detector is taken to find); a video without ``visible`` (a hand-made one) goes by the
    ground truth's area alone."""
    seg = batch["segmentations"].long()
    b, t, h, w = seg.shape
    n = batch["conditioned"].shape[-1]
    seg = torch.where((seg >= 1) & (seg <= n), seg, 0)
    offset = torch.arange(b * t, device=seg.device).view(b, t, 1, 1) * (n + 1)
    area = torch.bincount((seg + offset).flatten(), minlength=b * t * (n + 1)).view(b, t, n + 1)[..., 1:]
    shown = (area >= MIN_APPEARANCE_AREA * h * w) & batch["frame_mask"].bool()[..., None]
    return shown & batch["visible"].bool() if "visible" in batch else shown


def late_detections(
    batch: dict[str, torch.Tensor],
    given: torch.Tensor,
    i: int,
    f: int,
    size: tuple[int, int],
    shown: torch.Tensor | None = None,
) -> list[Detection]:
    """Video ``i``'s detections of the objects whose box is given on frame ``f`` > 0 (id = object id); with
    ``shown`` (`shown_objects`, the detector protocol), when there is one, every object shown on that frame."""
    new = given[i] == f
    if not bool(new.any()):
        return []
    if shown is not None:
        new = new | shown[i, f]
    return first_frame_detections(batch["boxes"][i, f], new.float(), size)


def first_frame_points(centers: torch.Tensor, conditioned: torch.Tensor, size: tuple[int, int]) -> list[Prompt]:
    """Conditioning centres of mass ``[N, 2]`` (normalised yx) -> point prompts in pixels asking for the
    instance id (``i + 1``): what a person clicking on each object gives."""
    height, width = size
    return [
        Prompt(point_xy=(x * width, y * height), track_id=str(i + 1))
        for i, ((y, x), on) in enumerate(zip(centers.tolist(), conditioned.tolist()))
        if on > 0.5
    ]


def tracker_ids(
    tracker: Tracker,
    batch: dict[str, torch.Tensor],
    input_scale: float = 1.0,
    prompt: str = "boxes",
    detect_every: int = 0,
    boxes: str = "first-frame",
) -> torch.Tensor:
    """What the node publishes: each video streamed through ``tracker`` as camera images (``input_scale``
    times the dataset's size, 8-bit), with the conditioning boxes as first-frame detections, or with
    ``prompt="points"`` the centres of mass as first-frame point prompts. ``detect_every`` > 0 adds a
    running detector: every that many frames the true boxes of the visible objects come as detections.
    ``boxes="first-appearance"`` also gives each later object's box as a detection on the frame it
    appears (`box_frames`); ``first-appearance-detector`` gives every shown object's box on that frame.
    Returns the label maps ``[B, T, H', W']`` (track id = object id, 0 = no track)."""
    given = box_frames(batch, boxes)
    shown = shown_objects(batch) if boxes == "first-appearance-detector" else None
    video = batch["video"]
    b, t, _, h, w = video.shape
    size = (round(h * input_scale), round(w * input_scale))
    out = torch.zeros(b, t, *size, dtype=torch.long)
    for i in range(b):
        tracker.reset()
        images = _camera_images(video[i], size)
        detections = None
        if prompt == "points":
            tracker.add_objects(first_frame_points(batch["cond_centers"][i], batch["conditioned"][i], size))
        else:
            detections = first_frame_detections(batch["cond_boxes"][i], batch["conditioned"][i], size)
        for f in range(t):
            if f > 0 and detect_every and f % detect_every == 0:
                detections = first_frame_detections(batch["boxes"][i, f], batch["visible"][i, f].float(), size)
            elif f > 0:
                detections = late_detections(batch, given, i, f, size, shown) or None
            result = tracker.step(images[f], detections)
            out[i, f] = torch.from_numpy(result.label_map.astype(np.int64))
    return out


@torch.no_grad()
def model_only_ids(
    model: SAVi, batch: dict[str, torch.Tensor], mask_source: str, input_scale: float = 1.0
) -> torch.Tensor:
    """Diagnostic: the model alone (arg-max over slots, no mask threshold, no track rules) on float
    frames; id maps ``[B, T, H', W']``. The node's numbers come from :func:`tracker_ids`."""
    cfg = model.config
    video = batch["video"]
    b, t, _, h, w = video.shape
    out_size = (round(h * input_scale), round(w * input_scale))
    offset = 0 if cfg.initializer.background_slot else 1  # object slot of instance i predicts id i + 1
    slots = model.init_slots(conditioning_from_batch(batch, cfg))
    frames = []
    for i in range(t):
        frame = resize_frames(resize_frames(video[:, i], out_size), cfg.resolution)
        step = model.step(frame, slots, decode=mask_source)
        probs = torch.stack([resize_probabilities(m.float(), out_size) for m in step.masks])
        frames.append(probs.argmax(dim=1) + offset)
        slots = step.predicted
    return torch.stack(frames, dim=1)


def _scores(
    pred: torch.Tensor, gt: torch.Tensor, frame_mask: torch.Tensor, num_objects: int, skip_first: bool, identity: bool
) -> dict[str, torch.Tensor]:
    pred, gt, frame_mask = pred.cpu(), gt.cpu(), frame_mask.cpu()
    scores = {
        "davis": davis_scores(pred, gt, frame_mask, skip_first),
        "fg_ari": metrics.fg_ari(pred, gt, skip_first, frame_mask),
        "miou": metrics.miou(pred, gt, num_objects, skip_first, frame_mask),
        "fg_ari_frames": metrics.per_frame_fg_ari(pred, gt, skip_first, frame_mask),
        "miou_frames": metrics.miou(pred, gt, num_objects, skip_first, frame_mask, per_frame=True),
    }
    if identity:
        scores["identity"] = identity_counts(pred, gt, frame_mask, skip_first)
    return scores


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _summarise(scores: list[dict[str, torch.Tensor]], conditional: bool) -> dict[str, Any]:
    """Per-video values, data-set means (NaN entries skipped) and per-frame mean curves."""
    out: dict[str, Any] = {}
    names = ("fg_ari", "miou") if conditional else ("fg_ari",)  # without conditioning slots have no identity
    for name in names:
        per_video = torch.cat([s[name] for s in scores])
        length = max(s[f"{name}_frames"].shape[1] for s in scores)
        frames = torch.cat(
            [F.pad(s[f"{name}_frames"], (0, length - s[f"{name}_frames"].shape[1]), value=float("nan")) for s in scores]
        )
        mean, count = metrics.mean_over_videos(per_video)
        out[name] = _nan_to_none(mean)
        out[f"{name}_videos_counted"] = count
        out[f"{name}_per_video"] = [_nan_to_none(v) for v in per_video.tolist()]
        out[f"{name}_per_frame"] = [_nan_to_none(metrics.mean_over_videos(frames[:, i])[0]) for i in range(length)]
    if "identity" in scores[0]:
        counts = {k: sum(s["identity"][k] for s in scores) for k in scores[0]["identity"]}
        out.update({k: _nan_to_none(v) if isinstance(v, float) else v for k, v in identity_summary(counts).items()})
    if conditional:
        davis = {k: [v for s in scores for v in s["davis"][k]] for k in ("j", "f")}
        out.update({k: _nan_to_none(v) for k, v in davis_summary(davis).items()})
    if "ms_per_frame" in scores[0]:
        out["ms_per_frame"] = float(sum(s["ms_per_frame"] for s in scores) / len(scores))
    return out


def evaluate(
    model: SAVi,
    dataset: Dataset,
    eval_cfg: EvalConfig,
    device: torch.device,
    baselines: bool = False,
    noise_sigma: float = 0.0,
    input_scale: float = 1.0,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
    model_only: bool = False,
    prompt: str = "boxes",
    tracker_params: dict[str, Any] | None = None,
    detect_every: int = 0,
    prototype_baseline: bool = False,
    identity: bool = True,
    boxes: str = "first-frame",
) -> dict[str, Any]:
    """Run the protocol over the first ``eval_cfg.num_videos`` videos; returns the metrics dict.
    ``prototype_baseline`` adds the untrained feature-prototype model through the same Tracker.
    ``prompt`` is how SAVi is told the objects on the first frame: ``boxes`` or ``points`` (centres of
    mass, for models that take them); the baselines always get the boxes.

    SAVi is scored through the ``Tracker`` with the node's default parameters (its ``mask_source``
    from ``eval_cfg``; ``tracker_params`` override any of them): camera images in, published label maps
    out; ``detect_every`` adds a running detector (see `tracker_ids`). ``model_only`` scores the bare
    model instead (a diagnostic: no 8-bit images, no thresholds, no track rules). ``identity`` False leaves
    out the identity counts (IDF1, ID switches: most of the scoring time), for callers that read none.

    ``boxes`` is the protocol (``BOX_PROTOCOLS``): with ``first-appearance`` SAVi, the feature-prototype
    baseline, the static box and the CSRT baselines all get each later object's box on the frame it appears
    (`box_frames`); the flow k-means baseline, seeded on frame 0 only, is then not scored.
    ``first-appearance-detector`` (SAVi and the prototypes only) adds every visible object's box on those
    frames. Scoring is the same under all. ``ceiling_miou`` holds each protocol's ceiling: the mIoU of the
    ground truth with the objects not (yet) given left out (`metrics.known_objects_ids`); through the Tracker
    also `training.mask_ceiling`'s: those objects' true shares of the model's feature grid brought to the camera
    by the Tracker's mask path (under ``boxes``, at ``input_scale`` 1)."""
    from training.baselines import (
        FEATURE_PROTOTYPE,
        csrt_baselines,
        feature_prototype_model,
        flow_kmeans_com_baseline,
        static_box_baseline,
    )

    cfg = model.config
    kind = cfg.initializer.kind
    if noise_sigma > 0 and kind not in ("bbox", "com"):
        raise ValueError(f"--noise-sigma perturbs boxes / centres; the model's initializer is {kind!r}")
    if detect_every < 0 or (detect_every and model_only):
        raise ValueError(f"detect_every must be >= 0 and needs the Tracker (not --model-only), got {detect_every}")
    if input_scale <= 0:
        raise ValueError(f"input scale must be positive, got {input_scale}")
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
    if boxes not in BOX_PROTOCOLS:
        raise ValueError(f"boxes must be one of {BOX_PROTOCOLS}, got {boxes!r}")
    if boxes != "first-frame" and (model_only or prompt != "boxes" or noise_sigma > 0):
        raise ValueError("first-appearance boxes need the Tracker, box prompts and no conditioning noise")
    if boxes == "first-appearance-detector" and baselines:
        raise ValueError("the baselines take first-frame or first-appearance boxes, not re-detections")
    if prompt == "points" and not (kind == "com" or (kind == "bbox" and cfg.initializer.points)):
        raise ValueError(f"this model does not take points (initializer {kind!r}, points: {cfg.initializer.points})")
    total = len(dataset) if eval_cfg.num_videos is None else min(eval_cfg.num_videos, len(dataset))
    subset = torch.utils.data.Subset(_WithExtras(dataset, with_flow=baselines), range(total))
    loader = DataLoader(subset, batch_size=eval_cfg.batch_size, num_workers=num_workers, collate_fn=_collate)
    generator = torch.Generator().manual_seed(seed)
    num_objects = cfg.num_object_slots
    methods = [m for m in METHODS if boxes == "first-frame" or m != "flow_kmeans_com"]
    per_method: dict[str, list[dict[str, torch.Tensor]]] = {m: [] for m in (methods if baselines else methods[:1])}
    model.eval().to(device)
    tracker_cfg = TrackerConfig(**{"mask_source": eval_cfg.mask_source, **(tracker_params or {})})
    tracker = None if model_only else Tracker(model, tracker_cfg, device=device)
    prototypes = None
    if prototype_baseline:
        per_method[FEATURE_PROTOTYPE] = []
        prototypes = Tracker(
            feature_prototype_model(), dataclasses.replace(tracker_cfg, mask_source="attention"), device=device
        )
    ceilings: dict[str, list[torch.Tensor]] = {p: [] for p in CEILING_PROTOCOLS}
    # The Tracker's mask path fed perfect attention (`training.mask_ceiling`): scored through the Tracker only.
    grid_path = None
    if tracker is not None and input_scale == 1.0:
        ceilings[CEILING] = []
        resolution = tuple(cfg.resolution)
        grid = feature_grid(resolution, cfg.encoder.stride)
        grid_path = (resolution, grid, tracker.guided_edges, tracker_cfg.mask_threshold)
    bar = tqdm(total=total, desc="evaluate", unit="video", disable=not progress)
    for batch in loader:
        if noise_sigma > 0:
            first_boxes = batch["boxes"][:, 0]
            batch["cond_centers"] = add_center_noise(
                batch["cond_centers"], first_boxes, batch["conditioned"], noise_sigma, generator
            )
            batch["cond_boxes"] = add_box_noise(batch["cond_boxes"], batch["conditioned"], noise_sigma, generator)
        gt, frame_mask = batch["segmentations"], batch["frame_mask"]
        size = (round(gt.shape[-2] * input_scale), round(gt.shape[-1] * input_scale))
        on_device = {k: v.to(device) for k, v in batch.items() if k not in ("flow", "index")}
        for protocol in CEILING_PROTOCOLS:
            known = metrics.known_objects_ids(gt, box_frames(batch, protocol))
            ceilings[protocol].append(metrics.miou(known, gt, num_objects, eval_cfg.skip_first, frame_mask))
        given = box_frames(batch, boxes)
        if grid_path is not None:
            known = metrics.known_objects_ids(gt, given).numpy()
            perfect = np.stack(
                [
                    grid_ceiling_ids(known[i], _camera_images(batch["video"][i], tuple(gt.shape[-2:])), *grid_path)
                    for i in range(gt.shape[0])
                ]
            )
            ceilings[CEILING].append(
                metrics.miou(torch.from_numpy(perfect), gt, num_objects, eval_cfg.skip_first, frame_mask)
            )

        def play(method: str, run: Callable[[], torch.Tensor]) -> None:
            """Score ``run``'s label maps at the camera size, with its milliseconds per frame."""
            start = time.perf_counter()
            ids = run()
            elapsed_ms = 1000.0 * (time.perf_counter() - start) / (gt.shape[0] * gt.shape[1])
            truth = resize_id_maps(gt, size)
            per_method[method].append(_scores(ids, truth, frame_mask, num_objects, eval_cfg.skip_first, identity))
            per_method[method][-1]["ms_per_frame"] = elapsed_ms

        def savi_ids() -> torch.Tensor:
            if tracker is not None:
                return tracker_ids(tracker, batch, input_scale, prompt, detect_every, boxes)
            if prompt == "points" and kind == "bbox":
                on_device["cond_boxes"] = as_points(
                    on_device["cond_boxes"], on_device["cond_centers"], on_device["conditioned"], 1.0, generator
                )
            return model_only_ids(model, on_device, eval_cfg.mask_source, input_scale)

        play("savi", savi_ids)
        if prototypes is not None:
            play(FEATURE_PROTOTYPE, lambda: tracker_ids(prototypes, batch, input_scale, "boxes", detect_every, boxes))
        if baselines:
            b, t, h, w = gt.shape
            # Each object's box on the frame it is given (frame 0: the conditioning box, noise included).
            frame = given.clamp_min(0)[:, None, :, None].expand(-1, 1, -1, 4)
            given_boxes = torch.where(
                (given > 0)[..., None], batch["boxes"].gather(1, frame)[:, 0], batch["cond_boxes"]
            )
            shown = (given >= 0).float()
            static = static_box_baseline(given_boxes, shown, t, h, w, start_frames=given)
            per_method["static_box"].append(_scores(static, gt, frame_mask, num_objects, eval_cfg.skip_first, identity))
            if boxes == "first-frame":
                kmeans = flow_kmeans_com_baseline(
                    batch["flow"], batch["cond_centers"], batch["conditioned"], num_clusters=num_objects + 1, seed=seed
                )
                per_method["flow_kmeans_com"].append(
                    _scores(kmeans, gt, frame_mask, num_objects, eval_cfg.skip_first, identity)
                )
            csrt = csrt_baselines(batch["video"], given_boxes, shown, GRABCUT_ITERATIONS, start_frames=given)
            for name, (ids, ms) in csrt.items():
                per_method[name].append(_scores(ids, gt, frame_mask, num_objects, eval_cfg.skip_first, identity))
                per_method[name][-1]["ms_per_frame"] = ms
        bar.update(int(gt.shape[0]))
    bar.close()
    return {
        "num_videos": total,
        "skip_first": eval_cfg.skip_first,
        "mask_source": eval_cfg.mask_source,
        "scored": "model_only" if model_only else "tracker",
        "noise_sigma": noise_sigma,
        "prompt": prompt,
        "input_scale": input_scale,
        "detect_every": detect_every,
        "boxes": boxes,
        "min_appearance_area": MIN_APPEARANCE_AREA,
        "ceiling_miou": {p: _nan_to_none(metrics.mean_over_videos(torch.cat(v))[0]) for p, v in ceilings.items()},
        "methods": {name: _summarise(s, cfg.initializer.conditional) for name, s in per_method.items()},
    }


def add_tracker_option(parser: argparse.ArgumentParser) -> None:
    """``--tracker NAME=VALUE`` (repeatable), read by :func:`parse_tracker_params`."""
    parser.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a Tracker parameter (repeatable), as the node would run with, e.g. gate_margin=0.5",
    )


def parse_tracker_params(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings (values read as YAML) -> Tracker parameters, checked by name and by value, so
    a benchmark scores the Tracker as a node configured that way would run."""
    names = [f.name for f in dataclasses.fields(TrackerConfig)]
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--tracker: expected NAME=VALUE with NAME one of {', '.join(names)}, got {item!r}")
        params[name] = yaml.safe_load(value)
    TrackerConfig(**params)
    return params


def resolve_checkpoint(path: str | Path) -> Path:
    """A step directory as is; a training output directory -> its latest checkpoint."""
    path = Path(path)
    pointer = checkpoint_dir(path) / "latest"
    if pointer.is_file():
        return checkpoint_dir(path) / pointer.read_text().strip()
    return path


def _data_config(args: argparse.Namespace, meta: dict[str, Any], model: SAVi) -> tuple[DataConfig, EvalConfig]:
    """From --config, else the run config stored in the checkpoint, else --data/--kind with model defaults."""
    if args.config:
        cfg = load_config(args.config, {"data.root": args.data} if args.data else None)
        return cfg.data, cfg.eval
    run = meta.get("extra", {}).get("run_config")
    if run is not None:
        cfg = config_from_dict(run)
        if args.data:
            cfg.data.root = args.data
        if args.kind:
            cfg.data.kind = args.kind
        cfg.data.validate()
        return cfg.data, cfg.eval
    if not (args.data and args.kind):
        raise ConfigError("the checkpoint holds no run config: pass --config, or --data with --kind")
    mc = model.config
    data = DataConfig(
        kind=args.kind,
        root=args.data,
        resolution=tuple(mc.resolution),
        max_instances=mc.num_object_slots,
        target="rgb",
        max_objects=mc.num_object_slots,
    )
    data.validate()
    return data, EvalConfig()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint step directory, or a training --out directory")
    p.add_argument("--data", help="dataset path (overrides data.root)")
    p.add_argument("--kind", choices=DATA_KINDS, help="dataset kind for --data")
    p.add_argument("--config", help="run config YAML for the data section (default: the one in the checkpoint)")
    p.add_argument("--out", help="output directory (default: <checkpoint>/eval)")
    p.add_argument("--num-videos", type=int, help="evaluate the first N videos (default: eval.num_videos or all)")
    p.add_argument("--batch-size", type=int, help="videos per batch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--mask-source",
        choices=MASK_SOURCES,
        help="the Tracker's mask source (default: the run config's eval.mask_source, "
        f"else {TrackerConfig.mask_source!r})",
    )
    p.add_argument(
        "--model-only",
        action="store_true",
        help="diagnostic: score the bare model (arg-max over slots) instead of the Tracker the node runs",
    )
    p.add_argument("--include-first-frame", action="store_true", help="score frame 0 too (official-code style)")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also score the static-box, flow k-means, CSRT box and CSRT + GrabCut baselines",
    )
    p.add_argument(
        "--noise-sigma",
        type=float,
        default=0.0,
        help="Gaussian noise on the conditioning boxes/centres, std as a fraction of the object size",
    )
    p.add_argument(
        "--input-scale",
        type=float,
        default=1.0,
        help="frames at this multiple of the model resolution, resized down like the Tracker does: "
        "synthetic scenes are rendered at that size, recorded frames are upscaled",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the conditioning noise and baseline k-means")
    p.add_argument(
        "--prompt",
        choices=PROMPTS,
        default="boxes",
        help="first-frame prompts given to SAVi: boxes, or points (centres of mass) for models that take them",
    )
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--detect-every",
        type=int,
        default=0,
        metavar="N",
        help="also give the true boxes of the visible objects as detections every N frames, as a "
        "running detector would (0: first frame only, the paper's protocol)",
    )
    p.add_argument(
        "--boxes",
        choices=BOX_PROTOCOLS,
        default="first-frame",
        help="first-frame: the objects' boxes on frame 0 only (the paper's protocol); first-appearance: also "
        "each later object's box on the first frame it shows (YouTube-VOS style); "
        "first-appearance-detector: "
        "and on that frame every visible object's box too (a detector firing then)",
    )
    add_tracker_option(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    flush_denormals()
    args = _parse(argv)
    try:
        tracker_params = parse_tracker_params(args.tracker)
        step_dir = resolve_checkpoint(args.checkpoint)
        device = resolve_device(args.device)
        model, meta = load_checkpoint(step_dir, device=device)
        data_cfg, eval_cfg = _data_config(args, meta, model)
        if args.num_videos is not None:
            eval_cfg.num_videos = args.num_videos
        if args.batch_size is not None:
            eval_cfg.batch_size = args.batch_size
        if args.mask_source is not None:
            eval_cfg.mask_source = args.mask_source
        if args.include_first_frame:
            eval_cfg.skip_first = False
        eval_cfg.validate()
        input_scale = args.input_scale
        if data_cfg.kind == "synthetic" and input_scale != 1.0:
            # A higher-resolution camera: render the held-out scenes at that size (same seeds; savi_scenes'
            # random draws depend on the frame size, so not the same scenes), and let
            # the model's input be resized down like the Tracker does, instead of upscaling 64x64 frames.
            data_cfg.resolution = tuple(round(r * input_scale) for r in data_cfg.resolution)
            input_scale = 1.0
        dataset = build_dataset(data_cfg, "eval")
        results = evaluate(
            model,
            dataset,
            eval_cfg,
            device,
            baselines=args.baselines,
            noise_sigma=args.noise_sigma,
            input_scale=input_scale,
            seed=args.seed,
            num_workers=args.num_workers,
            progress=sys.stderr.isatty(),
            model_only=args.model_only,
            prompt=args.prompt,
            tracker_params=tracker_params,
            detect_every=args.detect_every,
            boxes=args.boxes,
        )
        results.update(input_scale=args.input_scale, frame_size=list(data_cfg.resolution), tracker=tracker_params)
    except (CheckpointError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results = {
        "checkpoint": str(step_dir),
        "step": meta.get("extra", {}).get("step"),
        "data": {"kind": data_cfg.kind, "root": data_cfg.root},
        **results,
    }
    out = Path(args.out) if args.out else step_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_per_frame(results, out / "per_frame.png")
    print(format_table(results))
    print(f"wrote {out / 'metrics.json'} and {out / 'per_frame.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
