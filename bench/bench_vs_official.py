"""Benchmark: the project's preset S against the official SAVi (JAX/Flax) in one run, rounds alternated.

Absolute times on these machines move by 2x between days and with other load, so only a ratio measured
in the same run means anything. Each round runs the official bench (``official_savi_bench.py`` in its own
virtualenv, a fresh process: decoder and nodecoder) and this project's preset S in this process (decoder
and attention mode), with the same threads, slots, batch 1, 64x64 frames, warm-up and timed frames; the
order flips every round (official first, then project first, ...) so drifting load hits both alike.
The figure compared is the per-frame median of one round's streamed frames on both sides (the mean is
printed beside it). Exits 1 when any round's ratio is below ``--target`` in either mode. ``--keep-heap``
keeps freed memory in glibc's heap on both sides alike (see :func:`keep_heap`). ``--train`` compares one
training step instead (``official_savi_train_bench.py``: forward, backward and Adam on a clip batch with the
official's loss shape, against the project's ``training.step.train_step``), alternated the same way; the
figure is the median step of each round. Each official round compiles its step afresh (minutes on a loaded
2-core machine; the compile time is printed): ``--rounds``, ``--train-steps``, ``--train-batch`` and
``--train-frames`` shorten a run, and a long one belongs under ``nohup``.

Setup (once, ~80 s): ``../shared/official_savi_bench/official_savi_setup.sh SRC_GIT VENV WORK``. Run:
``python bench/bench_vs_official.py --official-src WORK --official-python VENV/bin/python [--threads 2]``.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from savi_core.model.config import preset
from savi_core.model.initializers import Conditioning
from savi_core.model.savi import SAVi
from training.config import DataConfig, RunConfig, TrainConfig
from training.distributed import Distributed
from training.step import make_optimizer, train_step

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_BENCH = REPO.parent / "shared" / "official_savi_bench" / "official_savi_bench.py"
OFFICIAL_TRAIN_LINE = re.compile(r"train B=\d+ T=\d+: ([0-9.]+) ms/step .*compile ([0-9.]+) s")
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


def official(args: argparse.Namespace, script: Path, *options: str) -> str:
    """Run one official script in a fresh process with the shared settings; its stdout."""
    cmd = [args.official_python, str(script), "--src", str(args.official_src), "--threads", str(args.threads), *options]
    env = {**os.environ, **(HEAP_ENV if args.keep_heap else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        sys.exit(f"official bench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_official(args: argparse.Namespace) -> dict[str, Timing]:
    """One official streaming round: ``{official mode: Timing}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "official.json"
        official(
            args,
            args.official_bench,
            "--num-slots",
            str(args.slots),
            "--frames",
            str(args.frames),
            "--warmup",
            str(args.warmup),
            "--rounds",
            "1",
            "--json",
            str(out),
        )
        results = json.loads(out.read_text())["results"]
    return {r["mode"]: Timing(r["median_ms"], r["round_means_ms"][0]) for r in results}


def run_official_train(args: argparse.Namespace) -> tuple[float, float]:
    """One official training round in a fresh process: (median ms/step, seconds its jit compilation took)."""
    stdout = official(
        args,
        args.official_bench.with_name("official_savi_train_bench.py"),
        "--batch",
        str(args.train_batch),
        "--frames",
        str(args.train_frames),
        "--steps",
        str(args.train_steps),
    )
    match = OFFICIAL_TRAIN_LINE.search(stdout)
    if match is None:
        sys.exit(f"no result line in the official training bench's output:\n{stdout}")
    return float(match.group(1)), float(match.group(2))


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


