"""Benchmark: the project's preset S against the official SAVi (JAX/Flax) in one run, rounds alternated.

Absolute times on these machines move by 2x between days and with other load, so only a ratio measured
in the same run means anything. Each round runs the official bench (``official_savi_bench.py`` in its own
virtualenv, a fresh process: decoder and nodecoder) and this project's preset S in this process (decoder
and attention mode), with the same threads, slots, batch 1, 64x64 frames, warm-up and timed frames; the
order flips every round (official first, then project first, ...) so drifting load hits both alike.
The figure compared is the per-frame median of one round's streamed frames on both sides (the mean is
printed beside it). Exits 1 when any round's ratio is below ``--target`` in either mode. ``--keep-heap``
keeps freed memory in glibc's heap on both sides alike (see :func:`keep_heap`).

Setup (once, ~80 s): ``../shared/official_savi_bench/official_savi_setup.sh SRC_GIT VENV WORK``. Run:
``python bench/bench_vs_official.py --official-src WORK --official-python VENV/bin/python [--threads 2]``.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from savi_core.config import preset
from savi_core.initializers import Conditioning
from savi_core.savi import SAVi

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_BENCH = REPO.parent / "shared" / "official_savi_bench" / "official_savi_bench.py"
# Official mode name -> the project's mode doing the same work (attention = decoder switched off).
MODES = {"decoder": "decoder", "nodecoder": "attention"}
# glibc mallopt parameters; 32 MiB is the largest mmap threshold it accepts on 64-bit.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 25)}


def keep_heap() -> None:
    """Stop glibc from unmapping freed multi-MB activations only to fault them back in on the next frame
    (preset S's decoder step: ~6k page faults, ~10 ms of system time, 1 thread); this process now, the
    official one through the environment."""
    libc = ctypes.CDLL("libc.so.6")
    if not (libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) and libc.mallopt(M_MMAP_THRESHOLD, 1 << 25)):
        sys.exit("mallopt refused the heap thresholds")


@dataclasses.dataclass
class Timing:
    median_ms: float
    mean_ms: float


def run_official(args: argparse.Namespace) -> dict[str, Timing]:
    """One official round in a fresh process: ``{official mode: Timing}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "official.json"
        cmd = [args.official_python, str(args.official_bench), "--src", str(args.official_src),
               "--num-slots", str(args.slots), "--threads", str(args.threads), "--frames", str(args.frames),
               "--warmup", str(args.warmup), "--rounds", "1", "--json", str(out)]
        env = {**os.environ, **(HEAP_ENV if args.keep_heap else {})}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            sys.exit(f"official bench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        results = json.loads(out.read_text())["results"]
    return {r["mode"]: Timing(r["median_ms"], r["round_means_ms"][0]) for r in results}


class Project:
    """Preset S streamed frame by frame through ``SAVi.step`` under inference mode, as the node runs it."""

    def __init__(self, slots: int, frames: int) -> None:
        torch.manual_seed(0)
        self.model = SAVi(dataclasses.replace(preset("S"), num_slots=slots)).eval()
        self.frames = torch.rand(8, 1, 3, 64, 64)
        self.frames_per_round = frames
        with torch.inference_mode():
            boxes = torch.rand(1, self.model.num_object_slots, 4)
            self.slots = self.model.init_slots(Conditioning(boxes=boxes))

    def time_mode(self, mode: str, warmup: int) -> Timing:
        slots, times = self.slots, []
        with torch.inference_mode():
            for i in range(warmup + self.frames_per_round):
                start = time.perf_counter()
                slots = self.model.step(self.frames[i % len(self.frames)], slots, decode=mode).predicted
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
        return Timing(statistics.median(times), statistics.fmean(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-src", type=Path, required=True, help="WORK_DIR of the setup (holds savi/)")
    parser.add_argument("--official-python", required=True, help="the setup's VENV/bin/python")
    parser.add_argument("--official-bench", type=Path, default=OFFICIAL_BENCH)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads = XLA intra-op threads")
    parser.add_argument("--slots", type=int, default=11)
    parser.add_argument("--frames", type=int, default=30, help="timed streamed frames per round and mode (>= 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--keep-heap", action="store_true", help="glibc keeps freed memory, both sides")
    parser.add_argument("--target", type=float, default=2.0, help="minimum official/project ratio per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_heap:
        keep_heap()
    project = Project(args.slots, args.frames)
    print(f"preset S vs official-jax S: slots={args.slots} threads={args.threads} batch=1 64x64, "
          f"{args.warmup} warm-up + {args.frames} timed frames per round and mode; ms = per-frame median (mean)"
          f"{'; heap kept (both sides)' if args.keep_heap else ''}")
    ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        timings: dict[str, dict[str, Timing]] = {}
        for side in (("official", "project") if r % 2 == 0 else ("project", "official")):
            if side == "official":
                timings[side] = run_official(args)
            else:
                timings[side] = {off: project.time_mode(mine, args.warmup) for off, mine in MODES.items()}
        parts = []
        for off, mine in MODES.items():
            theirs, ours = timings["official"][off], timings["project"][off]
            ratio = theirs.median_ms / ours.median_ms
            ratios[off].append(ratio)
            parts.append(f"{mine} official {theirs.median_ms:.1f} ({theirs.mean_ms:.1f}) "
                         f"project {ours.median_ms:.2f} ({ours.mean_ms:.2f}) = {ratio:.2f}x")
        print(f"round {r + 1} (load {load:.1f}, first {'official' if r % 2 == 0 else 'project'}): " + "; ".join(parts),
              flush=True)
    worst = {off: min(values) for off, values in ratios.items()}
    print("ratios official/project: " + "; ".join(
        f"{MODES[off]} min {worst[off]:.2f}x median {statistics.median(ratios[off]):.2f}x" for off in MODES)
        + f" (target >= {args.target:.1f}x every round)")
    return 0 if min(worst.values()) >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
