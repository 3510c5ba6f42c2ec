"""Soak benchmark: the real `savi_tracker` node streaming for minutes, as on a robot.

A camera at --rate Hz (640x480 by default) shows three solid rectangles moving on grey, bouncing off
the image borders; a detector without ids re-detects them on every --detect-every-th frame (30 Hz / 6
= 5 Hz). Prints at the end: the share of outputs whose track count equals the object count (target
>= 99%), the track ids ever published, detection messages sent against what the node counts as
dropped (target 0), every image accounted for in the node's /diagnostics counters (processed +
dropped + ...), the node's RSS over time (target flat, +-20 MB after warm-up), and its RSS around two
4096x4096 frames (the memory must come back).

Run on an idle machine: ``.venv/bin/python bench/bench_soak.py [--seconds 300] [--size 640x480]``.
``--offline FRAMES`` plays the same scene through the `Tracker` in this process instead (no DDS, every
frame processed, deterministic): the track-count share alone, for model and Tracker-rule work;
``--drop-share P`` skips a seeded share of the frames there, as the node drops stale ones under load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from vision_msgs.msg import Detection2DArray

from node_client import RELIABLE, Client, rss_mb, tracker_and_client

COLOURS = ((220, 40, 40), (40, 200, 60), (40, 80, 220))


class Rectangles:
    """Three solid rectangles in their own horizontal bands, bouncing left-right at constant speeds."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.size = (width // 8, height // 6)  # w, h
        self.rows = [height // 8 + i * height // 3 for i in range(3)]
        self.x = [width * 0.1, width * 0.5, width * 0.3]
        self.vx = [width / 200, -width / 150, width / 250]  # pixels per frame

    def frame(self) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
        image = np.full((self.height, self.width, 3), 128, np.uint8)
        boxes = []
        w, h = self.size
        for i in range(3):
            x0, y0 = int(self.x[i]), self.rows[i]
            image[y0 : y0 + h, x0 : x0 + w] = COLOURS[i]
            boxes.append((float(x0), float(y0), float(x0 + w), float(y0 + h)))
            self.x[i] += self.vx[i]
            if self.x[i] < 0 or self.x[i] + w > self.width:
                self.vx[i] = -self.vx[i]
                self.x[i] = min(max(self.x[i], 0.0), self.width - w)
        return image, boxes


class SoakClient(Client):
    """Counts the tracks of every output and keeps the node's latest /diagnostics counters."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, "soak_client")
        self.track_counts: list[int] = []
        self.ids: set[str] = set()
        self.counters: dict[str, str] = {}
        self.node.create_subscription(Detection2DArray, "tracks", self._tracks, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.start()

    def _tracks(self, msg: Detection2DArray) -> None:
        with self.lock:
            self.track_counts.append(len(msg.detections))
            if os.environ.get("SOAK_TRACE"):
                print(
                    msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                    [(d.id, round(d.bbox.center.position.x), round(d.bbox.size_x)) for d in msg.detections],
                    flush=True,
                )
            self.ids.update(d.id for d in msg.detections)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.node.get_namespace()):
                with self.lock:
                    self.counters = {kv.key: kv.value for kv in status.values}


def offline(args: argparse.Namespace, width: int, height: int) -> int:
    """The scene through the Tracker directly; ``--param`` values set TrackerConfig fields."""
    import torch
    import yaml

    from savi_core.model.checkpoint import load_checkpoint
    from savi_core.tracking.tracker import Detection, Tracker
    from savi_core.tracking.tracker_config import TrackerConfig
    from savi_ros.model_store import resolve_checkpoint

    torch.set_num_threads(1)
    fields = {}
    for param in args.param:
        name, _, value = param.partition(":=")
        fields[name] = yaml.safe_load(value)
    model, _ = load_checkpoint(resolve_checkpoint(args.checkpoint))
    tracker = Tracker(model, TrackerConfig(**fields), device="cpu")
    scene = Rectangles(width, height)
    skip = np.random.default_rng(0)
    counts, ids, waiting = [], set(), None
    for t in range(args.offline):
        frame, boxes = scene.frame()
        if t % args.detect_every == 0:
            waiting = [Detection(box) for box in boxes]
        if t and skip.random() < args.drop_share:  # dropped as stale: its detections act on the next frame
            continue
        tracks = tracker.step(frame, waiting).tracks
        waiting = None
        counts.append(len(tracks))
        ids.update(track.track_id for track in tracks)
    right = sum(c == 3 for c in counts)
    print(
        f"{width}x{height}, {args.offline} frames through the Tracker ({len(counts)} processed), detector every "
        f"{args.detect_every} frames, {fields or 'default parameters'}: "
        f"track count == 3 in {100 * right / len(counts):.2f}% "
        f"(more: {sum(c > 3 for c in counts)}, fewer: {sum(c < 3 for c in counts)}); {len(ids)} track ids published"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--detect-every", type=int, default=6)
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="a node parameter (repeatable), e.g. max_area_growth:=4",
    )
    parser.add_argument("--offline", type=int, metavar="FRAMES", help="through the Tracker in-process instead")
    parser.add_argument(
        "--drop-share",
        type=float,
        default=0.0,
        metavar="P",
        help="--offline: skip each frame with this probability (seeded), as the node drops stale "
        "frames under load; a skipped frame's detections act on the next processed one",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.offline:
        return offline(args, width, height)
    with tracker_and_client("soak", SoakClient, f"checkpoint:={args.checkpoint}", *args.param) as (node, client):
        scene = Rectangles(width, height)
        rss: list[tuple[float, float]] = [(0.0, rss_mb(node.pid))]
        start, t, detections_sent = time.perf_counter(), 0, 0
        next_rss = 10.0
        while time.perf_counter() - start < args.seconds:
            frame, boxes = scene.frame()
            with_dets = t % args.detect_every == 0
            detections_sent += with_dets
            client.publish(10**12 + t * int(1e9 / args.rate), frame, boxes if with_dets else None, with_ids=False)
            t += 1
            elapsed = time.perf_counter() - start
            if elapsed >= next_rss:
                rss.append((elapsed, rss_mb(node.pid)))
                next_rss += 10.0
            time.sleep(max(0.0, start + t / args.rate - time.perf_counter()))
        time.sleep(3.0)  # the last outputs and a /diagnostics report after them
        rss.append((time.perf_counter() - start, rss_mb(node.pid)))
        with client.lock:
            counts, ids, counters = list(client.track_counts), sorted(client.ids, key=int), dict(client.counters)
        # Two frames of the largest size the node accepts by default (max_image_pixels 4096x4096), then
        # normal frames again: the memory they took must be handed back.
        before_large = rss_mb(node.pid)
        big = Rectangles(4096, 4096)
        for i in range(2):
            frame, _ = big.frame()
            client.publish(10**12 + (t + i) * int(1e9 / args.rate), frame, None)
            time.sleep(8.0)
        peak_large = rss_mb(node.pid)
        for i in range(30):
            frame, _ = scene.frame()
            client.publish(10**12 + (t + 2 + i) * int(1e9 / args.rate), frame, None)
            time.sleep(1.0 / args.rate)
        time.sleep(5.0)
        after_large = rss_mb(node.pid)
    right = sum(c == 3 for c in counts)
    print(
        f"{width}x{height} at {args.rate:g} Hz for {args.seconds:g} s, detector every {args.detect_every} frames; "
        f"client and node share {os.cpu_count()} cores"
    )
    print(
        f"outputs {len(counts)}: track count == 3 in {100 * right / max(1, len(counts)):.2f}% "
        f"(more: {sum(c > 3 for c in counts)}, fewer: {sum(c < 3 for c in counts)}); track ids published {ids}"
    )
    accounted = ("processed", "dropped_frames", "unsupported_images", "bad_images", "oversized_images")
    in_counters = sum(int(counters.get(k, 0)) for k in accounted)
    print(
        f"images sent {t}: "
        + ", ".join(f"{k} {counters.get(k, '?')}" for k in accounted)
        + f" (sum {in_counters}, unaccounted {t - in_counters})"
    )
    print(
        f"detection messages sent {detections_sent}: dropped {counters.get('dropped_detections', '?')}, "
        f"acted late {counters.get('late_detections', '?')}"
    )
    warm = [m for s, m in rss if s >= 30.0] or [rss[-1][1]]
    print(
        "node RSS (MB) at "
        + ", ".join(f"{s:.0f}s {m:.0f}" for s, m in rss)
        + f"; after warm-up (30 s) min {min(warm):.0f} max {max(warm):.0f} (spread {max(warm) - min(warm):.0f})"
    )
    print(
        f"two 4096x4096 frames: node RSS {before_large:.0f} MB before, {peak_large:.0f} MB after them, "
        f"{after_large:.0f} MB after 30 normal frames and 5 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