class ProjectTrain:
    """The project's own training step (``training.step.train_step``: loss, clipping, schedule, Adam) on the
    official training bench's shapes: preset S, a ``[B, T]`` 64x64 clip batch conditioned on 5 boxes and 5
    padding rows, flow target. The official bench's step has no clipping, so this side does slightly more."""

    def __init__(self, batch: int, frames: int) -> None:
        torch.manual_seed(0)
        model = preset("S")
        self.cfg = RunConfig(
            model=model,
            data=DataConfig(max_instances=model.num_object_slots, window=frames),
            train=TrainConfig(batch_size=batch),
        )
        self.model = SAVi(model).train()
        self.optimizer = make_optimizer(self.model, self.cfg.train)
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)
        boxes = torch.tensor([[0.1, 0.1, 0.4, 0.4]] * 5 + [[0.0, 0.0, 0.0, 0.0]] * 5).expand(batch, -1, -1)
        self.batch = {
            "video": torch.rand(batch, frames, 3, 64, 64),
            "target": torch.rand(batch, frames, 3, 64, 64),
            "frame_mask": torch.ones(batch, frames, dtype=torch.bool),
            "cond_boxes": boxes,
            "conditioned": (boxes.abs().sum(-1) > 0).float(),
        }
        self.step_index = 0

    def step(self) -> None:
        train_step(
            self.model,
            self.model,
            self.optimizer,
            self.scaler,
            dict(self.batch),
            self.cfg,
            self.step_index,
            None,
            Distributed(),
        )
        self.step_index += 1

    def time_steps(self, steps: int) -> float:
        """Median ms of ``steps`` steps after one untimed."""
        times = []
        for i in range(steps + 1):
            start = time.perf_counter()
            self.step()
            if i:
                times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def compare_training(args: argparse.Namespace) -> float:
    """Alternated training rounds; the worst ratio."""
    project = ProjectTrain(args.train_batch, args.train_frames)
    print(
        f"training step, preset S vs official-jax S: B={args.train_batch} T={args.train_frames} 64x64, "
        f"threads={args.threads}, median of {args.train_steps} steps per round"
    )
    ratios = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        timings, compile_s, started = {}, 0.0, time.perf_counter()
        for side in ("official", "project") if r % 2 == 0 else ("project", "official"):
            if side == "official":
                timings[side], compile_s = run_official_train(args)
            else:
                timings[side] = project.time_steps(args.train_steps)
        ratios.append(timings["official"] / timings["project"])
        print(
            f"round {r + 1} (load {load:.1f}, first {'official' if r % 2 == 0 else 'project'}): official "
            f"{timings['official']:.0f} ms/step, project {timings['project']:.0f} ms/step = {ratios[-1]:.2f}x "
            f"[official compile {compile_s:.0f} s; round {time.perf_counter() - started:.0f} s]",
            flush=True,
        )
    print(
        f"training ratio official/project: min {min(ratios):.2f}x median {statistics.median(ratios):.2f}x "
        f"(target >= {args.target:.1f}x every round)"
    )
    return min(ratios)


def compare_streaming(args: argparse.Namespace) -> float:
    """Alternated streaming rounds in both modes; the worst ratio."""
    project = Project(args.slots, args.frames)
    print(
        f"preset S vs official-jax S: slots={args.slots} threads={args.threads} batch=1 64x64, "
        f"{args.warmup} warm-up + {args.frames} timed frames per round and mode; ms = per-frame median (mean)"
        f"{'; heap kept (both sides)' if args.keep_heap else ''}"
    )
    ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        timings: dict[str, dict[str, Timing]] = {}
        for side in ("official", "project") if r % 2 == 0 else ("project", "official"):
            if side == "official":
                timings[side] = run_official(args)
            else:
                timings[side] = {off: project.time_mode(mine, args.warmup) for off, mine in MODES.items()}
        parts = []
        for off, mine in MODES.items():
            theirs, ours = timings["official"][off], timings["project"][off]
            ratio = theirs.median_ms / ours.median_ms
            ratios[off].append(ratio)
            parts.append(
                f"{mine} official {theirs.median_ms:.1f} ({theirs.mean_ms:.1f}) "
                f"project {ours.median_ms:.2f} ({ours.mean_ms:.2f}) = {ratio:.2f}x"
            )
        print(
            f"round {r + 1} (load {load:.1f}, first {'official' if r % 2 == 0 else 'project'}): " + "; ".join(parts),
            flush=True,
        )
    worst = {off: min(values) for off, values in ratios.items()}
    print(
        "ratios official/project: "
        + "; ".join(f"{MODES[off]} min {worst[off]:.2f}x median {statistics.median(ratios[off]):.2f}x" for off in MODES)
        + f" (target >= {args.target:.1f}x every round)"
    )
    return min(worst.values())


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
    parser.add_argument("--train", action="store_true", help="compare one training step instead")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-frames", type=int, default=6)
    parser.add_argument(
        "--train-steps", type=int, default=4, help="timed steps per round and side (each side also runs one untimed)"
    )
    parser.add_argument("--target", type=float, default=2.0, help="minimum official/project ratio per round")
    args = parser.parse_args()
    for name in ("rounds", "train_batch", "train_frames", "train_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    torch.set_num_threads(args.threads)
    if args.keep_heap:
        keep_heap()
    worst = compare_training(args) if args.train else compare_streaming(args)
    return 0 if worst >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
