"""Bursts through the real node (issue 27): 60 times, `reset`, then an image with detections of the three
rectangles and, under 1 ms later, the next image; the detections come before the newer image in even
rounds, after it in odd ones. Counts the rounds whose newer image lists all 3 tracks on `tracks`, and
checks /diagnostics: images sent = received + missed, each received image in exactly one counter.

Run: ``.venv/bin/python bench/bench_burst.py [--rounds 60] [--size 640x480]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from vision_msgs.msg import Detection2DArray

from bench_soak import Rectangles
from node_client import RELIABLE, Client, tracker_and_client


class BurstClient(Client):
    def __init__(self, namespace: str) -> None:
        super().__init__(namespace, "burst_client")
        self.tracks: dict[int, int] = {}  # stamp -> number of tracks
        self.counters: dict[str, str] = {}
        self.node.create_subscription(Detection2DArray, "tracks", self._tracks, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.start()

    def _tracks(self, msg: Detection2DArray) -> None:
        with self.lock:
            self.tracks[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = len(msg.detections)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.node.get_namespace()):
                with self.lock:
                    self.counters = {kv.key: kv.value for kv in status.values}

    def wait(self, stamp: int, timeout: float = 30.0) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if stamp in self.tracks:
                    return self.tracks[stamp]
            time.sleep(0.005)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--checkpoint", default="default")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tracker_and_client("burst", BurstClient, f"checkpoint:={args.checkpoint}") as (_, client):
        scene = Rectangles(width, height)
        stamp, sent, shown, unanswered = 10**13, 0, [], 0
        first_frame, _ = scene.frame()
        client.publish(stamp, first_frame, None)  # a publisher's first image: a gap before it is not counted
        sent += 1
        unanswered += client.wait(stamp) is None
        for i in range(args.rounds):
            if not client.reset():
                print(f"round {i}: reset not answered", file=sys.stderr)
                return 1
            (first, boxes), (second, _) = scene.frame(), scene.frame()
            stamp += 10**8
            client.publish(stamp, first, boxes if i % 2 == 0 else None, with_ids=False)
            client.publish(stamp + 3 * 10**7, second, None)
            if i % 2:
                client.publish_detections(stamp, boxes)
            sent += 2
            stamp += 3 * 10**7
            count = client.wait(stamp)
            unanswered += count is None
            shown.append(count == 3)
        time.sleep(2.5)
        with client.lock:
            c = {k: int(v) for k, v in client.counters.items() if v.isdigit()}
    end = ("processed", "dropped_frames", "unsupported_images", "bad_images", "oversized_images", "step_errors")
    accounted = sum(c.get(k, 0) for k in end)
    print(
        f"{width}x{height}, checkpoint {args.checkpoint}, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores: the newer image lists all 3 tracks in {sum(shown)} of {args.rounds} rounds "
        f"(not: {[i for i, ok in enumerate(shown) if not ok]}); newer images unanswered {unanswered}"
    )
    print(
        f"images sent {sent} = received {c.get('images')} + missed {c.get('missed_images')}; received in one "
        f"counter: {accounted} (" + ", ".join(f"{k} {c.get(k)}" for k in end) + ")"
    )
    return 0 if sum(shown) == args.rounds and c.get("images", 0) + c.get("missed_images", 0) == sent else 1


if __name__ == "__main__":
    sys.exit(main())
