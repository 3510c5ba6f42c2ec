"""Benchmark: how long a 640x480 rgb8 image (900 KB) waits between DDS receipt and its callback, taken by
rclpy's executor (on a node with the tracker's entity count) or by a `savi_ros.taker.Taker`.

One publisher sends an image every 0.1 s to one subscriber process at a time, the ways alternated:
* ``executor``: the subscription in a SingleThreadedExecutor beside 12 services and a timer;
* ``taker``: the subscription and its QoS events taken by a `Taker`, an executor spinning the rest;
* ``taker-events-in-executor``: the same, but the subscription's QoS events left to the executor (what
  rmw_fastrtps then does: it wakes that executor on each message).
Prints per run the receipt-to-callback p50 / mean (received timestamp to the callback's first line, both
the system clock) and how often the executor's thread woke (voluntary context switches) per image.

Run: ``.venv/bin/python bench/bench_take.py [--rounds 2] [--images 60]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

from savi_ros.dds import use_large_message_profile

use_large_message_profile()

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.subscription import Subscription  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from savi_ros.taker import OwnThreadGroup, Taker  # noqa: E402

QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1)
WAYS = ("executor", "taker", "taker-events-in-executor")


class _EventsToExecutor(OwnThreadGroup):
    """The subscription to the taker, its QoS events to the executor (how the node first did it)."""

    def can_execute(self, entity) -> bool:
        return not isinstance(entity, Subscription) and MutuallyExclusiveCallbackGroup.can_execute(self, entity)


def _switches(native_id: int) -> int:
    with open(f"/proc/self/task/{native_id}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("voluntary_ctxt_switches"))


def subscriber(way: str, topic: str, images: int) -> None:
    """One subscriber process: prints the result line and exits."""
    rclpy.init()
    node = rclpy.create_node(f"take_bench_{uuid.uuid4().hex[:6]}")
    for i in range(12):  # the tracker node's entities, roughly: its services and a timer
        node.create_service(Trigger, f"service_{i}", lambda request, response: response)
    node.create_timer(1.0, lambda: None)
    waits: list[float] = []

    def arrived(msg, info) -> None:
        waits.append((time.time_ns() - info["received_timestamp"]) * 1e-6)

    if way == "executor":
        node.create_subscription(Image, topic, arrived, QOS)
    else:
        group = OwnThreadGroup() if way == "taker" else _EventsToExecutor()
        sub = node.create_subscription(Image, topic, lambda msg: None, QOS, callback_group=group)
        if way != "taker":  # the events are the executor's: the taker must not wait on them too
            sub = SimpleNamespace(handle=sub.handle, msg_type=sub.msg_type, raw=sub.raw, event_handlers=[])
        Taker(sub, node.context, arrived, lambda exc: print(f"failed: {exc}", file=sys.stderr), "take_bench")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning: dict[str, int] = {}

    def spin() -> None:
        spinning["id"] = threading.get_native_id()
        executor.spin()

    threading.Thread(target=spin, daemon=True).start()
    while len(waits) < 5 or "id" not in spinning:
        time.sleep(0.01)
    first, woke = len(waits), _switches(spinning["id"])
    while len(waits) < images:
        time.sleep(0.05)
    per_image = (_switches(spinning["id"]) - woke) / (len(waits) - first)
    timed = waits[first:]
    print(
        f"{way:>25}: receipt -> callback p50 {statistics.median(timed):.3f} ms, mean {statistics.mean(timed):.3f}; "
        f"executor wake-ups per image {per_image:.1f} (load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--subscriber", nargs=2, metavar=("WAY", "TOPIC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        subscriber(args.subscriber[0], args.subscriber[1], args.images)
        return 0
    topic = f"/take_bench_{uuid.uuid4().hex[:6]}"
    rclpy.init()
    node = rclpy.create_node(f"take_bench_pub_{uuid.uuid4().hex[:6]}")
    pub = node.create_publisher(Image, topic, QOS)
    image = Image(height=480, width=640, encoding="rgb8", step=3 * 640)
    image.data = np.zeros(480 * 640 * 3, np.uint8).tobytes()
    for _ in range(args.rounds):
        for way in WAYS:
            command = [sys.executable, __file__, "--images", str(args.images), "--subscriber", way, topic]
            proc = subprocess.Popen(command)
            while pub.get_subscription_count() == 0 and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(0.5)  # discovery settles
            while proc.poll() is None:
                pub.publish(image)
                time.sleep(0.1)
            while pub.get_subscription_count():
                time.sleep(0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
