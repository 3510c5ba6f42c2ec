"""Benchmark: the real `savi_tracker` node over DDS, from image publish to both outputs received.

Starts the node in a subprocess (the packaged default model unless --checkpoint), then per image size
runs two modes:
* lock-step: publish one image, wait for its `tracks` and `masks`, repeat;
* streaming: a camera at --rate Hz and a detector on every --detect-every-th frame, for --seconds.
Prints per size and mode: end-to-end latency p50/p90/p99/max (publish -> both outputs), the node's
own step time (its /diagnostics `step_ms_mean`), output rate, frames without output, and the node's RSS
at start and end. Two overheads: `ovh/bare`, end-to-end p50 minus the median of a bare `Tracker.step` on
the same frames and detections in a separate process while the node is not running (measured before
and after the node's runs, their mean is the reference), and `ovh/node`, end-to-end p50 minus the
node's own step (which hides what the node costs its step). Scenes are the synthetic demo scenes (boxes
from their ground truth on the first frame). The client shares the machine's cores with the node: say
so when comparing numbers.

``--node-tree DIR`` runs the node (and the bare step) from another checkout, for before/after
comparisons in alternating runs; ``--profile DIR`` runs it under `bench/profile_node.py` and prints where
each frame's milliseconds go between receipt and publish.

Run: ``.venv/bin/python bench/bench_latency.py [--sizes 320x240 640x480 1280x720] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from node_client import RELIABLE, ROOT, Client, rss_mb, start_tracker
from savi_scenes import SceneConfig, generate_scene
from savi_ros.openmp import default_threads


def serialized_stamp_ns(data: bytes) -> int:
    """The header stamp (ns) of a serialized message that starts with a ``std_msgs/Header`` (CDR: a 4-byte
    encapsulation header, whose second byte says the byte order, then ``int32 sec, uint32 nanosec``)."""
    if len(data) < 12 or data[1] not in (0, 1):
        raise ValueError(f"not a CDR message with a header ({len(data)} bytes, encapsulation {data[:2].hex()})")
    sec, nanosec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec * 10**9 + nanosec


class LatencyClient(Client):
    """Records when each stamp's outputs arrive, and the node's step time from /diagnostics.

    It needs only the outputs' stamps, so it subscribes them raw (``raw=True``: the serialized bytes) and
    reads the stamp from them: deserialising the 600 KB masks in Python would cost this client, on the cores
    it shares with the node, time that a consumer of the masks spends anyway but that is not the node's.
    For the same reason each output is taken by a thread of its own (`savi_ros.taker`), not the executor,
    and an image's send time is taken once its message is built, just before it is published."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, "latency_client")
        self.sent: dict[int, float] = {}
        self.got: dict[int, set[str]] = {}
        self.done: dict[int, float] = {}
        self.step_ms: list[float] = []
        self.arrived = threading.Condition(self.lock)
        # Imported here: the bare step runs this file with another tree's code (--node-tree), maybe without it.
        from savi_ros.taker import OwnThreadGroup, Taker

        self.takers = []
        for msg_type, topic in ((Detection2DArray, "tracks"), (Image, "masks")):
            sub = self.node.create_subscription(
                msg_type, topic, lambda data: None, RELIABLE, raw=True, callback_group=OwnThreadGroup()
            )
            self.takers.append(
                Taker(
                    sub,
                    self.node.context,
                    lambda data, info, kind=topic: self._arrived(data, kind),
                    self._failed,
                    f"latency_{topic}",
                )
            )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.start()

    def _arrived(self, data: bytes, kind: str) -> None:
        now = time.perf_counter()
        stamp = serialized_stamp_ns(data)
        with self.lock:
            kinds = self.got.setdefault(stamp, set())
            kinds.add(kind)
            if len(kinds) == 2 and stamp in self.sent:
                self.done[stamp] = now - self.sent[stamp]
                self.arrived.notify_all()

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "step_ms_mean" in values and float(values.get("fps", 0)) > 0:
                with self.lock:
                    self.step_ms.append(float(values["step_ms_mean"]))

    def _failed(self, exc: Exception) -> None:
        print(f"taking an output failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def sending(self, stamp_ns: int) -> None:
        with self.lock:
            self.sent[stamp_ns] = time.perf_counter()

    def close(self) -> None:
        for taker in self.takers:
            taker.stop()
        super().close()

    def reset_records(self) -> None:
        with self.lock:
            self.sent.clear()
            self.got.clear()
            self.done.clear()
            self.step_ms.clear()


def pixel_boxes(scene, t: int, width: int, height: int) -> list[tuple[float, float, float, float]]:
    return [
        (float(x0) * width, float(y0) * height, float(x1) * width, float(y1) * height)
        for (y0, x0, y1, x1), vis in zip(scene.boxes[t], scene.visible[t])
        if vis
    ]


def scene_for(size: str):
    w, h = (int(v) for v in size.split("x"))
    return generate_scene(100_000, SceneConfig(height=h, width=w, num_frames=24, max_objects=5))


def bare_step(size: str, checkpoint: str, cycles: int) -> dict[str, float]:
    """Median wall time of the node's Tracker (same parameters as the node) stepping the lock-step
    sequence (boxes on each pass's first frame) in this process; run it in a process of its own.

    Loaded in a thread that ends and stepped in another, as the node does (`savi_ros.openmp` says why)."""
    from savi_core.numerics import flush_denormals
    from savi_core.tracking.tracker import Detection
    from savi_ros import params
    from savi_ros.model_store import load_tracker
    from savi_ros.openmp import in_own_thread

    flush_denormals()
    tracker, _, _ = in_own_thread(load_tracker, params.from_assignments([f"checkpoint:={checkpoint}"]))
    scene = scene_for(size)
    h, w = scene.video.shape[1:3]
    walls, totals = [], []

    def steps() -> None:
        for cycle in range(cycles + 1):  # the first pass warms up
            for index, frame in enumerate(scene.video):
                boxes = None
                if index == 0:  # as the client sends them
                    boxes = [
                        Detection(box, class_id="object", score=0.9, det_id=str(i + 1))
                        for i, box in enumerate(pixel_boxes(scene, index, w, h))
                    ]
                start = time.perf_counter()
                result = tracker.step(frame, boxes)
                if cycle:
                    walls.append(1e3 * (time.perf_counter() - start))
                    totals.append(result.timings.get("total", float("nan")))

    worker = threading.Thread(target=steps)
    worker.start()
    worker.join()
    return {"wall": statistics.median(walls), "total": statistics.median(totals), "steps": len(walls)}


def bare_step_process(size: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    """`bare_step` in a fresh process running the node tree's code, with the node's added variables."""
    tree = args.node_tree.resolve()
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--bare-step",
            size,
            "--checkpoint",
            args.checkpoint,
            "--bare-cycles",
            str(args.bare_cycles),
        ],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=path, **env),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# The streaming sequence's frames: each loop's first (the objects jump back; boxes), the detector's, the rest.
