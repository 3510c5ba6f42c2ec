"""What the DDS benchmarks share: the real `savi_tracker` node in a subprocess, a client node that
publishes camera frames and detections to it, and the node's resident memory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, TypeVar

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray

from savi_ros.conversions import detection_msg, numpy_to_image
from savi_ros.dds import use_large_message_profile
from savi_ros.qos import keep_last

ROOT = Path(__file__).resolve().parents[1]
RELIABLE = keep_last(10)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def start_tracker(
    prefix: str,
    *params: str,
    log: Path | None = None,
    tree: Path = ROOT,
    program: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """The node under a fresh namespace with ``-p`` ``params`` (``NAME:=VALUE``); returns it and the
    namespace. ``tree``: the checkout whose code the node runs (another one for before/after comparisons);
    ``program``: what runs instead of ``-m savi_ros.tracker_node`` (e.g. a profiling wrapper); ``env``:
    added variables; ``log``: a file for the node's stderr (its log lines), else they are discarded. The
    large-message DDS profile is applied here, for this client and (inherited) the node."""
    use_large_message_profile()
    namespace = f"/{prefix}_{uuid.uuid4().hex[:6]}"
    args = [sys.executable, *(program or ["-m", "savi_ros.tracker_node"]), "--ros-args", "-r", f"__ns:={namespace}"]
    for param in params:
        args += ["-p", param]
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONPATH=path, **(env or {}))
    if log is None:
        node = subprocess.Popen(args, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        env.update(RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1")
        with open(log, "w") as stderr:
            node = subprocess.Popen(args, cwd=tree, env=env, stdout=stderr, stderr=stderr)
    return node, namespace


C = TypeVar("C", bound="Client")


@contextlib.contextmanager
def tracker_and_client(
    prefix: str, client_type: type[C], *params: str, log: Path | None = None
) -> Iterator[tuple[subprocess.Popen, C]]:
    """The node (`start_tracker`, ``log`` as there) and a started client of ``client_type`` that it subscribes
    to; both ended on leaving. Exits the bench with a message when the node does not come up."""
    node, namespace = start_tracker(prefix, *params, log=log)
    rclpy.init()
    client = None
    try:
        client = client_type(namespace)
        if not client.wait_ready():
            raise SystemExit("the node did not come up")
        yield node, client
    finally:
        node.terminate()
        node.wait(timeout=30)
        if client is not None:
            client.close()
        rclpy.try_shutdown()


class Client:
    """A client node spun in a background thread: publishes images and detections; subclasses subscribe."""

    def __init__(self, namespace: str, name: str) -> None:
        self.node = rclpy.create_node(f"{name}_{uuid.uuid4().hex[:6]}", namespace=namespace)
        self.image_pub = self.node.create_publisher(Image, "image", RELIABLE)
        self.det_pub = self.node.create_publisher(Detection2DArray, "detections", RELIABLE)
        self.reset_client = self.node.create_client(Trigger, "reset")
        self.lock = threading.Lock()
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)

    def start(self) -> None:
        """Spin (after the subclass made its subscriptions)."""
        self.thread.start()

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """True once the node subscribes both inputs (then one more second for discovery to settle)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.image_pub.get_subscription_count() and self.det_pub.get_subscription_count():
                time.sleep(1.0)
                return True
            time.sleep(0.1)
        return False

    def publish(
        self,
        stamp_ns: int,
        frame: np.ndarray,
        boxes: list[tuple[float, float, float, float]] | None,
        with_ids: bool = True,
    ) -> None:
        """An rgb8 image, and with ``boxes`` a Detection2DArray of the same stamp (ids "1", "2", ... unless
        ``with_ids`` is False: a detector that does not track)."""
        stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        img = numpy_to_image(frame, "rgb8", Header(stamp=stamp))  # the pixels copied once, as a camera driver would
        self.sending(stamp_ns)
        self.image_pub.publish(img)
        if boxes is not None:
            self.publish_detections(stamp_ns, boxes, with_ids)

    def sending(self, stamp_ns: int) -> None:
        """Called just before the image of ``stamp_ns`` is published (its message is built)."""

    def publish_detections(
        self, stamp_ns: int, boxes: list[tuple[float, float, float, float]], with_ids: bool = False
    ) -> None:
        """A Detection2DArray of ``boxes`` (class "object", score 0.9) stamped ``stamp_ns``."""
        dets = Detection2DArray()
        dets.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        for i, box in enumerate(boxes):
            dets.detections.append(detection_msg(box, str(i + 1) if with_ids else "", "object", 0.9))
        self.det_pub.publish(dets)

    def reset(self, timeout: float = 10.0) -> bool:
        """Call the node's `reset` (a new recording: tracks end, so the next stamps are not a jump)."""
        if not self.reset_client.wait_for_service(timeout_sec=timeout):
            return False
        future = self.reset_client.call_async(Trigger.Request())
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.done() and future.result().success

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()


class TracksClient(Client):
    """A client that keeps the stamps the node answered on `tracks`."""

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(namespace, name)
        self.answered: set[int] = set()
        self.node.create_subscription(Detection2DArray, "tracks", self._tracks, RELIABLE)

    def _tracks(self, msg: Detection2DArray) -> None:
        with self.lock:
            self.answered.add(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            self.on_tracks(msg)

    def on_tracks(self, msg: Detection2DArray) -> None:
        """Each `tracks` message, under the lock, for a subclass that keeps more of it."""

    def wait_answer(self, stamp: int, timeout: float) -> bool:
        """True once the node answered the image stamped ``stamp`` (ns), False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if stamp in self.answered:
                    return True
            time.sleep(0.005)
        return False
