"""Benchmark: the bare 640x480 `Tracker.step` under several libgomp spin counts, paired.

One process per ``GOMP_SPINCOUNT`` setting ("default": unset, libgomp's 300,000) loads the node's tracker
(as `bench_latency.py`'s bare step does: loaded in a thread that ends, stepped in another); then they take
turns, one at a time, each running one pass over the lock-step scene per round. Prints each round's median
step per setting and, per setting, the median over rounds and the median of its per-round ratio to the first
setting. ``--gap-ms`` sleeps between steps, as the node's steps are apart in lock-step (the spin then ends
before the next step starts). Turns make the settings see the same load; the ratios are what to compare.

Run: ``.venv/bin/python bench/bench_spin.py --rounds 6 default 20000`` (node default: 20000)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(size: str, gap_s: float) -> None:
    """Load the tracker, then one pass per line on stdin; print each pass's median step (ms)."""
    from bench_latency import pixel_boxes, scene_for
    from savi_core.numerics import flush_denormals
    from savi_core.tracking.tracker import Detection
    from savi_ros import params
    from savi_ros.model_store import load_tracker
    from savi_ros.openmp import in_own_thread

    flush_denormals()
    tracker, _, _ = in_own_thread(load_tracker, params.from_assignments(["checkpoint:=default"]))
    scene = scene_for(size)
    h, w = scene.video.shape[1:3]
    boxes = [
        Detection(b, class_id="object", score=0.9, det_id=str(i + 1)) for i, b in enumerate(pixel_boxes(scene, 0, w, h))
    ]

    def passes() -> None:
        for _ in sys.stdin:
            walls = []
            for index, frame in enumerate(scene.video):
                start = time.perf_counter()
                tracker.step(frame, boxes if index == 0 else None)
                walls.append(1e3 * (time.perf_counter() - start))
                time.sleep(gap_s)
            print(json.dumps(statistics.median(walls[1:])), flush=True)

    worker = threading.Thread(target=passes)
    worker.start()
    worker.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help='GOMP_SPINCOUNT values, "default" for unset')
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--gap-ms", type=float, default=0.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.size, args.gap_ms * 1e-3)
        return 0
    if not args.settings:
        parser.error("name at least one setting")
    procs = {}
    for setting in args.settings:
        env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        env.update(OMP_NUM_THREADS=str(args.threads), PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "bench")]))
        if setting != "default":
            env["GOMP_SPINCOUNT"] = setting
        command = [sys.executable, __file__, "--child", "--size", args.size, "--gap-ms", str(args.gap_ms)]
        procs[setting] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    results: dict[str, list[float]] = {s: [] for s in args.settings}
    for round_index in range(args.rounds + 1):  # the first round warms up
        for setting, proc in procs.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            value = json.loads(proc.stdout.readline())
            if round_index:
                results[setting].append(value)
        if round_index:
            shown = ", ".join(f"{s} {v[-1]:.1f}" for s, v in results.items())
            print(f"round {round_index} (load {os.getloadavg()[0]:.1f}): {shown} ms", flush=True)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    first = results[args.settings[0]]
    for setting, values in results.items():
        ratio = statistics.median(v / f for v, f in zip(values, first))
        print(f"{setting}: median {statistics.median(values):.1f} ms, ratio to {args.settings[0]} {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
