"""The demo's recorder: a node in the demo's own process that keeps everything the tracker publishes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from lifecycle_msgs.srv import GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from savi_core.tracking.messages import image_to_numpy
from savi_ros.demo.camera_node import GROUND_TRUTH_QOS, GROUND_TRUTH_TOPIC, FrameTag
from savi_ros.interrupt import spin_until_shutdown

TRACKER_NODE = "savi_tracker"


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass
class Recording:
    """Everything received, keyed by image stamp (ns)."""

    tags: dict[int, FrameTag] = field(default_factory=dict)
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    latency_s: dict[int, float] = field(default_factory=dict)
    tracks: dict[int, list[tuple[int, str, tuple[float, float, float, float], float]]] = field(default_factory=dict)
    label_info: list[dict[int, str]] = field(default_factory=list)


class Recorder:
    """A node in this process subscribing to the tracker's outputs and the camera's ground truth."""

    def __init__(self, namespace: str) -> None:
        # No rclpy signal handler: Ctrl-C must raise KeyboardInterrupt here so `run` stops the children.
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("demo_recorder", namespace=namespace)
        self.data = Recording()
        self.lock = threading.Lock()
        self._get_state = None
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=spin_until_shutdown, args=(self.executor,), daemon=True)
        self._spinner.start()

    def topic(self, name: str) -> str:
        return f"{self.node.get_namespace().rstrip('/')}/{name}"

    def subscribe_outputs(self, match_timeout: float = 10.0) -> None:
        """Subscribe to tracks/masks with the publisher's reliability (reliable when it is), label_info
        latched, and, once those found the tracker's publishers, to the camera's ground truth: the camera
        starts playing only when it sees this last subscription."""

        def qos_like(topic: str) -> QoSProfile:
            infos = self.node.get_publishers_info_by_topic(self.topic(topic))
            reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            return QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=200,
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            )

        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=10,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        outputs = [
            self.node.create_subscription(Image, "masks", self._on_masks, qos_like("masks")),
            self.node.create_subscription(Detection2DArray, "tracks", self._on_tracks, qos_like("tracks")),
            self.node.create_subscription(LabelInfo, "label_info", self._on_label_info, latched),
        ]
        deadline = time.monotonic() + match_timeout
        while any(sub.get_publisher_count() == 0 for sub in outputs) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.node.create_subscription(Detection2DArray, GROUND_TRUTH_TOPIC, self._on_truth, GROUND_TRUTH_QOS)

    def saw_frame(self, scene: int, frame: int) -> bool:
        """Whether the camera's ground truth for (scene, frame) arrived."""
        with self.lock:
            return any((tag.scene, tag.frame) == (scene, frame) for tag in self.data.tags.values())

    def _on_truth(self, msg: Any) -> None:
        try:
            tag = FrameTag.decode(msg.header.frame_id)
        except ValueError:
            return
        with self.lock:
            self.data.tags[stamp_ns(msg.header.stamp)] = tag

    def _on_masks(self, msg: Any) -> None:
        arrived = self.node.get_clock().now().nanoseconds
        stamp = stamp_ns(msg.header.stamp)
        labels = np.array(image_to_numpy(msg), dtype=np.uint16)
        with self.lock:
            self.data.masks[stamp] = labels
            self.data.latency_s[stamp] = (arrived - stamp) / 1e9

    def _on_tracks(self, msg: Any) -> None:
        tracks = []
        for det in msg.detections:
            cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
            hw, hh = det.bbox.size_x / 2.0, det.bbox.size_y / 2.0
            hyp = det.results[0].hypothesis if det.results else None
            try:
                track_id = int(det.id)
            except ValueError:
                continue
            tracks.append(
                (
                    track_id,
                    hyp.class_id if hyp else "",
                    (cx - hw, cy - hh, cx + hw, cy + hh),
                    float(hyp.score) if hyp else 0.0,
                )
            )
        with self.lock:
            self.data.tracks[stamp_ns(msg.header.stamp)] = tracks

    def _on_label_info(self, msg: Any) -> None:
        with self.lock:
            self.data.label_info.append({int(c.class_id): c.class_name for c in msg.class_map})

    def count(self, kind: str, topic: str) -> int:
        name = self.topic(topic)
        return self.node.count_publishers(name) if kind == "pub" else self.node.count_subscribers(name)

    def has_service(self, name: str) -> bool:
        return self.topic(name) in {n for n, _ in self.node.get_service_names_and_types()}

    def tracker_active(self) -> bool:
        """True once the tracker is active: at once for a plain node, by `get_state` for a lifecycle node."""
        if not self.has_service(f"{TRACKER_NODE}/get_state"):
            return True
        if self._get_state is None:
            self._get_state = self.node.create_client(GetState, self.topic(f"{TRACKER_NODE}/get_state"))
        if not self._get_state.wait_for_service(timeout_sec=1.0):
            return False
        done = threading.Event()
        future = self._get_state.call_async(GetState.Request())
        future.add_done_callback(lambda _: done.set())
        return done.wait(2.0) and future.result() is not None and future.result().current_state.label == "active"

    def snapshot(self) -> Recording:
        with self.lock:
            return Recording(
                dict(self.data.tags),
                dict(self.data.masks),
                dict(self.data.latency_s),
                dict(self.data.tracks),
                list(self.data.label_info),
            )

    def close(self) -> None:
        rclpy.try_shutdown()
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()
