"""Benchmark: streaming SAVi preset S (11 slots, 64x64, batch 1) on this machine.

Prints ms/frame for the ``decoder`` and ``attention`` mask sources, GFLOP/frame (counted by
torch's FlopCounterMode), achieved GFLOP/s, and the ratio to a fp32 matmul measured in the same run,
so numbers from different machines can be compared. Targets on the 2-core CPU: decoder <= 85 ms,
attention <= 8 ms. Run: ``.venv/bin/python bench/bench_model.py [--device cuda] [--frames 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from savi_core.model.config import preset
from savi_core.model.initializers import Conditioning
from savi_core.model.savi import SAVi

TARGET_MS = {"decoder": 85.0, "attention": 8.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 1024, repeats: int = 20) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def time_mode(model: SAVi, frames: torch.Tensor, slots: torch.Tensor, mode: str) -> list[float]:
    """Stream every frame, carrying the slots, and time each step."""
    device = frames.device
    times = []
    for t in range(frames.shape[0]):
        _sync(device)
        start = time.perf_counter()
        out = model.step(frames[t : t + 1], slots, decode=mode)
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
        slots = out.predicted
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = SAVi(preset("S")).to(device).eval()
    frames = torch.rand(args.frames, 3, 64, 64, device=device)
    cond = Conditioning(boxes=torch.rand(1, model.num_object_slots, 4, device=device))
    print(f"device={device} threads={torch.get_num_threads()} preset=S slots=11 resolution=64x64 batch=1")
    with torch.inference_mode():
        slots = model.init_slots(cond)
        matmul = matmul_gflops(device)
        print(f"fp32 matmul (1024^3): {matmul:.1f} GFLOP/s")
        for mode in ("decoder", "attention"):
            with FlopCounterMode(display=False) as counter:
                model.step(frames[:1], slots, decode=mode)
            gflop = counter.get_total_flops() / 1e9
            time_mode(model, frames[:5], slots, mode)  # warm-up
            times = time_mode(model, frames, slots, mode)
            median = statistics.median(times)
            achieved = gflop / (median / 1000)
            verdict = "OK" if median <= TARGET_MS[mode] else "OVER TARGET"
            print(
                f"{mode:9s}: {median:7.2f} ms/frame (p90 {sorted(times)[int(0.9 * len(times))]:.2f}), "
                f"{gflop:6.2f} GFLOP/frame, {achieved:6.1f} GFLOP/s = {achieved / matmul:.2f} x matmul; "
                f"target <= {TARGET_MS[mode]:.0f} ms: {verdict}"
            )


if __name__ == "__main__":
    main()
