"""Soak benchmark: the real `savi_tracker` node streaming for minutes, as on a robot, with what a day brings.

A camera at --rate Hz (640x480 by default) shows three solid rectangles moving on grey, bouncing off
the image borders; a detector without ids re-detects them on every --detect-every-th frame (30 Hz / 6
= 5 Hz). Every --event-every seconds one event of a fixed cycle happens: a click on a rectangle
(`points_click`), `add_objects` with a live track's box then `remove_track` of that track (a person re-doing
an object: no lasting duplicate, so the track count stays meaningful), `reset`, a camera
pause (--pause seconds without frames), a restarted bag clock (stamps jump back a minute: the node ends
its tracks and starts over), and malformed messages (an empty image, an unsupported encoding, a short
buffer, a non-finite box, a 5,000-digit id, a non-finite click, a prompt mask of the wrong encoding).

Prints at the end a report block fit to paste in a note: latency from publish to `tracks` (p50 / p99),
valid frames answered, every image sent accounted for by the node (answered = processed, received +
missed = sent, each received image in exactly one counter), the share of outputs whose track count equals
the object count, events and their answers, detections dropped, the node's RSS (min / max after warm-up)
and around two 4096x4096 frames (the memory must come back).

Run on an idle machine: ``.venv/bin/python bench/bench_soak.py [--seconds 1800] [--size 640x480]``.
``--offline FRAMES`` plays the same scene through the `Tracker` in this process instead (no DDS, every
frame processed, deterministic): the track-count share alone, for model and Tracker-rule work;
``--drop-share P`` skips a seeded share of the frames there, as the node drops stale ones under load.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from savi_ros_interfaces.srv import AddObjects, RemoveTrack
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray

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
    """Counts the tracks of every output with its latency, keeps the node's latest /diagnostics counters,
    and makes the day's events (clicks, services, malformed messages)."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, "soak_client")
        self.track_counts: list[int] = []
        self.ids: set[str] = set()
        self.live: list[tuple[int, tuple[float, float, float, float]]] = []  # (id, box) of the newest output
        self.counters: dict[str, str] = {}
        self.sent_at: dict[int, float] = {}  # stamp -> monotonic publish time, valid frames
        self.answered: set[int] = set()  # stamps with a `tracks` message
        self.latencies: list[float] = []  # ms, valid frames
        self.clicks = self.node.create_publisher(Point, "points_click", RELIABLE)
        self.prompt_masks = self.node.create_publisher(Image, "prompt_masks", RELIABLE)
        self.add = self.node.create_client(AddObjects, "add_objects")
        self.remove = self.node.create_client(RemoveTrack, "remove_track")
        self.calls: list[tuple[str, object]] = []  # (service, future)
        # A deep queue: "answered = processed" must not fail because this client fell behind for a moment.
        deep = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1000)
        self.node.create_subscription(Detection2DArray, "tracks", self._tracks, deep)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.start()

    def _tracks(self, msg: Detection2DArray) -> None:
        now = time.monotonic()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            self.answered.add(stamp)
            sent = self.sent_at.get(stamp)
            if sent is None:
                return
            self.latencies.append(1000.0 * (now - sent))
            self.track_counts.append(len(msg.detections))
            if os.environ.get("SOAK_TRACE"):
                print(
                    stamp,
                    [(d.id, round(d.bbox.center.position.x), round(d.bbox.size_x)) for d in msg.detections],
                    flush=True,
                )
            self.live = [(int(d.id), _xyxy(d.bbox)) for d in msg.detections]
            self.ids.update(d.id for d in msg.detections)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.node.get_namespace()):
                with self.lock:
                    self.counters = {kv.key: kv.value for kv in status.values}

    def valid(self, stamp_ns: int, frame: np.ndarray, boxes) -> None:
        with self.lock:
            self.sent_at[stamp_ns] = time.monotonic()
        self.publish(stamp_ns, frame, boxes, with_ids=False)

    def click(self, box) -> None:
        self.clicks.publish(Point(x=(box[0] + box[2]) / 2, y=(box[1] + box[3]) / 2))

    def call(self, service: str, client, request) -> None:
        self.calls.append((service, client.call_async(request)))

    def add_objects(self, box) -> None:
        bbox = BoundingBox2D(size_x=box[2] - box[0], size_y=box[3] - box[1])
        bbox.center.position.x, bbox.center.position.y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        self.call("add_objects", self.add, AddObjects.Request(boxes=[bbox]))

    def remove_and_add(self) -> bool:
        """A person re-does an object: `add_objects` with the first live track's box (a new track over it,
        by the contract), and once that is answered `remove_track` of the old one; False with no live track.
        In the other order the detector re-detects the object between the two calls and starts a track that
        the added one then duplicates."""
        with self.lock:
            live = list(self.live)
        if not live:
            return False
        track_id, box = live[0]
        self.add_objects(box)
        deadline = time.monotonic() + 1.0
        while not self.calls[-1][1].done() and time.monotonic() < deadline:
            time.sleep(0.001)
        self.call("remove_track", self.remove, RemoveTrack.Request(track_id=track_id))
        return True

    def malformed(self, stamp_ns: int, width: int, height: int, box) -> int:
        """One of each malformed class, stamped on the camera's timeline; returns the images among them. The
        detection with a 5,000-digit id has ``box`` (a rectangle's): its object is tracked, no track is added."""
        stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        images = [
            Image(height=0, width=0, encoding="rgb8", step=0),
            Image(height=height, width=width, encoding="yuv422", step=2 * width, data=bytes(2 * width * height)),
            Image(height=height, width=width, encoding="rgb8", step=3 * width, data=b"\x01" * 100),
        ]
        for image in images:
            image.header.stamp = stamp
            self.image_pub.publish(image)
        dets = Detection2DArray()
        dets.header.stamp = stamp
        centre_size = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1])
        for det_id, (cx, cy, sx, sy) in (("5", (math.nan, 5.0, 4.0, 4.0)), ("9" * 5000, centre_size)):
            det = Detection2D(id=det_id)
            det.bbox.center.position.x, det.bbox.center.position.y = cx, cy
            det.bbox.size_x, det.bbox.size_y = sx, sy
            dets.detections.append(det)
        self.det_pub.publish(dets)
        self.clicks.publish(Point(x=math.nan, y=1.0))
        mask = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(48))
        mask.header.stamp = stamp
        self.prompt_masks.publish(mask)
        return len(images)


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


