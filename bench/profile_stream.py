"""`bench_latency.py`'s streaming sequence through the Tracker in this process: what makes the node's streaming
p99, without DDS, the client or the machine's load.

The same looped 24-frame scene, boxes on every ``--detect-every``-th frame and on each loop's first frame (where
the scene's objects jump back to their start), the Tracker loaded and stepped as the node does (`settle` after
each step, where the tree has it: the node runs it once the frame is published). Prints each frame kind's step
time (the stepping thread's CPU: robust on a loaded machine; wall beside it) at p50 / p90 / p99, and the
slowest 2% of frames by CPU with what the Tracker did on them (started, ended, slept, revived). Run:
``.venv/bin/python bench/profile_stream.py [--size 640x480] [--threads 1] [--seconds 15]``; with another
checkout's code: ``cd OTHER && PYTHONPATH=$PWD python /path/to/bench/profile_stream.py``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import pixel_boxes, scene_for  # noqa: E402


EVENTS = ("started", "ended", "slept", "revived", "reclaimed")  # a result's track events, as the report names them
SETTLE_WORK_MS = 0.5  # a settle that took longer restarted slots (an idle one takes microseconds)


def stream(size: str, seconds: float, rate: float, detect_every: int, checkpoint: str) -> list[dict]:
    """One row per frame after the first loop (warm-up): index in the scene, detections or not, step CPU and
    wall ms, and the result's events."""
    from savi_core.numerics import flush_denormals
    from savi_core.tracking.tracker import Detection
    from savi_ros import params
    from savi_ros.model_store import load_tracker
    from savi_ros.openmp import in_own_thread

    flush_denormals()
    tracker, _, _ = in_own_thread(load_tracker, params.from_assignments([f"checkpoint:={checkpoint}"]))
    scene = scene_for(size)
    h, w = scene.video.shape[1:3]
    frames = scene.video.shape[0]
    rows: list[dict] = []

    def run() -> None:  # in a thread of its own, as the node's worker
        for t in range(frames + int(seconds * rate)):
            index = t % frames
            boxes = pixel_boxes(scene, index, w, h) if index == 0 or t % detect_every == 0 else None
            detections = None if boxes is None else [Detection(b, class_id="object", score=0.9) for b in boxes]
            cpu, wall = time.thread_time(), time.perf_counter()
            result = tracker.step(scene.video[index], detections, stamp=t / rate)
            cpu, wall = 1e3 * (time.thread_time() - cpu), 1e3 * (time.perf_counter() - wall)
            settle = time.thread_time()
            if hasattr(tracker, "settle"):
                tracker.settle()
            settle = 1e3 * (time.thread_time() - settle)
            if t >= frames:
                events = {k: getattr(result, k) for k in EVENTS if getattr(result, k, None)}
                rows.append({"t": t, "index": index, "detections": detections is not None, "cpu": cpu, "wall": wall,
                             "settle": settle, **events})  # fmt: skip

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return rows


def report(rows: list[dict]) -> str:
    lines = ["step ms (thread CPU; wall)        frames    p50    p90    p99    max   (wall p50, p99)"]
    kinds = {
        "all": rows,
        "loop start (objects jump back)": [r for r in rows if r["index"] == 0],
        "other detection frames": [r for r in rows if r["detections"] and r["index"] != 0],
        "plain frames": [r for r in rows if not r["detections"]],
    }
    for kind, group in kinds.items():
        if not group:
            continue
        cpu, wall = np.array([r["cpu"] for r in group]), np.array([r["wall"] for r in group])
        q = lambda a, p: float(np.percentile(a, p))  # noqa: E731
        lines.append(
            f"  {kind:31s} {len(group):5d} {q(cpu, 50):6.2f} {q(cpu, 90):6.2f} {q(cpu, 99):6.2f} {cpu.max():6.2f}"
            f"   ({q(wall, 50):.2f}, {q(wall, 99):.2f})"
        )
    cpu = np.array([r["cpu"] for r in rows])
    lines.append(f"  p99 - p50 of all frames: {np.percentile(cpu, 99) - np.percentile(cpu, 50):.2f} ms CPU")
    settles = [r["settle"] for r in rows if r["settle"] >= SETTLE_WORK_MS]
    if settles:
        lines.append(
            f"  settle after the step (the node: after publishing, before the next frame): {len(settles)} frames"
            f" restarted slots, p50 {np.percentile(settles, 50):.2f} ms CPU, max {max(settles):.2f}"
        )
    lines.append("slowest 2% by CPU (t, scene index, detections, ms, what the Tracker did, settle ms):")
    for r in sorted(rows, key=lambda r: -r["cpu"])[: max(1, len(rows) // 50)]:
        events = ", ".join(f"{k} {r[k]}" for k in EVENTS if k in r)
        row = f"  {r['t']:5d} {r['index']:3d} {str(r['detections']):5s} {r['cpu']:6.2f}"
        lines.append(f"{row}  {events}  settle {r['settle']:.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="WxH, as bench_latency.py")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--detect-every", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(report(stream(args.size, args.seconds, args.rate, args.detect_every, args.checkpoint)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
