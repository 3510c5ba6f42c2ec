"""Demo camera: plays synthetic scenes from `savi_scenes` as `sensor_msgs/Image` at a fixed rate.

A stand-in for a real camera on the wire. Besides `image` it publishes, on the private topic
`demo/ground_truth`, a `vision_msgs/Detection2DArray` with every visible object's box (id = object
index + 1, class = shape name) and the same stamp as the image; the demo detector listens to that
topic only. Its `header.frame_id` carries the frame's identity as
``"<frame_id>#scene=<index>&frame=<t>&seed=<seed>"`` (see `FrameTag`), so the detector knows the first
frame of a scene and the demo orchestrator can regenerate the ground truth by seed.

Between scenes the camera (and only the camera) makes the tracker start over: when
`reset_between_scenes` is true it waits until the tracker has answered the previous scene's last
frame on `tracks` (at most `drain_timeout` s), then calls the `reset` service (std_srvs/Trigger)
before publishing the next scene's first frame.

Run: ``python -m savi_ros.demo.camera_node --ros-args -r __ns:=/savi -p rate:=10.0``
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m`: a Ctrl-C during the imports below exits 0, quietly
    from savi_ros.launcher import quiet_sigint

    quiet_sigint()

import sys
import threading
import time
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D, Detection2DArray

from savi_ros.conversions import detection_msg
from savi_ros.dds import use_large_message_profile
from savi_ros.interrupt import RCLError, interrupt_via_rclpy_only, shutdown, spin_until_shutdown, start_node
from savi_ros.qos import keep_last
from savi_scenes import PhysicsSceneConfig, Scene, SceneConfig, generate_physics_scene, generate_scene

WORLDS = ("mixed", "2d", "3d")
C = TypeVar("C")

IMAGE_QOS = keep_last(10)
"""Reliable keep-last 10: matches both best-effort (sensor_data) and reliable subscribers."""
GROUND_TRUTH_QOS = keep_last(100, latched=True)
"""Transient local: a subscriber whose side of the match completes after the camera started (discovery is
asymmetric, and slow on a loaded machine) still gets the frames it missed."""
GROUND_TRUTH_TOPIC = "demo/ground_truth"
DEFAULT_SEED = 100_000
"""First held-out scene seed; training draws its seeds far below this."""
ENCODINGS = ("rgb8", "bgr8")


@dataclass(frozen=True)
class FrameTag:
    """Identity of a demo frame, carried in the ground-truth header's `frame_id`."""

    frame_id: str
    scene: int  # index of the scene in this run (0, 1, ...)
    frame: int  # frame index within the scene
    seed: int  # scene seed for `generate_scene`

    def encode(self) -> str:
        return f"{self.frame_id}#scene={self.scene}&frame={self.frame}&seed={self.seed}"

    @classmethod
    def decode(cls, text: str) -> "FrameTag":
        frame_id, sep, query = text.rpartition("#")
        try:
            if not sep:
                raise ValueError("no '#'")
            fields = dict(item.split("=", 1) for item in query.split("&"))
            return cls(frame_id, int(fields["scene"]), int(fields["frame"]), int(fields["seed"]))
        except (ValueError, KeyError) as error:
            raise ValueError(
                f"not a demo ground-truth frame_id ('<frame_id>#scene=S&frame=T&seed=N'): {text!r} ({error})"
            ) from None


