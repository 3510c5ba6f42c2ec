"""Benchmark: the real `savi_tracker` node over DDS, from image publish to both outputs received.

Starts the node in a subprocess (the packaged default model unless --checkpoint), then per image size
runs two modes:
* lock-step: publish one image, wait for its `tracks` and `masks`, repeat;
* streaming: a camera at --rate Hz and a detector on every --detect-every-th frame, for --seconds.
Prints per size and mode: end-to-end latency p50/p90/p99/max (publish -> both outputs), the node's
own step time (its /diagnostics `step_ms_mean`), the overhead (the difference of the medians), output
rate, frames without output, and the node's RSS at start and end. Scenes are the synthetic demo
scenes (boxes from their ground truth on the first frame). The client shares the machine's cores with
the node: say so when comparing numbers.

Run: ``.venv/bin/python bench/bench_latency.py [--sizes 320x240 640x480 1280x720] [--seconds 30]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from node_client import RELIABLE, Client, rss_mb, tracker_and_client
from savi_scenes import SceneConfig, generate_scene


class LatencyClient(Client):
    """Records when each stamp's outputs arrive, and the node's step time from /diagnostics."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, "latency_client")
        self.sent: dict[int, float] = {}
        self.got: dict[int, set[str]] = {}
        self.done: dict[int, float] = {}
        self.step_ms: list[float] = []
        self.node.create_subscription(Detection2DArray, "tracks", lambda m: self._arrived(m, "tracks"), RELIABLE)
        self.node.create_subscription(Image, "masks", lambda m: self._arrived(m, "masks"), RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.start()

    def _arrived(self, msg, kind: str) -> None:
        now = time.perf_counter()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            kinds = self.got.setdefault(stamp, set())
            kinds.add(kind)
            if len(kinds) == 2 and stamp in self.sent:
                self.done[stamp] = now - self.sent[stamp]

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "step_ms_mean" in values and float(values.get("fps", 0)) > 0:
                with self.lock:
                    self.step_ms.append(float(values["step_ms_mean"]))

    def publish(self, stamp_ns: int, frame: np.ndarray, boxes, with_ids: bool = True) -> None:
        with self.lock:
            self.sent[stamp_ns] = time.perf_counter()
        super().publish(stamp_ns, frame, boxes, with_ids)

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


def run_mode(
    client: LatencyClient, scene, mode: str, seconds: float, rate: float, detect_every: int, stamp0: int
) -> dict[str, float]:
    client.reset_records()
    h, w = scene.video.shape[1:3]
    frames = scene.video.shape[0]
    start, sent, t = time.perf_counter(), 0, 0
    while time.perf_counter() - start < seconds:
        index = t % frames
        boxes = (
            pixel_boxes(scene, index, w, h) if (index == 0 or (mode == "streaming" and t % detect_every == 0)) else None
        )
        stamp = stamp0 + t * int(1e9 / rate)
        client.publish(stamp, scene.video[index], boxes)
        sent += 1
        if mode == "lock-step":
            deadline = time.perf_counter() + 5.0
            while stamp not in client.done and time.perf_counter() < deadline:
                time.sleep(0.0005)
        else:
            next_at = start + (t + 1) / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
        t += 1
    time.sleep(1.0)  # let the last outputs arrive
    with client.lock:
        latencies = sorted(1000 * v for v in client.done.values())
        steps = list(client.step_ms)
    elapsed = time.perf_counter() - start
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
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480", "1280x720"])
    parser.add_argument("--modes", nargs="+", default=["lock-step", "streaming"], choices=["lock-step", "streaming"])
    parser.add_argument("--seconds", type=float, default=20.0, help="per size and mode")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the streaming mode (Hz)")
    parser.add_argument("--detect-every", type=int, default=6, help="detections every N-th frame (30 Hz / 6 = 5 Hz)")
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args()
    params = (f"checkpoint:={args.checkpoint}", "image_qos:=reliable")
    with tracker_and_client("latency", LatencyClient, *params) as (node, client):
        rss_start = rss_mb(node.pid)
        print(
            f"node pid {node.pid}, RSS at start {rss_start:.0f} MB; client and node share this machine's "
            f"{os.cpu_count()} cores"
        )
        print(
            f"{'size':>9} {'mode':>9} {'sent':>5} {'out/s':>6} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6} "
            f"{'step':>6} {'overhd':>6} {'no out':>6}   (ms)"
        )
        stamp0 = 10**12
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            scene = generate_scene(100_000, SceneConfig(height=h, width=w, num_frames=24, max_objects=5))
            for mode in args.modes:
                client.reset()  # each run is a new recording: its stamps start far from the last run's
                r = run_mode(client, scene, mode, args.seconds, args.rate, args.detect_every, stamp0)
                stamp0 += 10**12
                if not r.get("outputs"):
                    print(f"{size:>9} {mode:>9} {r['sent']:>5}  no outputs")
                    continue
                print(
                    f"{size:>9} {mode:>9} {r['sent']:>5} {r['rate']:6.1f} {r['p50']:6.1f} {r['p90']:6.1f} "
                    f"{r['p99']:6.1f} {r['max']:6.1f} {r['step']:6.1f} {r['overhead']:6.1f} {r['no_output']:6d}"
                )
        print(f"node RSS at end {rss_mb(node.pid):.0f} MB (start {rss_start:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
