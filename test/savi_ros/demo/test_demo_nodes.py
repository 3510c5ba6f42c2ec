"""The demo camera and detector as separate processes, observed by a test node over DDS.

Each test uses its own namespace (ROS_DOMAIN_ID and ROS_LOG_DIR come from test/conftest.py), and
the children inherit this process's environment unchanged (the ROS wheels' bootstrap variables
must travel together).
"""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from savi_ros.demo.camera_node import CameraConfig, FrameTag, ground_truth_detections
from savi_ros.demo.detector_node import DetectorConfig, perturb
from savi_scenes import SceneConfig, generate_scene

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 30.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _start(module: str, namespace: str, **params) -> subprocess.Popen:
    args = [arg for name, value in params.items() for arg in ("-p", f"{name}:={value}")]
    return subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}", *args],
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT, as a launcher would
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.communicate()[0]


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Observer:
    """An in-process node recording images, detections, ground truth and `reset` calls."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from std_srvs.srv import Trigger
        from vision_msgs.msg import Detection2DArray

        from savi_ros.demo.camera_node import GROUND_TRUTH_QOS, GROUND_TRUTH_TOPIC

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("demo_observer", namespace=namespace, context=self.context)
        self.images, self.detections, self.truth, self.resets = [], [], [], []
        self.lock = threading.Lock()
        self.node.create_subscription(Image, "image", self._add(self.images), 100)
        self.detections_sub = self.node.create_subscription(
            Detection2DArray, "detections", self._add(self.detections), 100
        )
        self.node.create_subscription(Detection2DArray, GROUND_TRUTH_TOPIC, self._add(self.truth), GROUND_TRUTH_QOS)
        self.node.create_service(Trigger, "reset", self._on_reset)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _add(self, store):
        def callback(msg):
            with self.lock:
                store.append(msg)

        return callback

    def _on_reset(self, request, response):
        with self.lock:
            self.resets.append(self.node.get_clock().now().nanoseconds)
        response.success = True
        return response

    def wait(self, condition, what: str, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}" + (f"; child said:\n{_stop(proc)}" if proc is not None else "")
                )
            time.sleep(0.02)

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self.thread.join(5.0)
        self.node.destroy_node()


@pytest.fixture
def observer():
    namespace = f"/demo_test_{uuid.uuid4().hex[:8]}"
    obs = Observer(namespace)
    obs.namespace = namespace
    yield obs
    obs.close()


def _run_pair(observer, camera: dict, detector: dict, detections: int) -> tuple[str, str]:
    """Start the detector, then the camera; wait for the camera to finish and for ``detections``
    detection messages (the last ones are one hop behind the last image); return both outputs."""
    det = _start("savi_ros.demo.detector_node", observer.namespace, **detector)
    try:
        observer.wait(lambda: observer.detections_sub.get_publisher_count() > 0, "the detector", det)
        cam = _start(
            "savi_ros.demo.camera_node",
            observer.namespace,
            min_image_subscribers=1,
            min_ground_truth_subscribers=2,
            **camera,
        )
        try:
            cam.wait(TIMEOUT_S)
        finally:
            cam_out = _stop(cam)
        assert cam.returncode == 0, cam_out
        observer.wait(lambda: len(observer.detections) >= detections, f"{detections} detection messages", det)
    finally:
        det_out = _stop(det)
    return cam_out, det_out


def test_camera_and_detector_exchange_matching_messages(observer):
    seed, width, height, frames = 4242, 96, 64, 4
    cam_out, det_out = _run_pair(
        observer,
        camera=dict(
            num_scenes=2,
            frames_per_scene=frames,
            rate=25.0,
            width=width,
            height=height,
            seed=seed,
            min_objects=2,
            max_objects=3,
            world="2d",  # compared below with the 2D generator's scenes
        ),
        detector=dict(box_noise=0.0, drop_prob=0.0),
        detections=2,
    )
    scene_cfg = SceneConfig(height=height, width=width, num_frames=frames, min_objects=2, max_objects=3)
    scenes = [generate_scene(seed + i, scene_cfg) for i in range(2)]

    # Images: every frame, non-square, pixels exactly the generator's, in order.
    assert len(observer.images) == 2 * frames, cam_out
    for k, msg in enumerate(observer.images):
        assert (msg.width, msg.height, msg.encoding, msg.step, msg.header.frame_id) == (
            width,
            height,
            "rgb8",
            3 * width,
            "camera",
        )
        pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(height, width, 3)
        np.testing.assert_array_equal(pixels, scenes[k // frames].video[k % frames])

    # Ground truth: same stamps as the images, tags naming (scene, frame, seed).
    image_stamps = [_stamp(m) for m in observer.images]
    assert [_stamp(m) for m in observer.truth] == image_stamps
    tags = [FrameTag.decode(m.header.frame_id) for m in observer.truth]
    assert [(t.scene, t.frame, t.seed) for t in tags] == [
        (k // frames, k % frames, seed + k // frames) for k in range(2 * frames)
    ]

    # Detections: only on each scene's first frame, stamped like that image, boxes = ground truth.
    assert [_stamp(m) for m in observer.detections] == [image_stamps[0], image_stamps[frames]], det_out
    for msg, scene in zip(observer.detections, scenes):
        assert msg.header.frame_id == "camera"
        visible = np.flatnonzero(scene.visible[0])
        assert [d.id for d in msg.detections] == [str(i + 1) for i in visible]
        for det, i in zip(msg.detections, visible):
            ymin, xmin, ymax, xmax = scene.boxes[0, i]
            assert det.bbox.center.position.x == pytest.approx((xmin + xmax) / 2 * width)
            assert det.bbox.center.position.y == pytest.approx((ymin + ymax) / 2 * height)
            assert det.bbox.size_x == pytest.approx((xmax - xmin) * width)
            assert det.bbox.size_y == pytest.approx((ymax - ymin) * height)
            assert det.results[0].hypothesis.class_id == "object"

    # The tracker is reset once, between the last frame of scene 0 and the first of scene 1.
    assert len(observer.resets) == 1
    assert image_stamps[frames - 1] < observer.resets[0] < image_stamps[frames]


def test_detector_drop_all_sends_empty_arrays_every_n_frames(observer):
    frames = 5
    _, det_out = _run_pair(
        observer,
        camera=dict(num_scenes=1, frames_per_scene=frames, rate=25.0, width=48, height=80, reset_between_scenes=False),
        detector=dict(drop_prob=1.0, every_n_frames=2),
        detections=3,
    )
    image_stamps = [_stamp(m) for m in observer.images]
    assert len(image_stamps) == frames
    assert [_stamp(m) for m in observer.detections] == [image_stamps[t] for t in (0, 2, 4)], det_out
    assert all(len(m.detections) == 0 for m in observer.detections)
    assert observer.resets == []


def test_camera_and_detector_start_without_torch():
    """The stand-ins for a camera and a detector import no torch or scipy (seconds of CPU at each start; the
    demo, its launch file and these tests start them many times)."""
    probe = (
        "import sys; import savi_ros.demo.camera_node, savi_ros.demo.detector_node; "
        "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_camera_refuses_invalid_parameter():
    proc = _start("savi_ros.demo.camera_node", "/demo_test_invalid", rate=0.0)
    out = proc.communicate(timeout=TIMEOUT_S)[0]
    assert proc.returncode == 2
    assert "'rate'" in out and "> 0" in out


# ------------------------------------------------------------------------- no ROS graph below


def test_frame_tag_round_trip_and_bad_input():
    tag = FrameTag("cam/optical", 3, 17, 100003)
    assert FrameTag.decode(tag.encode()) == tag
    for bad in ("camera", "camera#scene=1&frame=2", "camera#scene=a&frame=2&seed=3"):
        with pytest.raises(ValueError, match="demo ground-truth frame_id"):
            FrameTag.decode(bad)


@pytest.mark.parametrize(
    "field,value",
    [("rate", 0.0), ("width", 4), ("encoding", "mono8"), ("max_objects", 0), ("frame_id", "a#b"), ("settle_s", -1.0)],
)
def test_camera_config_names_the_bad_parameter(field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        CameraConfig(**{field: value})


def test_perturb_noise_drop_ids_and_classes():
    scene = generate_scene(7, SceneConfig(height=60, width=90, num_frames=1, min_objects=4, max_objects=4))
    truth = ground_truth_detections(scene, 0)
    rng = np.random.default_rng(0)

    exact = perturb(truth, DetectorConfig(), rng)
    assert [(d.id, d.bbox.size_x, d.bbox.size_y, d.results[0].hypothesis.class_id) for d in exact] == [
        (t.id, t.bbox.size_x, t.bbox.size_y, "object") for t in truth
    ]

    noisy = perturb(truth, DetectorConfig(box_noise=0.1, send_ids=False, use_shape_classes=True), rng)
    assert [d.id for d in noisy] == [""] * len(truth)
    assert [d.results[0].hypothesis.class_id for d in noisy] == [scene.classes[int(t.id) - 1] for t in truth]
    shifts = np.array(
        [
            [n.bbox.center.position.x - t.bbox.center.position.x, n.bbox.size_x - t.bbox.size_x]
            for n, t in zip(noisy, truth)
        ]
    )
    assert np.abs(shifts).max() > 0.0  # noise was applied ...
    assert np.abs(shifts).max() < 0.6 * max(t.bbox.size_x for t in truth)  # ... at about 10 % of the size
    for d in noisy:
        assert d.bbox.size_x >= 1.0 and d.bbox.size_y >= 1.0
        assert d.bbox.center.position.x - d.bbox.size_x / 2 >= 0.0

    assert perturb(truth, DetectorConfig(drop_prob=1.0), rng) == []
    kept = [len(perturb(truth, DetectorConfig(drop_prob=0.5), rng)) for _ in range(200)]
    assert 0.35 < np.mean(kept) / len(truth) < 0.65


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"drop_prob": 1.5}, "drop_prob"),
        ({"box_noise": -0.1}, "box_noise"),
        ({"every_n_frames": -1}, "every_n_frames"),
        ({"class_id": ""}, "class_id"),
    ],
)
def test_detector_config_names_the_bad_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        DetectorConfig(**kwargs)


def test_detector_cadence():
    assert [t for t in range(7) if DetectorConfig().detects(t)] == [0]
    assert [t for t in range(7) if DetectorConfig(every_n_frames=3).detects(t)] == [0, 3, 6]