@dataclass
class CameraConfig:
    """Parameters of the demo camera (ROS parameters of the same names)."""

    width: int = 320
    height: int = 240
    rate: float = 10.0
    num_scenes: int = 3  # 0 = loop forever
    frames_per_scene: int = 24
    seed: int = DEFAULT_SEED
    min_objects: int = 2
    max_objects: int = 5
    world: str = "mixed"  # 2d: the original generator; 3d: the physics family; mixed: odd seeds 3d
    frame_id: str = "camera"
    encoding: str = "rgb8"
    reset_between_scenes: bool = True
    reset_service: str = "reset"
    tracks_topic: str = "tracks"
    drain_timeout: float = 2.0
    min_image_subscribers: int = 0  # wait for this many `image` subscribers before playing
    min_ground_truth_subscribers: int = 0  # ... and this many `demo/ground_truth` subscribers
    wait_timeout: float = 30.0
    # After the subscribers appear, wait this long before the first frame: the camera sees a subscriber
    # once *it* has matched it, but a best-effort reader (the tracker's default image QoS) drops samples
    # from a writer it has not matched yet, and nothing resends them, so a scene's first frame was
    # occasionally lost at start-up and that scene never bootstrapped.
    settle_s: float = 0.5

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ValueError(f"parameter '{name}' {why}, got {getattr(self, name)!r}")

        if self.width < 8 or self.height < 8:
            fail("width" if self.width < 8 else "height", "must be >= 8")
        if not self.rate > 0.0:
            fail("rate", "must be > 0 (Hz)")
        if self.num_scenes < 0:
            fail("num_scenes", "must be >= 0 (0 = loop forever)")
        if self.frames_per_scene < 1:
            fail("frames_per_scene", "must be >= 1")
        if self.seed < 0:
            fail("seed", "must be >= 0")
        if not 1 <= self.min_objects <= self.max_objects <= 254:
            fail("max_objects", f"must satisfy 1 <= min_objects ({self.min_objects}) <= max_objects <= 254")
        if self.world not in WORLDS:
            fail("world", f"must be one of {WORLDS}")
        if self.encoding not in ENCODINGS:
            fail("encoding", f"must be one of {ENCODINGS}")
        if "#" in self.frame_id:
            fail("frame_id", "must not contain '#'")
        if self.drain_timeout < 0.0:
            fail("drain_timeout", "must be >= 0")
        if self.min_image_subscribers < 0 or self.min_ground_truth_subscribers < 0:
            fail("min_image_subscribers", "and min_ground_truth_subscribers must be >= 0")
        if not self.wait_timeout > 0.0:
            fail("wait_timeout", "must be > 0")
        if not self.settle_s >= 0.0:
            fail("settle_s", "must be >= 0")

    def make_scene(self, seed: int) -> Scene:
        """Scene ``seed`` of this camera's world (the demo regenerates it for scoring)."""
        sizes = dict(
            height=self.height,
            width=self.width,
            num_frames=self.frames_per_scene,
            min_objects=self.min_objects,
            max_objects=self.max_objects,
        )
        if self.world == "3d" or (self.world == "mixed" and seed % 2 == 1):
            return generate_physics_scene(seed, PhysicsSceneConfig(**sizes))
        return generate_scene(seed, SceneConfig(**sizes))


def ground_truth_detections(scene: Scene, t: int) -> list[Detection2D]:
    """Boxes (pixels) of the objects visible in frame `t`: id = object index + 1, class = shape name."""
    height, width = scene.video.shape[1:3]
    out = []
    for i in np.flatnonzero(scene.visible[t]):
        ymin, xmin, ymax, xmax = (float(v) for v in scene.boxes[t, i])
        box = (xmin * width, ymin * height, xmax * width, ymax * height)
        out.append(detection_msg(box, str(int(i) + 1), scene.classes[i], 1.0))
    return out


def declared_config(node: Node, config_type: type[C]) -> C:
    """``config_type`` (a dataclass whose fields all have defaults, checked on construction) from the node's
    parameters of the same names, declared here with those defaults."""
    defaults = config_type()
    return config_type(
        **{
            name: node.declare_parameter(name, getattr(defaults, name)).value
            for name in config_type.__dataclass_fields__
        }
    )