FRAME_KINDS = ("loop start", "detection", "plain")


def run_mode(
    client: LatencyClient, scene, mode: str, seconds: float, rate: float, detect_every: int, stamp0: int
) -> dict[str, float]:
    client.reset_records()
    h, w = scene.video.shape[1:3]
    frames = scene.video.shape[0]
    start, sent, t = time.perf_counter(), 0, 0
    kinds: dict[int, str] = {}
    while time.perf_counter() - start < seconds:
        index = t % frames
        boxes = (
            pixel_boxes(scene, index, w, h) if (index == 0 or (mode == "streaming" and t % detect_every == 0)) else None
        )
        stamp = stamp0 + t * int(1e9 / rate)
        kinds[stamp] = FRAME_KINDS[0] if index == 0 else FRAME_KINDS[1] if boxes is not None else FRAME_KINDS[2]
        client.publish(stamp, scene.video[index], boxes)
        sent += 1
        if mode == "lock-step":
            with client.arrived:
                client.arrived.wait_for(lambda: stamp in client.done, timeout=5.0)
        else:
            next_at = start + (t + 1) / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
        t += 1
    elapsed = time.perf_counter() - start  # the sending time: out/s is the rate the node kept up with
    time.sleep(1.0)  # let the last outputs arrive
    with client.lock:
        latencies = sorted(1000 * v for v in client.done.values())
        by_kind = {
            kind: sorted(1000 * v for s, v in client.done.items() if kinds.get(s) == kind) for kind in FRAME_KINDS
        }
        steps = list(client.step_ms)
    if not latencies:
        return {"sent": sent, "outputs": 0}
    p = lambda q: float(np.percentile(latencies, q))  # noqa: E731
    step = statistics.median(steps) if steps else float("nan")
    return {
        "sent": sent,
        "outputs": len(latencies),
        "rate": len(latencies) / elapsed,
        "p50": p(50),
        "p90": p(90),
        "p99": p(99),
        "max": latencies[-1],
        "step": step,
        "overhead": p(50) - step,
        "no_output": sent - len(latencies),
        "by_kind": {
            k: (len(v), float(np.percentile(v, 50)), float(np.percentile(v, 99))) for k, v in by_kind.items() if v
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480", "1280x720"])
    parser.add_argument("--modes", nargs="+", default=["lock-step", "streaming"], choices=["lock-step", "streaming"])
    parser.add_argument("--seconds", type=float, default=20.0, help="per size and mode")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the streaming mode (Hz)")
    parser.add_argument("--detect-every", type=int, default=6, help="detections every N-th frame (30 Hz / 6 = 5 Hz)")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--node-tree", type=Path, default=ROOT, help="the checkout whose node and Tracker run")
    parser.add_argument("--profile", type=Path, help="run the node under bench/profile_node.py, writing here")
    parser.add_argument("--cprofile", action="store_true", help="with --profile: cProfile the node's threads too")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS of the node and the bare step (0: the node's default, the cores less one)",
    )
    parser.add_argument("--bare-cycles", type=int, default=3, help="timed passes over the scene of the bare step")
    parser.add_argument("--bare-step", metavar="WxH", help=argparse.SUPPRESS)  # the bare step's own process
    args = parser.parse_args()
    if args.bare_step:
        print(json.dumps(bare_step(args.bare_step, args.checkpoint, args.bare_cycles)))
        return 0
    tree = args.node_tree.resolve()
    threads = args.threads or default_threads()
    env = {"OMP_NUM_THREADS": str(threads)}
    bare = {size: [bare_step_process(size, args, env)] for size in args.sizes}
    program = None
    if args.profile:
        program = [str(ROOT / "bench" / "profile_node.py")]
        env = dict(env, SAVI_PROFILE_DIR=str(args.profile.resolve()), SAVI_PROFILE_CPROFILE=str(int(args.cprofile)))
    node, namespace = start_tracker(
        "latency", f"checkpoint:={args.checkpoint}", "image_qos:=reliable", tree=tree, program=program, env=env
    )
    rclpy.init()
    client = None
    try:
        client = LatencyClient(namespace)
        if not client.wait_ready():
            print("the node did not come up", file=sys.stderr)
            return 1
        rss_start = rss_mb(node.pid)
        print(
            f"node pid {node.pid} ({tree}, OMP_NUM_THREADS {threads}{'' if args.threads else ', the default'}), "
            "RSS at start "
            f"{rss_start:.0f} MB; client and node share this machine's "
            f"{os.cpu_count()} cores"
        )
        stamp0 = 10**12
        results = []
        for size in args.sizes:
            scene = scene_for(size)
            for mode in args.modes:
                client.reset()  # each run is a new recording: its stamps start far from the last run's
                r = run_mode(client, scene, mode, args.seconds, args.rate, args.detect_every, stamp0)
                stamp0 += 10**12
                results.append((size, mode, r))
        print(f"node RSS at end {rss_mb(node.pid):.0f} MB (start {rss_start:.0f} MB)")
    finally:
        node.send_signal(signal.SIGINT)  # a clean stop: the profiling wrapper writes its files
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        if client is not None:
            client.close()
        rclpy.try_shutdown()
    for size in args.sizes:
        bare[size].append(bare_step_process(size, args, env))
    print(
        "bare Tracker.step (separate process, node stopped; before / after the node's runs): "
        + ", ".join(f"{size} {b[0]['wall']:.1f} / {b[1]['wall']:.1f} ms" for size, b in bare.items())
    )
    print(
        f"{'size':>9} {'mode':>9} {'sent':>5} {'out/s':>6} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} "
        f"{'step':>6} {'bare':>6} {'ovh/bare':>8} {'p99/bare':>8} {'ovh/node':>8} {'no out':>6}   (ms)"
    )
    for size, mode, r in results:
        if not r.get("outputs"):
            print(f"{size:>9} {mode:>9} {r['sent']:>5}  no outputs")
            continue
        ref = statistics.mean(b["wall"] for b in bare[size])
        print(
            f"{size:>9} {mode:>9} {r['sent']:>5} {r['rate']:6.1f} {r['p50']:6.1f} {r['p90']:6.1f} "
            f"{r['p99']:6.1f} {r['max']:6.1f} {r['step']:6.1f} {ref:6.1f} {r['p50'] - ref:8.1f} "
            f"{r['p99'] - ref:8.1f} {r['overhead']:8.1f} {r['no_output']:6d}"
        )
        if mode == "streaming":
            print("    by frame kind (outputs, p50, p99 ms): " + "; ".join(
                f"{k} {n}, {p50:.1f}, {p99:.1f}" for k, (n, p50, p99) in r["by_kind"].items()))  # fmt: skip
    if args.profile:
        sys.path.insert(0, str(ROOT / "bench"))
        from profile_node import summary

        print(summary(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