EVENTS = ("click", "remove_and_add", "malformed", "pause", "malformed", "reset", "clock_restart")


def _xyxy(bbox: BoundingBox2D) -> tuple[float, float, float, float]:
    cx, cy = bbox.center.position.x, bbox.center.position.y
    return (cx - bbox.size_x / 2, cy - bbox.size_y / 2, cx + bbox.size_x / 2, cy + bbox.size_y / 2)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--detect-every", type=int, default=6)
    parser.add_argument("--event-every", type=float, default=4.0, help="seconds between the day's events")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds of a camera pause")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--log", type=Path, help="write the node's log (stderr) here")
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
    load_start = os.getloadavg()
    events: dict[str, int] = {}
    params = (f"checkpoint:={args.checkpoint}", *args.param)
    with tracker_and_client("soak", SoakClient, *params, log=args.log) as (node, client):
        scene = Rectangles(width, height)
        rss: list[tuple[float, float]] = [(0.0, rss_mb(node.pid))]
        start, t, detections_sent, images_sent, valid_sent = time.perf_counter(), 0, 0, 0, 0
        base_ns = 10**13  # the camera's timeline: base + elapsed wall time (a restarted bag clock moves base back)
        next_rss, next_event, event_index, paused_until = 10.0, args.event_every, 0, 0.0
        boxes: list = []
        while time.perf_counter() - start < args.seconds:
            elapsed = time.perf_counter() - start
            stamp = base_ns + int(elapsed * 1e9)
            if elapsed >= next_event:
                event = EVENTS[event_index % len(EVENTS)]
                event_index += 1
                next_event += args.event_every
                events[event] = events.get(event, 0) + 1
                if os.environ.get("SOAK_TRACE"):
                    print("event", event, "before", stamp, flush=True)
                if event == "click" and boxes:
                    client.click(boxes[0])
                elif event == "remove_and_add" and not client.remove_and_add():
                    events[event] -= 1
                elif event == "reset":
                    client.call("reset", client.reset_client, Trigger.Request())
                elif event == "pause":
                    paused_until = elapsed + args.pause
                elif event == "clock_restart":
                    base_ns -= 60 * 10**9
                    stamp -= 60 * 10**9
                elif event == "malformed" and boxes:
                    images_sent += client.malformed(stamp - 1000, width, height, boxes[2])
            if elapsed >= paused_until:
                frame, boxes = scene.frame()
                with_dets = t % args.detect_every == 0
                detections_sent += with_dets
                client.valid(stamp, frame, boxes if with_dets else None)
                images_sent += 1
                valid_sent += 1
            t += 1
            if elapsed >= next_rss:
                rss.append((elapsed, rss_mb(node.pid)))
                next_rss += 10.0
            time.sleep(max(0.0, start + t / args.rate - time.perf_counter()))
        time.sleep(3.0)  # the last outputs
        rss.append((time.perf_counter() - start, rss_mb(node.pid)))
        # Two frames of the largest size the node accepts by default (max_image_pixels 4096x4096), then
        # normal frames again: the memory they took must be handed back.
        before_large = rss_mb(node.pid)
        big = Rectangles(4096, 4096)
        stamp = base_ns + int((time.perf_counter() - start) * 1e9)
        for i in range(2):
            frame, _ = big.frame()
            client.publish(stamp + i * 10**8, frame, None)
            images_sent += 1
            time.sleep(8.0)
        peak_large = rss_mb(node.pid)
        for i in range(30):
            frame, _ = scene.frame()
            client.publish(stamp + (i + 2) * 10**8, frame, None)
            images_sent += 1
            time.sleep(1.0 / args.rate)
        time.sleep(5.0)
        after_large = rss_mb(node.pid)
        deadline = time.monotonic() + 30.0  # every service call answered, and a /diagnostics report after it all
        while time.monotonic() < deadline and not all(f.done() for _, f in client.calls):
            time.sleep(0.1)
        time.sleep(2.5)
        with client.lock:
            counts, ids, counters = list(client.track_counts), sorted(client.ids, key=int), dict(client.counters)
            latencies, answered = list(client.latencies), set(client.answered)
            valid_answered = len(answered & set(client.sent_at))
        calls = {}
        for service, future in client.calls:
            done, ok = calls.get(service, (0, 0))
            calls[service] = (done + future.done(), ok + bool(future.done() and future.result().success))
        alive = node.poll() is None
    c = {k: int(v) for k, v in counters.items() if v.lstrip("-").isdigit()}
    received, missed, processed = c.get("images", 0), c.get("missed_images", 0), c.get("processed", 0)
    end_counters = (
        "processed",
        "dropped_frames",
        "unsupported_images",
        "bad_images",
        "oversized_images",
        "step_errors",
    )
    accounted = sum(c.get(k, 0) for k in end_counters)
    right = sum(n == 3 for n in counts)
    warm = [m for s, m in rss if s >= 30.0] or [rss[-1][1]]
    sums_ok = received + missed == images_sent and accounted == received and len(answered) == processed
    ok = alive and sums_ok and all(done == sum(1 for s, _ in client.calls if s == k) for k, (done, _) in calls.items())
    lines = [
        f"soak: {width}x{height} at {args.rate:g} Hz for {args.seconds:g} s, detector every {args.detect_every} "
        f"frames, an event every {args.event_every:g} s, checkpoint {args.checkpoint}; client and node share "
        f"{os.cpu_count()} cores, load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        f"latency publish -> tracks (ms, valid frames answered): p50 {percentile(latencies, 50):.1f}, "
        f"p99 {percentile(latencies, 99):.1f}, max {max(latencies, default=math.nan):.1f}",
        f"valid frames: sent {valid_sent}, answered {valid_answered} "
        f"({100 * valid_answered / max(1, valid_sent):.1f}%); "
        f"the rest replaced latest-first or dropped, each in a node counter (below)",
        f"images sent {images_sent} = received {received} + missed {missed}: "
        f"{'ok' if received + missed == images_sent else 'MISMATCH'}; received ended in one counter: "
        + ", ".join(f"{k} {c.get(k, '?')}" for k in end_counters)
        + f" = {accounted}: {'ok' if accounted == received else 'MISMATCH'}; answered {len(answered)} = processed "
        f"{processed}: {'ok' if len(answered) == processed else 'MISMATCH'}",
        f"detection messages sent {detections_sent} (+{events.get('malformed', 0)} malformed): dropped "
        f"{c.get('dropped_detections', '?')} (reset and clock restarts forget waiting ones), acted late "
        f"{c.get('late_detections', '?')}, bad detections {c.get('bad_detections', '?')}, ids ignored "
        f"{c.get('ignored_ids', '?')}",
        "events: "
        + ", ".join(f"{k} {v}" for k, v in events.items())
        + "; service calls answered / succeeded: "
        + ", ".join(f"{k} {done}/{ok}" for k, (done, ok) in calls.items())
        + f"; time jumps {c.get('time_jumps', '?')}, prompts {c.get('prompts', '?')}, refused prompts "
        f"{c.get('refused_prompts', '?')}, step errors {c.get('step_errors', '?')}",
        f"outputs of valid frames {len(counts)}: track count == 3 in {100 * right / max(1, len(counts)):.2f}% "
        f"(more: {sum(n > 3 for n in counts)}, fewer: {sum(n < 3 for n in counts)}; resets, removals and clock "
        f"restarts end tracks on purpose); {len(ids)} track ids published",
        "node RSS (MB): "
        + f"start {rss[0][1]:.0f}, after warm-up (30 s) min {min(warm):.0f} max {max(warm):.0f} "
        + f"(spread {max(warm) - min(warm):.0f}), end {rss[-1][1]:.0f}; two 4096x4096 frames: {before_large:.0f} "
        + f"before, {peak_large:.0f} after them, {after_large:.0f} after 30 normal frames and 5 s",
        f"node alive at the end: {alive}",
        f"verdict: {'PASS' if ok else 'FAIL'} (node alive, sums consistent, every service call answered)",
    ]
    print("```")
    print("\n".join(lines))
    print("```")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
