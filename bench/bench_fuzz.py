"""Fuzz run: the real `savi_tracker` node fed every known class of malformed input, then random messages on
every input (images, detections, points, clicks, prompt masks, `reset`, `remove_track` (of a live track half
the time), `add_objects`) with a valid camera frame after every few of them. Service calls are answered
before the next message is sent.

Checks (issue 27): 0 lost valid frames (every valid frame is answered on `tracks`), 0 crashes (the node
is alive at the end, exits 0 on SIGINT, no traceback in its log), 0 hidden errors (every ERROR line of the
node's log names its exception and message), every service call answered, and /diagnostics consistent
(each received image in exactly one counter; received + missed = sent).

Random image stamps stay more than ``CLEAR_S`` away from the valid frames' timeline (the wall clock, which
is the node's ROS time): an image stamped just ahead of the camera is by the contract a newer frame that
makes the camera's next frame stale, which would be the contract working, not a lost frame. Every other
stamp is fair: zero, far past (a jump back: tracks end), far future (a poison stamp), random seconds and
out-of-range nanoseconds.

Run: ``.venv/bin/python bench/bench_fuzz.py [--random 10000] [--every 10] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from savi_ros_interfaces.srv import AddObjects, RemoveTrack
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

from node_client import RELIABLE, TracksClient, start_tracker

CLEAR_S = 2.0  # random image stamps keep this far from the valid frames' timeline
CALL_TIMEOUT_S = 30.0
VALID_SIZE = (160, 120)
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "16UC1", "yuv422", "32FC1", "bayer_rggb8", "", "RGB8"]
BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "16UC1": 2, "32FC1": 4, "yuv422": 2}
KINDS = {  # what a random message is, and how often
    "image": 0.30,
    "detections": 0.30,
    "point": 0.08,
    "click": 0.05,
    "prompt_mask": 0.09,
    "remove_track": 0.07,
    "add_objects": 0.09,
    "reset": 0.02,
}
GOOD_ERROR = [  # an ERROR line that names its cause: the exception's type and its message
    re.compile(r"tracker step failed on the image at stamp -?[\d.]+ s: [A-Za-z_][\w.]*: \S"),
    re.compile(r"processing a frame failed: [A-Za-z_][\w.]*: \S"),
]
LOG_LINE = re.compile(r"^\[(?P<level>[A-Z]+)\] \[[\d.]+\] \[[^\]]+\]: (?P<msg>.*)$")


class Fuzzer(TracksClient):
    """Publishes on every input of the node and calls its services; keeps the stamps answered on `tracks`."""

    def __init__(self, namespace: str, seed: int) -> None:
        super().__init__(namespace, "fuzz_client")
        self.rng = np.random.default_rng(seed)
        self.points = self.node.create_publisher(PointStamped, "points", RELIABLE)
        self.clicks = self.node.create_publisher(Point, "points_click", RELIABLE)
        self.masks = self.node.create_publisher(Image, "prompt_masks", RELIABLE)
        self.remove = self.node.create_client(RemoveTrack, "remove_track")
        self.add = self.node.create_client(AddObjects, "add_objects")
        self.live: list[int] = []  # track ids of the newest output: remove_track sometimes asks for one
        self.counters: dict[str, str] = {}
        self.calls = 0
        self.unanswered = 0  # service calls without an answer within CALL_TIMEOUT_S
        self.images_sent = 0
        self.valid: list[int] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.start()

    def on_tracks(self, msg: Detection2DArray) -> None:
        self.live = [int(d.id) for d in msg.detections]

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.node.get_namespace()):
                with self.lock:
                    self.counters = {kv.key: kv.value for kv in status.values}

    # ------------------------------------------------------------------ valid frames

    def valid_frame(self, with_detections: bool, timeout: float) -> bool:
        """A camera frame stamped now (three rectangles; detections of them when asked); True once answered."""
        width, height = VALID_SIZE
        frame = np.full((height, width, 3), 128, np.uint8)
        shift = len(self.valid) % 40
        boxes = [(10.0 + shift + 45 * i, 20.0 + 25 * i, 40.0 + shift + 45 * i, 50.0 + 25 * i) for i in range(3)]
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            frame[int(y0) : int(y1), int(x0) : int(x1)] = ((220, 40, 40), (40, 200, 60), (40, 80, 220))[i]
        stamp = time.time_ns()
        self.publish(stamp, frame, boxes if with_detections else None, with_ids=False)
        self.images_sent += 1
        self.valid.append(stamp)
        return self.wait_answer(stamp, timeout)

    # ------------------------------------------------------------------ random values

    def _stamp(self, avoid: bool) -> Time:
        """A random stamp; with ``avoid``, none within CLEAR_S of the valid frames' timeline (see the module)."""
        rng = self.rng
        while True:
            now = time.time()
            choice = rng.integers(7)
            if choice == 0:
                sec, nsec = 0, 0
            elif choice == 1:
                sec, nsec = int(now + rng.uniform(-4, 4)), int(rng.integers(0, 10**9))
            elif choice == 2:
                sec, nsec = int(now + 3600 * rng.uniform(1, 1000)), 0
            elif choice == 3:
                sec, nsec = int(now - 3600 * rng.uniform(1, 1000)), 0
            elif choice == 4:
                sec, nsec = int(rng.integers(-(2**31), 2**31 - 1)), int(rng.integers(0, 2**32))
            elif choice == 5:
                sec, nsec = int(now), int(rng.integers(10**9, 2**32))  # nanoseconds out of range
            else:
                sec, nsec = (self.valid[-1] // 10**9 if self.valid else int(now)), 0  # a valid frame's second
            total = sec + nsec * 1e-9
            if not avoid or not (now - CLEAR_S - 30 < total < now + CLEAR_S):
                return Time(sec=sec, nanosec=nsec)

    def _float(self) -> float:
        rng = self.rng
        special = [math.nan, math.inf, -math.inf, 1.7e308, -1.7e308, 0.0, -0.0, 1e-300, 2.0**53]
        return float(rng.choice(special)) if rng.random() < 0.2 else float(rng.uniform(-200, 900))

    def _text(self) -> str:
        rng = self.rng
        choice = rng.integers(9)
        if choice == 0:
            return ""
        if choice == 1:
            return str(int(rng.integers(0, 70000)))
        if choice == 2:
            return "9" * int(rng.integers(5, 5001))
        if choice == 3:
            return str(rng.choice([" 7 ", "+3", "1_0", "\u0663", "-1", "0", "65536", "0x10", "1e3", "\x00", "７"]))
        if choice == 4:
            return "".join(rng.choice(list(string.printable), int(rng.integers(1, 60))))
        if choice == 5:
            return "".join(chr(int(c)) for c in rng.integers(0x20, 0x2FFF, int(rng.integers(1, 20))))
        return str(int(rng.integers(1, 20)))

    def _box(self) -> BoundingBox2D:
        box = BoundingBox2D()
        box.center.position.x, box.center.position.y = self._float(), self._float()
        box.center.theta = self._float()
        box.size_x, box.size_y = self._float(), self._float()
        return box

    def _image(self, encodings: list[str]) -> Image:
        rng = self.rng
        encoding = str(rng.choice(encodings))
        if rng.random() < 0.1:
            encoding = "".join(rng.choice(list(string.ascii_letters + "0123456789_"), int(rng.integers(1, 12))))
        dims = [0, 1, 2, 3, 7, 64, 480, 641, 5000, 70000, 2**31]
        if rng.random() < 0.6:
            height, width = int(rng.integers(1, 481)), int(rng.integers(1, 641))
        else:
            height, width = int(rng.choice(dims)), int(rng.choice(dims))
        depth = BYTES_PER_PIXEL.get(encoding, int(rng.integers(1, 5)))
        step = width * depth
        if rng.random() < 0.2:
            step = int(rng.choice([0, 1, max(0, step - 1), step + 3, 2**32 - 1]))
        size = step * height if step * height <= 640 * 480 * 4 else int(rng.integers(0, 4096))
        if rng.random() < 0.2:
            size = int(rng.integers(0, size + 16))
        msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=int(rng.integers(2)))
        msg.data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        return msg

    # ------------------------------------------------------------------ random messages

    def random_message(self) -> str:
        rng = self.rng
        kind = str(rng.choice(list(KINDS), p=list(KINDS.values())))
        if kind == "image":
            msg = self._image(ENCODINGS)
            msg.header.stamp = self._stamp(avoid=True)
            msg.header.frame_id = self._text()[:100]
            self.image_pub.publish(msg)
            self.images_sent += 1
        elif kind == "detections":
            msg = Detection2DArray()
            msg.header.stamp = self._stamp(avoid=False)
            for _ in range(int(rng.integers(0, 25))):
                det = Detection2D(id=self._text(), bbox=self._box())
                for _ in range(int(rng.integers(0, 4))):
                    hyp = ObjectHypothesisWithPose()
                    hyp.hypothesis.class_id, hyp.hypothesis.score = self._text(), self._float()
                    det.results.append(hyp)
                msg.detections.append(det)
            self.det_pub.publish(msg)
        elif kind == "point":
            msg = PointStamped()
            msg.header.stamp = self._stamp(avoid=False)
            msg.point.x, msg.point.y, msg.point.z = self._float(), self._float(), self._float()
            self.points.publish(msg)
        elif kind == "click":
            self.clicks.publish(Point(x=self._float(), y=self._float(), z=self._float()))
        elif kind == "prompt_mask":
            msg = self._image(["mono8", "16UC1", "rgb8", "32FC1"])
            if rng.random() < 0.5 and msg.encoding in ("mono8", "16UC1") and len(msg.data) < 2**20:
                msg.data = (rng.integers(0, 4, len(msg.data), dtype=np.uint8) * (rng.random() < 0.5)).tobytes()
            msg.header.stamp = self._stamp(avoid=False)
            self.masks.publish(msg)
        elif kind == "remove_track":
            with self.lock:
                live = list(self.live)
            track_id = int(rng.choice(live)) if live and rng.random() < 0.5 else int(rng.integers(0, 65536))
            self._call(self.remove, RemoveTrack.Request(track_id=track_id))
        elif kind == "add_objects":
            request = AddObjects.Request()
            request.boxes = [self._box() for _ in range(int(rng.integers(0, 4)))]
            request.points = [Point(x=self._float(), y=self._float()) for _ in range(int(rng.integers(0, 3)))]
            request.ids = [self._text() for _ in range(int(rng.integers(0, 5)))]
            request.class_ids = [self._text() for _ in range(int(rng.integers(0, 5)))]
            self._call(self.add, request)
        else:
            self._call(self.reset_client, Trigger.Request())
        return kind

    def _call(self, client, request) -> None:
        """A service call, answered before anything else is sent: a `reset` still in flight when the next
        valid frame arrives would forget that frame, as the contract says, and hide a lost one."""
        self.calls += 1
        future = client.call_async(request)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.002)
        self.unanswered += not future.done()

    def known_classes(self) -> list:
        """The malformed inputs met before (the node tests' fuzz classes): (name, publish it)."""

        def image(**fields):
            def send():
                msg = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes(48 * 64 * 3))
                msg.header.stamp = fields.pop("stamp", None) or self._stamp(avoid=True)
                for key, value in fields.items():
                    setattr(msg, key, value)
                self.image_pub.publish(msg)
                self.images_sent += 1

            return send

        def detections(*items):
            def send():
                msg = Detection2DArray()
                msg.header.stamp = Time(sec=int(time.time()) - 60)
                for det_id, (cx, cy, sx, sy) in items:
                    det = Detection2D(id=det_id)
                    det.bbox.center.position.x, det.bbox.center.position.y = cx, cy
                    det.bbox.size_x, det.bbox.size_y = sx, sy
                    msg.detections.append(det)
                self.det_pub.publish(msg)

            return send

        future = Time(sec=int(time.time()) + 3600 * 24 * 365)
        return [
            ("empty image", image(height=0, width=0, step=0, data=b"")),
            ("unsupported encoding", image(encoding="yuv422")),
            ("short data", image(data=b"\x01" * 100)),
            ("step smaller than a row", image(step=64)),
            ("over max_image_pixels", image(height=5000, width=5000, step=15000, data=b"")),
            ("stamp a year ahead", image(stamp=future)),
            ("non-finite box", detections(("5", (math.nan, 5.0, 4.0, 4.0)))),
            ("overflowing box", detections(("6", (50.0, 1.7e308, 20.0, 1.7e308)))),
            ("ids that look like numbers", detections(("1_0", (48, 34, 6, 6)), ("+3", (8, 34, 6, 6)))),
            ("Arabic-Indic digit id", detections(("\u0663", (28.0, 34.0, 6.0, 6.0)))),
            ("5000-digit id", detections(("9" * 5000, (28.0, 34.0, 6.0, 6.0)))),
            ("id with spaces", detections((" 7 ", (28.0, 34.0, 6.0, 6.0)))),
        ]


