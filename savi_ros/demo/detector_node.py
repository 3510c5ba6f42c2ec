"""Demo detector: turns the demo camera's ground truth into `detections`, like a detector on the wire.

Subscribes only to `demo/ground_truth` (see `camera_node`) and publishes `vision_msgs/Detection2DArray`
on `detections` with the image's stamp and the camera's `frame_id`, on the first frame of each scene
and, when `every_n_frames` > 0, on every N-th frame. Imperfections of a real detector are optional:
`box_noise` (Gaussian noise on each box edge, sigma as a fraction of the box's width/height),
`drop_prob` (each detection missing with this probability; a frame whose detections all drop still
gets an empty array). Classes are `class_id` for every box, or the shape name with
`use_shape_classes`. With `send_ids` the detection id is the object index + 1, so track ids follow
the ground truth's object ids; without, ids are empty and the tracker numbers tracks itself.

Run: ``python -m savi_ros.demo.detector_node --ros-args -r __ns:=/savi -p box_noise:=0.05``
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m`: a Ctrl-C during the imports below exits 0, quietly
    from savi_ros.launcher import quiet_sigint

    quiet_sigint()

import sys
import time
from dataclasses import dataclass

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from vision_msgs.msg import Detection2D, Detection2DArray

from savi_ros.interrupt import interrupt_via_rclpy_only, shutdown, spin_until_shutdown, start_node
from savi_ros.conversions import detection_msg
from savi_ros.demo.camera_node import GROUND_TRUTH_QOS, GROUND_TRUTH_TOPIC, FrameTag, declared_config
from savi_ros.qos import keep_last

DETECTIONS_QOS = keep_last(10)


@dataclass
class DetectorConfig:
    """Parameters of the demo detector (ROS parameters of the same names)."""

    box_noise: float = 0.0
    drop_prob: float = 0.0
    class_id: str = "object"
    use_shape_classes: bool = False
    every_n_frames: int = 0  # 0 = only the first frame of each scene
    send_ids: bool = True
    score: float = 1.0
    seed: int = 0  # noise / drop random generator

    def __post_init__(self) -> None:
        if not self.box_noise >= 0.0:
            raise ValueError(f"parameter 'box_noise' must be >= 0, got {self.box_noise!r}")
        if not 0.0 <= self.drop_prob <= 1.0:
            raise ValueError(f"parameter 'drop_prob' must lie in [0, 1], got {self.drop_prob!r}")
        if self.every_n_frames < 0:
            raise ValueError(f"parameter 'every_n_frames' must be >= 0, got {self.every_n_frames!r}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"parameter 'score' must lie in [0, 1], got {self.score!r}")
        if not self.use_shape_classes and not self.class_id:
            raise ValueError("parameter 'class_id' must not be empty (or set use_shape_classes)")

    def detects(self, frame: int) -> bool:
        return frame == 0 or (self.every_n_frames > 0 and frame % self.every_n_frames == 0)


def _edges(det: Detection2D) -> np.ndarray:
    cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
    hw, hh = det.bbox.size_x / 2.0, det.bbox.size_y / 2.0
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def perturb(truth: list[Detection2D], cfg: DetectorConfig, rng: np.random.Generator) -> list[Detection2D]:
    """Detections for one frame: ground-truth boxes with drops, edge noise, class and id per `cfg`.

    Noisy boxes keep non-negative coordinates and at least one pixel of size (the detector does not
    see the image, so the right/bottom border is the tracker's to clip).
    """
    out = []
    for gt in truth:
        if cfg.drop_prob > 0.0 and rng.random() < cfg.drop_prob:
            continue
        x0, y0, x1, y1 = _edges(gt)
        if cfg.box_noise > 0.0:
            w, h = x1 - x0, y1 - y0
            x0, x1 = sorted((x0 + rng.normal(0.0, cfg.box_noise * w), x1 + rng.normal(0.0, cfg.box_noise * w)))
            y0, y1 = sorted((y0 + rng.normal(0.0, cfg.box_noise * h), y1 + rng.normal(0.0, cfg.box_noise * h)))
            x0, y0 = max(x0, 0.0), max(y0, 0.0)
            x1, y1 = max(x1, x0 + 1.0), max(y1, y0 + 1.0)
        shape = gt.results[0].hypothesis.class_id if gt.results else ""
        class_id = shape if cfg.use_shape_classes and shape else cfg.class_id
        out.append(detection_msg((x0, y0, x1, y1), gt.id if cfg.send_ids else "", class_id, cfg.score))
    return out


class DemoDetector(Node):
    """`demo/ground_truth` in, `detections` out."""

    def __init__(self) -> None:
        super().__init__("demo_detector")
        self.config = declared_config(self, DetectorConfig)
        self._rng = np.random.default_rng(self.config.seed)
        self._pub = self.create_publisher(Detection2DArray, "detections", DETECTIONS_QOS)
        # Ground truth is taken only once a tracker listens (and a second more, for its side of the match):
        # the camera waits for this subscription, so no frame's detections go to nobody.
        self._matched_at: float | None = None
        self._wait = self.create_timer(0.1, self._subscribe_when_heard)

    def _subscribe_when_heard(self) -> None:
        if self._pub.get_subscription_count() < 1:
            self._matched_at = None
            return
        now = time.monotonic()
        if self._matched_at is None:
            self._matched_at = now
        if now - self._matched_at >= 1.0:
            self._wait.cancel()
            self.destroy_timer(self._wait)
            self.create_subscription(Detection2DArray, GROUND_TRUTH_TOPIC, self._on_truth, GROUND_TRUTH_QOS)

    def _on_truth(self, truth: Detection2DArray) -> None:
        try:
            tag = FrameTag.decode(truth.header.frame_id)
        except ValueError as error:
            self.get_logger().warning(str(error), throttle_duration_sec=10.0)
            return
        if not self.config.detects(tag.frame):
            return
        out = Detection2DArray()
        out.header.stamp = truth.header.stamp
        out.header.frame_id = tag.frame_id
        out.detections = perturb(list(truth.detections), self.config, self._rng)
        self._pub.publish(out)


def main(args: list[str] | None = None) -> int:
    interrupt_via_rclpy_only()
    node, code = start_node(DemoDetector, "demo_detector", args)
    if node is None:
        return code
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_shutdown(executor)
    finally:
        node.destroy_node()
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
