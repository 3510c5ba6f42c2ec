"""Benchmark: Tracker.step overhead around SAVi preset S (random weights), or a checkpoint, for a camera-sized input.

Prints the median per-phase times (preprocess = upload + resize, model, postprocess = mask resize,
arg-max, per-track stats; total includes the host copies) for each mask source, so the cost of the
tracker around the model is visible. Run:
``.venv/bin/python bench/bench_tracker.py [--device cpu|cuda] [--size 480x640] [--frames 30] [--tracks 5]
[--checkpoint default]``.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from savi_core.checkpoint import load_checkpoint
from savi_core.config import preset
from savi_core.numerics import flush_denormals
from savi_core.savi import SAVi
from savi_core.tracker import Detection, Tracker
from savi_core.tracker_config import TrackerConfig


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
    for mode in ("decoder", "attention"):
        config = TrackerConfig(mask_source=mode, precision=args.precision, mask_threshold=0.0, min_mask_area=0)
        tracker = Tracker(model, config, device=args.device)
        tracker.step(frames[0], detections)
        for t in range(3):  # warm-up
            tracker.step(frames[t % len(frames)])
        timings = [tracker.step(frames[t % len(frames)]).timings for t in range(args.frames)]
        medians = {k: statistics.median(t[k] for t in timings) for k in timings[0]}
        print(f"{mode:9s} {height}x{width} {args.device} {args.precision}: "
              + "  ".join(f"{k} {v:7.2f} ms" for k, v in medians.items()))


if __name__ == "__main__":
    main()