def read_log(path: Path) -> tuple[list[tuple[str, str]], int]:
    """The node's log lines as (level, message), and the number of tracebacks in it."""
    text = path.read_text(errors="replace")
    lines = [(m["level"], m["msg"]) for m in map(LOG_LINE.match, text.splitlines()) if m]
    return lines, text.count("Traceback (most recent call last)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=10000, help="random messages")
    parser.add_argument("--every", type=int, default=10, help="a valid frame after this many random messages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--answer-timeout", type=float, default=30.0, help="seconds a valid frame may take")
    parser.add_argument("--log", type=Path, help="keep the node's log here (default: a temporary file)")
    args = parser.parse_args()
    log = args.log or Path(tempfile.mkstemp(prefix="savi_fuzz_", suffix=".log")[1])
    node, namespace = start_tracker("fuzz", f"checkpoint:={args.checkpoint}", log=log)
    rclpy.init()
    client = None
    start = time.monotonic()
    lost: list[tuple[str, int]] = []
    kinds: dict[str, int] = {}
    valid_total = 0
    try:
        client = Fuzzer(namespace, args.seed)
        if not (client.wait_ready() and client.add.wait_for_service(timeout_sec=60.0)):
            print("the node did not come up", file=sys.stderr)
            return 1

        def valid(after: str) -> None:
            nonlocal valid_total
            valid_total += 1
            if not client.valid_frame(valid_total % 5 == 1, args.answer_timeout):
                lost.append((after, client.valid[-1]))

        valid("start")
        for name, send in client.known_classes():
            send()
            kinds[name] = 1
            valid(name)
        last_kinds: list[str] = []
        for i in range(args.random):
            kind = client.random_message()
            kinds[kind] = kinds.get(kind, 0) + 1
            last_kinds.append(kind)
            if (i + 1) % args.every == 0:
                valid("random " + ",".join(last_kinds))
                last_kinds = []
            if (i + 1) % 1000 == 0:
                print(f"{i + 1} random messages, {valid_total} valid frames, {len(lost)} lost", flush=True)
        valid("the end")
        with client.lock:
            images = int(client.counters.get("images", -1))
        deadline = time.monotonic() + 10.0  # a /diagnostics report after the last image
        while time.monotonic() < deadline:
            time.sleep(1.2)
            with client.lock:
                if int(client.counters.get("images", -1)) == images:
                    break
                images = int(client.counters.get("images", -1))
        with client.lock:
            counters = dict(client.counters)
        calls, answered_calls = client.calls, client.calls - client.unanswered
        images_sent = client.images_sent
        alive = node.poll() is None
    finally:
        seconds = time.monotonic() - start
        node.send_signal(signal.SIGINT)
        try:
            code = node.wait(timeout=30)
        except Exception:
            node.kill()
            code = "killed after 30 s"
        if client is not None:
            client.close()
        rclpy.try_shutdown()
    lines, tracebacks = read_log(log)
    errors = [msg for level, msg in lines if level in ("ERROR", "FATAL")]
    hidden = [msg for msg in errors if not any(p.search(msg) for p in GOOD_ERROR)]
    warnings = sum(level == "WARN" for level, _ in lines)
    end_counters = ("processed", "dropped_frames", "unsupported_images", "bad_images", "oversized_images")
    accounted = sum(int(counters.get(k, 0)) for k in (*end_counters, "step_errors"))
    received, missed = int(counters.get("images", 0)), int(counters.get("missed_images", 0))
    print("=" * 72)
    print(f"fuzz run, seed {args.seed}: {args.random} random messages + {len(client.known_classes())} known classes")
    print(f"  in {seconds:.0f} s; random kinds: " + ", ".join(f"{k} {v}" for k, v in kinds.items() if v > 1))
    print(f"  valid frames: {valid_total} sent, {valid_total - len(lost)} answered, {len(lost)} lost")
    for after, stamp in lost[:10]:
        print(f"    lost: stamp {stamp * 1e-9:.3f} s, after {after[:200]}")
    print(f"  crashes: node alive at the end {alive}, exit code on SIGINT {code}, tracebacks in its log {tracebacks}")
    print(f"  service calls: {calls} sent, {answered_calls} answered within {CALL_TIMEOUT_S:g} s")
    print(
        f"  node log: {len(lines)} lines, {warnings} warnings, {len(errors)} errors, {len(hidden)} hiding their cause"
    )
    for msg in hidden[:5]:
        print(f"    hidden: {msg[:200]}")
    for msg in sorted(set(errors))[:5]:
        print(f"    error: {msg[:200]}")
    print(
        f"  /diagnostics: images sent {images_sent} = received {received} + missed {missed} "
        f"({'ok' if received + missed == images_sent else 'MISMATCH'}); received ended in a counter: {accounted} "
        f"({'ok' if accounted == received else 'MISMATCH'}: "
        + ", ".join(f"{k} {counters.get(k, '?')}" for k in end_counters)
        + f", step_errors {counters.get('step_errors', '?')})"
    )
    print(
        "  detections: "
        + ", ".join(f"{k} {counters.get(k, '?')}" for k in ("late_detections", "dropped_detections", "bad_detections"))
        + "; ids ignored "
        + str(counters.get("ignored_ids", "?"))
        + "; prompts started / on a track / refused "
        + "/".join(str(counters.get(k, "?")) for k in ("prompts", "prompts_on_tracks", "refused_prompts"))
        + f"; time jumps {counters.get('time_jumps', '?')}"
    )
    print(f"  node log kept in {log}")
    ok = (
        not lost
        and alive
        and code == 0
        and not tracebacks
        and not hidden
        and answered_calls == calls
        and received + missed == images_sent
        and accounted == received
    )
    print(f"  verdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
