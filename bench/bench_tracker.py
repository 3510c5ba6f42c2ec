"""Benchmark: Tracker.step overhead around SAVi preset S (random weights), or a checkpoint, for a camera-sized input.

Prints the median per-phase times (preprocess = upload + resize, model, postprocess = mask resize,
arg-max, per-track stats; total includes the host copies; cpu = the process's CPU time in the step, every
thread's: on a loaded machine steadier than wall time) for each mask source, so the cost of the tracker
around the model is visible. Run:
``.venv/bin/python bench/bench_tracker.py [--device cpu|cuda] [--size 480x640] [--frames 30] [--tracks 5]
[--checkpoint default] [--versus-csrt]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from savi_core.model.checkpoint import load_checkpoint
from savi_core.model.config import preset
from savi_core.numerics import flush_denormals
from savi_core.model.savi import SAVi
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig


def main() -> None:
    flush_denormals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--size", default="480x640", help="input HxW")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--tracks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    parser.add_argument("--checkpoint", help="a checkpoint ('default' = the shipped model) instead of preset S")
    parser.add_argument(
        "--versus-csrt",
        action="store_true",
        help="also time OpenCV's CSRT + GrabCut on the same frames and boxes (a generated scene "
        "instead of noise) and print the ratio",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    if args.checkpoint:
        from savi_ros.model_store import resolve_checkpoint

        model, _ = load_checkpoint(resolve_checkpoint(args.checkpoint))
    else:
        model = SAVi(preset("S"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    step = width // (args.tracks + 1)
    detections = [Detection((i * step, height // 4, i * step + step // 2, height // 2)) for i in range(args.tracks)]
    if args.versus_csrt:
        versus_csrt(model, height, width, args)
        return
    for mode in ("decoder", "attention") if model.config.has_decoder else ("attention",):
        config = TrackerConfig(mask_source=mode, precision=args.precision, mask_threshold=0.0, min_mask_area=0)
        tracker = Tracker(model, config, device=args.device)
        tracker.step(frames[0], detections)
        for t in range(3):  # warm-up
            tracker.step(frames[t % len(frames)])
        timings = []
        for t in range(args.frames):
            cpu = time.process_time()
            step_timings = tracker.step(frames[t % len(frames)]).timings
            timings.append({**step_timings, "cpu": (time.process_time() - cpu) * 1e3})
        medians = {k: statistics.median(t[k] for t in timings) for k in timings[0]}
        print(
            f"{mode:9s} {height}x{width} {args.device} {args.precision}: "
            + "  ".join(f"{k} {v:7.2f} ms" for k, v in medians.items())
        )


def versus_csrt(model: torch.nn.Module, height: int, width: int, args: argparse.Namespace) -> None:
    """Median ms per frame of ``Tracker.step`` (node defaults) and of CSRT + GrabCut on one generated scene."""
    from savi_scenes import SceneConfig, generate_scene
    from training.baselines import csrt_baselines
    from training.evaluate import first_frame_detections

    scene = generate_scene(
        7,
        SceneConfig(
            height=height, width=width, num_frames=args.frames, min_objects=args.tracks, max_objects=args.tracks
        ),
    )
    boxes = torch.from_numpy(scene.boxes[0]).float()
    visible = torch.from_numpy(scene.visible[0]).float()
    detections = first_frame_detections(boxes, visible, (height, width))
    tracker = Tracker(model, TrackerConfig(), device=args.device)
    for _ in range(2):  # the second pass is measured: caches and kernels warm
        tracker.reset()
        totals = [
            tracker.step(frame, detections if t == 0 else None).timings["total"] for t, frame in enumerate(scene.video)
        ]
    ours = statistics.median(totals[1:])
    video = torch.from_numpy(scene.video).permute(0, 3, 1, 2).unsqueeze(0).float() / 255.0
    _, csrt_ms = csrt_baselines(video, boxes[None], visible[None], grabcut_iterations=3)["csrt_grabcut"]
    print(
        f"{height}x{width}, {len(detections)} objects, {args.frames} frames: Tracker.step median {ours:.1f} ms, "
        f"CSRT + GrabCut mean {csrt_ms:.1f} ms per frame: {csrt_ms / ours:.1f}x"
    )


if __name__ == "__main__":
    main()