class DemoCamera(Node):
    """Publishes `image` and `demo/ground_truth`; `play()` runs the scenes (call it off the executor)."""

    def __init__(self) -> None:
        super().__init__("demo_camera")
        self.config = declared_config(self, CameraConfig)
        self._image_pub = self.create_publisher(Image, "image", IMAGE_QOS)
        self._gt_pub = self.create_publisher(Detection2DArray, GROUND_TRUTH_TOPIC, GROUND_TRUTH_QOS)
        self._reset = self.create_client(Trigger, self.config.reset_service)
        self._answered_ns = -1
        self._answered = threading.Condition()
        if self.config.reset_between_scenes:
            self.create_subscription(Detection2DArray, self.config.tracks_topic, self._on_tracks, 10)
        self.published = 0

    def _on_tracks(self, msg: Detection2DArray) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._answered:
            self._answered_ns = max(self._answered_ns, stamp)
            self._answered.notify_all()

    def _wait_for_subscribers(self, stop: threading.Event) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.wait_timeout
        while not stop.is_set():
            if (
                self._image_pub.get_subscription_count() >= cfg.min_image_subscribers
                and self._gt_pub.get_subscription_count() >= cfg.min_ground_truth_subscribers
            ):
                if cfg.min_image_subscribers or cfg.min_ground_truth_subscribers:
                    stop.wait(cfg.settle_s)
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"after {cfg.wait_timeout} s: {self._image_pub.get_subscription_count()} subscribers on "
                    f"'{self._image_pub.topic_name}' (need {cfg.min_image_subscribers}), "
                    f"{self._gt_pub.get_subscription_count()} on '{self._gt_pub.topic_name}' "
                    f"(need {cfg.min_ground_truth_subscribers})"
                )
            stop.wait(0.02)

    def _drain(self, last_stamp_ns: int) -> None:
        """Wait until a tracker answered the last published frame, so a reset can't cut it off."""
        if self.count_publishers(self.resolve_topic_name(self.config.tracks_topic)) == 0:
            return
        with self._answered:
            self._answered.wait_for(lambda: self._answered_ns >= last_stamp_ns, timeout=self.config.drain_timeout)

    def _reset_tracker(self) -> None:
        if not self._reset.wait_for_service(timeout_sec=1.0):
            self.get_logger().warning(
                f"no '{self._reset.srv_name}' service: the tracker is not reset between scenes",
                throttle_duration_sec=60.0,
            )
            return
        done = threading.Event()
        future = self._reset.call_async(Trigger.Request())
        future.add_done_callback(lambda _: done.set())
        if not done.wait(5.0):
            self.get_logger().warning(f"'{self._reset.srv_name}' did not answer within 5 s")
            return
        response = future.result()
        if response is None or not response.success:
            self.get_logger().warning(f"'{self._reset.srv_name}' refused: {getattr(response, 'message', '')}")

    def _publish(self, scene: Scene, tag: FrameTag) -> int:
        stamp = self.get_clock().now().to_msg()
        frame = scene.video[tag.frame]
        image = Image()
        image.header.stamp = stamp
        image.header.frame_id = self.config.frame_id
        image.height, image.width = frame.shape[:2]
        image.encoding = self.config.encoding
        image.is_bigendian = 0
        image.step = image.width * 3
        image.data = (frame if self.config.encoding == "rgb8" else frame[..., ::-1]).tobytes()
        truth = Detection2DArray()
        truth.header.stamp = stamp
        truth.header.frame_id = tag.encode()
        truth.detections = ground_truth_detections(scene, tag.frame)
        # Ground truth first, so the detector's answer follows the image closely.
        self._gt_pub.publish(truth)
        self._image_pub.publish(image)
        self.published += 1
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def play(self, stop: threading.Event) -> None:
        """Publish the configured scenes at `rate` until done or `stop` is set."""
        cfg = self.config
        self._wait_for_subscribers(stop)
        period = 1.0 / cfg.rate
        index, last_stamp = 0, -1
        while not stop.is_set() and self.context.ok() and (cfg.num_scenes == 0 or index < cfg.num_scenes):
            seed = cfg.seed + index
            scene = cfg.make_scene(seed)
            if index > 0 and cfg.reset_between_scenes:
                self._drain(last_stamp)
                self._reset_tracker()
            self.get_logger().info(f"scene {index} (seed {seed}, {scene.num_objects} objects)")
            start = time.monotonic()
            for t in range(cfg.frames_per_scene):
                if stop.wait(max(0.0, start + t * period - time.monotonic())) or not self.context.ok():
                    return
                last_stamp = self._publish(scene, FrameTag(cfg.frame_id, index, t, seed))
            stop.wait(period)
            index += 1


def main(args: list[str] | None = None) -> int:
    interrupt_via_rclpy_only()
    use_large_message_profile()
    node, code = start_node(DemoCamera, "demo_camera", args)
    if node is None:
        return code
    stop = threading.Event()
    # Another thread's shutdown runs this; rclpy's SIGINT handler does not (it shuts the context down in C):
    # `play` also stops on the context itself.
    node.context.on_shutdown(stop.set)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor,), daemon=True)
    spinner.start()
    code = 0
    try:
        node.play(stop)
        node.get_logger().info(f"done: {node.published} frames published")
    except TimeoutError as error:
        node.get_logger().error(str(error))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        stop.set()
    except RCLError:
        if node.context.ok():
            raise
        # Ctrl-C shut the context down between the stop check and a publish: a clean stop.
    finally:
        shutdown()
        executor.wake()  # a spinner waiting when the context went down would otherwise wait on
        spinner.join(timeout=30.0)  # a daemon thread still in rclpy at exit can abort the process
        node.destroy_node()
    return code


if __name__ == "__main__":
    sys.exit(main())
