"""The tracker node's lifecycle, parameters, faults and diagnostics, with the real node class in this process.

The node runs in its own rclpy context and executor; a second node of the test publishes images and
detections and reads the outputs, /diagnostics and /rosout over DDS. Everything is waited for by
condition, never by a fixed sleep.
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
vision_msgs = pytest.importorskip("vision_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose  # noqa: E402

from savi_core.model.checkpoint import load_checkpoint  # noqa: E402
from savi_core.tracking.tracker import Detection, Tracker  # noqa: E402
from savi_core.tracking.tracker_config import TrackerConfig  # noqa: E402
from savi_ros.tracker_node import TrackerNode  # noqa: E402
from test.savi_ros.conftest import wait_for  # noqa: E402

RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)
H, W = 40, 64
TIMEOUT_S = 30.0  # generous: a loaded 2-core CI machine


class Rig:
    """The node under test plus a test node on the same context, spun by one single-threaded executor (the
    node's own `main` spins like that). Lifecycle transitions go through the node's change_state service, as
    a lifecycle manager sends them, so they run in the executor's thread like in the product."""

    def __init__(self, checkpoint, **overrides) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.namespace = f"/node_test_{uuid.uuid4().hex[:8]}"
        values = {
            "checkpoint": str(checkpoint),
            "device": "cpu",
            "min_mask_area": 0,
            "mask_threshold": 0.0,
            "gate_margin": 0.0,
            **overrides,
        }
        self.node = TrackerNode(
            context=self.context,
            namespace=self.namespace,
            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()],
        )
        self.client = rclpy.create_node("node_test_client", namespace=self.namespace, context=self.context)
        self.lock = threading.Lock()
        self.tracks: dict[int, Detection2DArray] = {}
        self.masks: dict[int, Image] = {}
        self.diagnostics: list[DiagnosticArray] = []
        self.logs: list[Log] = []
        self.image_pub = self.client.create_publisher(Image, "image", RELIABLE)
        self.det_pub = self.client.create_publisher(Detection2DArray, "detections", RELIABLE)
        self.client.create_subscription(Detection2DArray, "tracks", self._keep(self.tracks), RELIABLE)
        self.client.create_subscription(Image, "masks", self._keep(self.masks), RELIABLE)
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self._append(self.diagnostics), RELIABLE)
        self._change_state = self.client.create_client(ChangeState, f"{self.namespace}/savi_tracker/change_state")
        self.client.create_subscription(Log, "/rosout", self._append(self.logs), RELIABLE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.stamp = 100

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _keep(self, store: dict):
        def callback(msg) -> None:
            with self.lock:
                store[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = msg

        return callback

    def _append(self, store: list):
        def callback(msg) -> None:
            with self.lock:
                store.append(msg)

        return callback

    def transition(self, transition_id: int) -> bool:
        """Ask the node for a lifecycle transition over its change_state service; True when it succeeded."""
        assert self._change_state.wait_for_service(timeout_sec=TIMEOUT_S)
        future = self._change_state.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        assert wait_for(future.done), f"transition {transition_id} got no answer"
        return future.result().success

    def start(self) -> None:
        assert self.transition(Transition.TRANSITION_CONFIGURE)
        assert self.transition(Transition.TRANSITION_ACTIVATE)
        assert wait_for(
            lambda: self.image_pub.get_subscription_count() > 0 and self.det_pub.get_subscription_count() > 0
        )

    def next_stamp(self) -> Time:
        self.stamp += 1
        return Time(sec=self.stamp, nanosec=0)

    def send(self, boxes=None, data: bytes | None = None, offset_s: float = 0.0) -> int:
        """Publish an image (and detections stamped ``offset_s`` later, if ``boxes``); returns the stamp (ns)."""
        stamp = self.next_stamp()
        img = Image(height=H, width=W, encoding="rgb8", step=3 * W)
        img.header.stamp = stamp
        img.data = self.pixels().tobytes() if data is None else data
        self.image_pub.publish(img)
        if boxes is not None:
            self.send_detections(stamp.sec * 10**9, boxes, offset_s)
        return stamp.sec * 10**9

    def send_detections(self, stamp: int, boxes, offset_s: float = 0.0) -> None:
        """Publish detections (x0, y0, x1, y1, id) of class "thing" stamped ``offset_s`` after ``stamp`` (ns)."""
        dets = Detection2DArray()
        dets.header.stamp = Time(sec=stamp // 10**9, nanosec=int(offset_s * 1e9))
        for x0, y0, x1, y1, det_id in boxes:
            det = Detection2D(id=det_id)
            det.bbox.center.position.x, det.bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
            det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = "thing", 0.9
            det.results.append(hyp)
            dets.detections.append(det)
        self.det_pub.publish(dets)

    @staticmethod
    def pixels() -> np.ndarray:
        """Every image the rig sends shows the same pixels."""
        return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)

    def track_ids(self, stamp: int) -> list[str] | None:
        assert wait_for(lambda: stamp in self.tracks), f"no tracks for stamp {stamp}"
        return sorted(d.id for d in self.tracks[stamp].detections)

    def call_reset(self):
        client = self.client.create_client(Trigger, "reset")
        assert client.wait_for_service(timeout_sec=TIMEOUT_S)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done)
        return future.result()

    def logged(self, text: str, level: int | None = None) -> bool:
        """Whether /rosout has a line containing ``text`` (at ``level``, e.g. ``Log.ERROR``, if given)."""
        with self.lock:
            return any(text in log.msg and level in (None, log.level) for log in self.logs)

    def last_status(self) -> DiagnosticStatus | None:
        """This node's newest status (other nodes of the test run publish on /diagnostics too)."""
        name = f"{self.namespace}/savi_tracker: tracking"
        with self.lock:
            ours = [s for a in self.diagnostics for s in a.status if s.name == name]
        return ours[-1] if ours else None

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.node._stop_processing()
        self.node._release()
        self.node.destroy_node()
        self.client.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def rig(painting_checkpoint):
    rigs = []

    def make(checkpoint=painting_checkpoint, **overrides) -> Rig:
        rigs.append(Rig(checkpoint, **overrides))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_unconfigured_node_offers_no_reset_and_processes_nothing(rig):
    """autostart:=false: nothing is loaded or subscribed until configure/activate; then it tracks."""
    r = rig(autostart=False)
    names = {n for n, _ in r.client.get_service_names_and_types()}
    assert f"{r.namespace}/reset" not in names
    assert r.image_pub.get_subscription_count() == 0 and r.node.pipeline is None
    r.start()
    assert wait_for(lambda: f"{r.namespace}/reset" in {n for n, _ in r.client.get_service_names_and_types()})
    assert r.track_ids(r.send([(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")])) == ["4", "9"]


def test_deactivate_keeps_tracks_and_activate_resumes_them(rig, painting_checkpoint):
    """Three frames with a deactivate/activate before the third: the node's third label map is the one a
    Tracker computes in-process without any pause (a reset would leave it empty: no detections there)."""
    r = rig()
    r.start()
    boxes = [(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")]
    assert r.track_ids(r.send(boxes)) == ["4", "9"]
    second = r.send()
    assert wait_for(lambda: second in r.masks)
    assert r.transition(Transition.TRANSITION_DEACTIVATE)
    assert r.node.pipeline.tracker.live_tracks == {4: "thing", 9: "thing"}
    assert r.transition(Transition.TRANSITION_ACTIVATE)
    assert wait_for(lambda: r.image_pub.get_subscription_count() > 0)
    third = r.send()
    assert wait_for(lambda: third in r.masks)
    published = np.frombuffer(bytes(r.masks[third].data), "<u2").reshape(H, W)

    model, _ = load_checkpoint(painting_checkpoint)
    tracker = Tracker(model, TrackerConfig(min_mask_area=0, mask_threshold=0.0, gate_margin=0.0), device="cpu")
    frame = r.pixels()
    tracker.step(frame, [Detection((x0, y0, x1, y1), "thing", 0.9, i) for x0, y0, x1, y1, i in boxes])
    tracker.step(frame)
    expected = tracker.step(frame).label_map
    assert (expected == 4).any() and (expected == 9).any()
    assert (published == expected).mean() > 0.999


def test_images_are_taken_by_the_image_thread_not_the_executor_and_deactivation_ends_it(rig):
    """The image subscription is outside the executor's wait set (its callback group refuses it) and one
    thread of the node takes the images: it ends on deactivate and a new one takes over on activate."""
    r = rig()
    r.start()
    filed_in: list[str] = []
    add_image = r.node.pipeline.add_image

    def recording_add_image(*args, **kwargs) -> None:
        filed_in.append(threading.current_thread().name)
        add_image(*args, **kwargs)

    r.node.pipeline.add_image = recording_add_image

    def image_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "savi_tracker_images"]

    image_sub = next(s for s in r.node._subs if s.topic_name.endswith("/image"))
    assert not r.executor.can_execute(image_sub)
    assert len(image_threads()) == 1
    assert r.track_ids(r.send([(2, 2, 20, 20, "3")])) == ["3"]
    assert filed_in == ["savi_tracker_images"]
    assert r.transition(Transition.TRANSITION_DEACTIVATE)
    assert not image_threads()
    assert r.transition(Transition.TRANSITION_ACTIVATE)
    assert wait_for(lambda: r.image_pub.get_subscription_count() > 0)
    assert len(image_threads()) == 1
    stamp = r.send()
    assert wait_for(lambda: stamp in r.masks)
    assert filed_in == ["savi_tracker_images"] * 2


def test_unpaired_detections_act_on_the_next_frame_and_sync_tolerance_changes_live(rig):
    r = rig()
    r.start()
    late = r.send([(2, 2, 20, 20, "5")], offset_s=0.05)  # stamped 50 ms after the image: no pair at 10 ms
    assert r.track_ids(late) == []
    assert r.track_ids(r.send()) == ["5"]  # they were not dropped: they acted on the next frame
    assert r.node.pipeline.stats.late_detections == 1 and r.node.pipeline.stats.dropped_detections == 0
    assert r.call_reset().success
    assert r.node.set_parameters([Parameter("sync_tolerance", value=0.1)])[0].successful
    assert r.track_ids(r.send([(2, 2, 20, 20, "7")], offset_s=0.05)) == ["7"]  # now they pair with their image


def test_ignored_detections_are_logged(rig):
    r = rig(max_tracks=1)
    r.start()
    assert r.track_ids(r.send([(2, 2, 20, 20, "1"), (40, 20, 60, 38, "2")])) == ["1"]
    assert wait_for(lambda: r.logged("1 new detection(s) ignored: no free slot (max_tracks 1)"))


def test_bad_and_empty_images_are_counted_dropped_and_the_node_keeps_serving(rig):
    r = rig()
    r.start()
    assert r.track_ids(r.send([(2, 2, 20, 20, "3")])) == ["3"]  # live: images no longer wait for detections
    bad = {"short": lambda: r.send(data=b"\x00" * 10)}

    def empty() -> int:
        stamp = r.next_stamp()
        msg = Image(height=0, width=0, encoding="rgb8", step=0)
        msg.header.stamp = stamp
        r.image_pub.publish(msg)
        return stamp.sec * 10**9

    bad["empty"] = empty
    for count, (name, send) in enumerate(bad.items(), start=1):
        stamp = send()
        assert wait_for(lambda: r.node.pipeline.stats.bad_images == count), name
        assert stamp not in r.tracks, name
    assert wait_for(lambda: r.logged("dropping image: image data has 10 bytes"))  # later ones: throttled
    assert r.track_ids(r.send()) is not None  # still serving
    # A broken image's detections are not lost with it: they act on the next good image.
    r.send([(40, 20, 60, 38, "8")], data=b"\x00" * 10)
    assert wait_for(lambda: r.node.pipeline.stats.bad_images == 3)
    assert r.track_ids(r.send()) is not None
    assert set(r.node.pipeline.tracker.live_tracks) == {3, 8}
    assert wait_for(lambda: r.last_status() is not None and values(r.last_status())["bad_images"] == "3")
    status = r.last_status()
    assert status.level == DiagnosticStatus.OK and values(status)["step_errors"] == "0"


class _FailingModel:
    """Fault injection: a model whose every step raises, as a device fault would."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def step(self, *args, **kwargs):
        raise RuntimeError("simulated device fault")


def test_a_failing_step_is_counted_reported_as_error_then_clears(rig):
    """The ERROR line names the real cause and the frame's stamp, also after warnings from the same code
    (rclpy refuses a severity change at one call site; that refusal used to replace the message)."""
    r = rig()
    r.start()
    assert r.track_ids(r.send([(2, 2, 20, 20, "x3")])) == ["1"]
    assert wait_for(lambda: r.logged("ignoring the id of 1 object(s)", Log.WARN))
    tracker = r.node.pipeline.tracker
    good_model = tracker._model
    tracker._model = _FailingModel(good_model)
    failed = r.send([(30, 5, 60, 35, "3")])
    assert wait_for(
        lambda: r.logged(
            f"tracker step failed on the image at stamp {failed * 1e-9:.3f} s: RuntimeError: simulated device fault",
            Log.ERROR,
        )
    )
    assert not r.logged("Logger severity cannot be changed")
    assert failed not in r.tracks
    assert wait_for(lambda: r.last_status() is not None and r.last_status().level == DiagnosticStatus.ERROR)
    assert values(r.last_status())["step_errors"] == "1"
    tracker._model = good_model
    # The failed frame's detection works when sent again (whether track 1 keeps pixels beside it is the
    # random weights' whim: it stays live, as the status below says).
    assert "3" in r.track_ids(r.send([(30, 5, 60, 35, "3")]))
    # The error leaves the window: OK again (the cumulative counter stays).
    assert wait_for(lambda: r.last_status().level == DiagnosticStatus.OK, timeout=20.0)
    status = values(r.last_status())
    assert status["step_errors"] == "1" and int(status["processed"]) >= 1 and status["live_tracks"] == "2"
    assert float(status["detector_lag_ms"]) >= 0.0  # images and their detections paired: the lag is known


def test_any_detection_id_is_handled_and_a_bad_one_is_ignored_with_a_warning_naming_it(rig):
    """A 5000-digit id made int() raise inside the step: that frame published nothing. Ids that are not
    decimal 1..65535 (" 7 " included) are ignored: their objects get the next free ids, the frame is tracked."""
    r = rig()
    r.start()
    boxes = [(2, 2, 20, 20, "9" * 5000), (30, 5, 60, 35, " 7 "), (2, 24, 20, 38, "12")]
    assert r.track_ids(r.send(boxes)) is not None  # the frame is published
    assert set(r.node.pipeline.tracker.live_tracks) == {1, 2, 12}
    assert wait_for(
        lambda: r.logged(
            "ignoring the id of 2 object(s), not a decimal track id 1..65535: detection at "
            "(2, 2, 20, 20) (id '9999999999999999'... (5000 characters)); detection at "
            "(30, 5, 60, 35) (id ' 7 ')",
            Log.WARN,
        )
    )
    assert wait_for(lambda: r.last_status() is not None and values(r.last_status())["ignored_ids"] == "2")
    assert values(r.last_status())["step_errors"] == "0"


def test_slow_offset_cameras_lose_no_frame_and_a_stamp_an_hour_ahead_is_dropped(rig):
    """Through the real node, whose clock is ROS time (the wall clock here): frames over 1 s apart (a camera
    slower than 1/time_jump_reset Hz, or a pause; time_jump_reset 0.5 s so the pauses stay short) are all
    tracked with the camera's clock in step with the node's, a minute behind and a minute ahead of it; a stamp
    an hour ahead is dropped and the frame after it tracked."""
    r = rig(time_jump_reset=0.5)
    r.start()

    def send_at(offset_s: float, boxes=None) -> int:
        """An image stamped the node's clock plus ``offset_s`` (whole seconds, as the rig stamps)."""
        r.stamp = int(r.node.get_clock().now().nanoseconds * 1e-9 + offset_s) - 1
        return r.send(boxes)

    for offset in (0.0, -60.0, 60.0):
        assert r.call_reset().success  # a new camera: no newest image yet
        first = send_at(offset, [(2, 2, 20, 20, "4")])
        assert r.track_ids(first) is not None
        time.sleep(1.1)  # the camera's pause: its whole-second stamps move on by 1 s or more
        later = send_at(offset)
        assert later - first > 0.5e9  # ahead of the newest image by more than time_jump_reset
        assert wait_for(lambda: later in r.tracks), f"camera {offset:+g} s: the frame after the pause was not tracked"
        assert set(r.node.pipeline.tracker.live_tracks) == {4}
    assert r.node.pipeline.stats.future_frames == 0
    poison = send_at(3600.0)
    assert wait_for(lambda: r.node.pipeline.stats.future_frames == 1)
    assert wait_for(
        lambda: r.logged("s ahead of the node's clock (more than time_jump_reset and future_tolerance)", Log.WARN)
    )
    after = send_at(60.0)
    assert wait_for(lambda: after in r.tracks) and poison not in r.tracks
    assert wait_for(lambda: (s := r.last_status()) is not None and values(s).get("future_frames") == "1")


def test_diagnostics_report_the_age_of_images_on_arrival(rig):
    """Stamped with the node's clock, whole seconds 1 to 4 s ago (the rig counts stamps up by 1 s), images
    report their age on arrival; these tiny images are no large images, whose transport time stays n/a."""
    r = rig()
    r.start()
    r.stamp = int(r.node.get_clock().now().nanoseconds * 1e-9) - 5
    assert r.track_ids(r.send([(2, 2, 20, 20, "1")])) == ["1"]
    for _ in range(3):
        assert r.track_ids(r.send()) is not None  # answered
    assert wait_for(lambda: r.last_status() is not None and values(r.last_status())["image_age_ms_p50"] != "n/a")
    status = values(r.last_status())
    assert 1000.0 <= float(status["image_age_ms_p50"]) <= float(status["image_age_ms_max"]) < 10000.0
    assert status["large_image_transport_ms_p50"] == "n/a"


def test_burst_an_image_with_detections_followed_at_once_by_another_starts_its_tracks_on_the_newer(rig):
    """60 times: reset, an image with 3 detections and, under 1 ms later, another image; the detections
    come before the newer image in even rounds, after it in odd ones. The middleware keeps only the last
    image (the contract's QoS), so the first image may never reach the node: its detections then act on
    the newer image, which lists all 3 tracks in every round. /diagnostics accounts for all 121 images:
    each received one in exactly one counter, the rest as missed (gaps in the publisher's sequence; the
    first image of a publisher is awaited, since a gap before it cannot be told from a late start)."""
    r = rig()
    r.start()
    assert r.track_ids(r.send()) == []
    # All 3 keep pixels for 6 steps with this checkpoint: the newer image is the tracks' first step when the
    # first image never reached the node, their second when it did (which one is DDS's timing, not the node's).
    boxes = [(48, 18, 64, 34), (6, 0, 22, 16), (30, 6, 46, 22)]
    started, failures = [], []
    for i in range(60):
        assert r.call_reset().success
        ids = [str(100 + 3 * i + k) for k in range(3)]
        labelled = [(*box, det_id) for box, det_id in zip(boxes, ids)]
        first = r.send(labelled if i % 2 == 0 else None)
        second = r.send()
        if i % 2:
            r.send_detections(first, labelled)
        shown = r.track_ids(second)
        started.append(shown == ids)
        if shown != ids:
            failures.append((i, shown, ids, r.track_ids(first) if first in r.tracks else "first not answered"))
    assert sum(started) == 60, failures
    assert r.node.pipeline.stats.dropped_detections == 0

    def counted() -> bool:
        status = r.last_status()
        if status is None:
            return False
        c = {k: int(v) for k, v in values(status).items() if k in r.node.pipeline.stats.counters()}
        accounted = sum(c[k] for k in ("processed", "dropped_frames", "unsupported_images", "bad_images"))
        # Fast DDS (the default rmw) reports publication sequence numbers; without them nothing is counted missed.
        sent = c["images"] + c["missed_images"] == 121 or not rclpy.get_rmw_implementation_identifier().startswith(
            "rmw_fastrtps"
        )
        return sent and accounted + c["oversized_images"] + c["step_errors"] == c["images"]

    assert wait_for(counted), str(values(r.last_status()))


def test_compressed_images_are_decoded_and_a_corrupt_one_is_dropped_with_a_warning(rig):
    """image_transport: compressed subscribes <image>/compressed (image_transport's name); jpeg and png
    frames track like raw ones, an undecodable payload is counted and warned about, never a crash."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    r = rig(image_transport="compressed")
    pub = r.client.create_publisher(CompressedImage, "image/compressed", RELIABLE)
    assert r.transition(Transition.TRANSITION_CONFIGURE)
    assert r.transition(Transition.TRANSITION_ACTIVATE)
    assert wait_for(lambda: pub.get_subscription_count() > 0 and r.det_pub.get_subscription_count() > 0)
    assert r.image_pub.get_subscription_count() == 0  # the raw topic is not subscribed

    def send(fmt: str, payload: bytes, boxes=None) -> int:
        stamp = r.next_stamp()
        msg = CompressedImage(format=fmt, data=payload)
        msg.header.stamp = stamp
        pub.publish(msg)
        if boxes is not None:
            dets = Detection2DArray()
            dets.header.stamp = stamp
            for x0, y0, x1, y1, det_id in boxes:
                det = Detection2D(id=det_id)
                det.bbox.center.position.x, det.bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
                det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
                dets.detections.append(det)
            r.det_pub.publish(dets)
        return stamp.sec * 10**9

    bgr = np.ascontiguousarray(r.pixels()[..., ::-1])
    png = cv2.imencode(".png", bgr)[1].tobytes()
    jpeg = cv2.imencode(".jpg", bgr)[1].tobytes()
    first = send("png", png, [(2, 2, 20, 20, "4")])
    assert r.track_ids(first) is not None and set(r.node.pipeline.tracker.live_tracks) == {4}
    assert wait_for(lambda: first in r.masks)
    published = np.frombuffer(bytes(r.masks[first].data), "<u2").reshape(H, W)
    assert published.shape == (H, W)
    assert r.track_ids(send("jpeg", jpeg)) is not None
    send("jpeg", b"\xff\xd8 not really a jpeg")
    assert wait_for(lambda: r.node.pipeline.stats.bad_images == 1)
    assert wait_for(lambda: r.logged("dropping image: cannot decode the compressed image"))
    assert r.track_ids(send("png", png)) is not None  # still serving


def test_images_over_max_image_pixels_are_dropped_counted_and_warned(rig):
    r = rig(max_image_pixels=H * W - 1)
    r.start()
    big = r.send([(2, 2, 20, 20, "3")])
    assert wait_for(lambda: r.node.pipeline.stats.oversized_images == 1)
    assert wait_for(lambda: r.logged(f"dropping a {W}x{H} image: more than max_image_pixels ({H * W - 1})"))
    assert big not in r.tracks
    assert r.node.set_parameters([Parameter("max_image_pixels", value=H * W)])[0].successful  # a live parameter
    assert r.track_ids(r.send([(2, 2, 20, 20, "3")])) is not None
    assert set(r.node.pipeline.tracker.live_tracks) == {3}


def test_fuzz_every_bad_input_between_good_frames_keeps_tracking_and_the_counts_add_up(rig):
    """Every class of bad input the node has met (issue: empty, unsupported, short, padded-too-little
    and oversized images, a non-finite and an overflowing box, ids that only look like numbers, a stamp
    far in the future), each followed by a good frame. Each good frame's label map is the one a
    Tracker fed the good frames alone computes, and /diagnostics accounts for every image and every
    rejected detection."""
    # The rig stamps frames 1 s apart and every bad image takes a stamp: the good frame after a bad one is 2 s
    # after the newest image, but behind the node's clock, so it is no poison stamp.
    # Re-identification off: with random weights on a noise image every look is like every other, so an
    # id-less detection could take a live track's id by look (savi_core.tracking.lifecycle.revive); this
    # test is about bad input, and its fresh ids.
    r = rig(max_image_pixels=H * W, dormant_seconds=0.0)
    r.start()
    boxes = [(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")]
    good_frames: list[tuple[int, list | None]] = []

    def good(with_boxes=None) -> None:
        stamp = r.send(with_boxes)
        assert wait_for(lambda: stamp in r.masks and stamp in r.tracks), f"no output for good frame {stamp}"
        good_frames.append((stamp, with_boxes))

    def image(stamp_sec: int | None = None, **fields) -> None:
        stamp = r.next_stamp() if stamp_sec is None else Time(sec=stamp_sec, nanosec=0)
        msg = Image(**{"height": H, "width": W, "encoding": "rgb8", "step": 3 * W, **fields})
        msg.header.stamp = stamp
        if "data" not in fields:
            msg.data = Rig.pixels().tobytes()
        r.image_pub.publish(msg)

    def counted(name: str, value: int) -> None:
        assert wait_for(lambda: getattr(r.node.pipeline.stats, name) == value), (
            f"{name} is {getattr(r.node.pipeline.stats, name)}, expected {value}"
        )

    good(boxes)
    image(height=0, width=0, step=0, data=b"")
    counted("bad_images", 1)
    good()
    image(encoding="yuv422")
    counted("unsupported_images", 1)
    good()
    image(data=b"\x01" * 100)
    counted("bad_images", 2)
    good()
    image(step=W)  # step smaller than a row
    counted("bad_images", 3)
    good()
    image(height=H + 1, data=b"\x00" * (3 * W * (H + 1)))  # one row over max_image_pixels
    counted("oversized_images", 1)
    good()
    image(stamp_sec=2**31 - 1)  # far in the future while tracks are live: dropped, never poisons later frames
    counted("future_frames", 1)
    good()
    good()
    # Bad detections next to good ones in one message: a NaN box and an overflowing box are rejected one
    # by one; "1_0", "+3" and Arabic-Indic digits are not ids: their objects get the smallest fresh ids.
    stamp = r.next_stamp()
    img = Image(height=H, width=W, encoding="rgb8", step=3 * W, data=Rig.pixels().tobytes())
    img.header.stamp = stamp
    dets = Detection2DArray()
    dets.header.stamp = stamp
    for det_id, (cx, cy, sx, sy) in (
        ("5", (float("nan"), 5.0, 4.0, 4.0)),
        ("6", (50.0, 1.7e308, 20.0, 1.7e308)),
        ("1_0", (48.0, 34.0, 6.0, 6.0)),
        ("+3", (8.0, 34.0, 6.0, 6.0)),
        ("\u0663", (28.0, 34.0, 6.0, 6.0)),
    ):
        det = Detection2D(id=det_id)
        det.bbox.center.position.x, det.bbox.center.position.y = cx, cy
        det.bbox.size_x, det.bbox.size_y = sx, sy
        dets.detections.append(det)
    # First, and received: with live tracks an image does not wait for its detections. (The poison stamp above
    # is the newest image the pairing saw, so these wait as late detections for the next frame.)
    r.det_pub.publish(dets)
    assert wait_for(lambda: r.node.pipeline.waiting_detections() == 1), "the detections did not reach the node"
    r.image_pub.publish(img)
    assert wait_for(lambda: stamp_ns(stamp) in r.tracks)
    counted("bad_detections", 2)
    live = set(r.node.pipeline.tracker.live_tracks)
    assert live == {1, 2, 3, 4, 9}  # int() would have made "1_0" track 10
    images_sent = len(good_frames) + 1 + 6
    assert wait_for(
        lambda: r.last_status() is not None and values(r.last_status())["processed"] == str(len(good_frames) + 1)
    )
    counters = values(r.last_status())
    accounted = sum(
        int(counters[k])
        for k in ("processed", "dropped_frames", "unsupported_images", "bad_images", "oversized_images")
    )
    assert accounted == images_sent and counters["images"] == str(images_sent), counters
    assert counters["step_errors"] == "0" and r.last_status().level == DiagnosticStatus.OK

    # The good frames' label maps are those of a Tracker given the good frames only. Up to 0.5% of the pixels
    # may differ: the two runs share one process whose CPU threads may differ in denormal flushing (set by
    # whichever earlier test ran a CLI's main), so a pixel where two random-weight slots nearly tie can flip.
    reference = Tracker(
        r.node.pipeline.tracker._model,
        TrackerConfig(min_mask_area=0, mask_threshold=0.0, gate_margin=0.0, dormant_seconds=0.0),
        device="cpu",
    )
    for stamp_value, with_boxes in good_frames:
        dets = (
            None
            if with_boxes is None
            else [Detection((x0, y0, x1, y1), "thing", 0.9, i) for x0, y0, x1, y1, i in with_boxes]
        )
        expected = reference.step(Rig.pixels(), dets).label_map
        published = np.frombuffer(bytes(r.masks[stamp_value].data), "<u2").reshape(H, W)
        assert (published == expected).mean() >= 0.995, (stamp_value, (published != expected).sum())
        assert set(np.unique(published)) == set(np.unique(expected)), stamp_value


def stamp_ns(stamp: Time) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def subscribe_label_info(r) -> list:
    """The node's latched label_info messages, as they arrive."""
    from rclpy.qos import DurabilityPolicy
    from vision_msgs.msg import LabelInfo

    labels: list[LabelInfo] = []
    latched = QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE,
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    r.client.create_subscription(LabelInfo, "label_info", labels.append, latched)
    return labels


def test_remove_track_ends_exactly_that_track_and_republishes_label_info(rig):
    from savi_ros_interfaces.srv import RemoveTrack

    r = rig()
    r.start()
    labels = subscribe_label_info(r)
    assert r.track_ids(r.send([(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")])) == ["4", "9"]
    assert wait_for(lambda: labels and [c.class_id for c in labels[-1].class_map] == [4, 9])
    client = r.client.create_client(RemoveTrack, "remove_track")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)

    def call(track_id: int):
        future = client.call_async(RemoveTrack.Request(track_id=track_id))
        assert wait_for(future.done)
        return future.result()

    answer = call(4)
    assert answer.success and "4" in answer.message
    assert wait_for(lambda: [c.class_id for c in labels[-1].class_map] == [9])  # republished at once
    after = r.send()
    assert "4" not in r.track_ids(after)  # (9 is listed where its random-weights mask wins pixels)
    assert wait_for(lambda: after in r.masks)
    published = np.frombuffer(bytes(r.masks[after].data), "<u2")
    assert not (published == 4).any() and set(r.node.pipeline.tracker.live_tracks) == {9}
    unknown = call(4)
    assert not unknown.success and unknown.message == "no live or dormant track 4"
    # The removed id is not reused: a new object asking for it gets a fresh one.
    assert "4" not in r.track_ids(r.send([(2, 2, 12, 12, "4")]))
    # Tracks are live, so that image did not wait for its detections: they act on it or, late, on the next.
    assert r.track_ids(r.send()) is not None and set(r.node.pipeline.tracker.live_tracks) == {1, 9}


class _FailingRestart(_FailingModel):
    """Fault injection: a model that steps but cannot restart a slot (what remove_track does)."""

    def step(self, *args, **kwargs):
        return self._model.step(*args, **kwargs)

    def init_slots_for(self, *args, **kwargs):
        raise RuntimeError("simulated restart fault")


def test_a_service_that_raises_answers_failure_logs_the_error_and_the_node_keeps_serving(rig):
    """An exception out of a service callback would stop the executor, and the node with it: the call
    is answered success false naming the exception, logged at ERROR, and the next frame is answered."""
    from savi_ros_interfaces.srv import RemoveTrack

    r = rig()
    r.start()
    assert r.track_ids(r.send([(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")])) == ["4", "9"]
    tracker = r.node.pipeline.tracker
    tracker._model = _FailingRestart(tracker._model)
    client = r.client.create_client(RemoveTrack, "remove_track")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)
    future = client.call_async(RemoveTrack.Request(track_id=4))
    assert wait_for(future.done)
    answer = future.result()
    assert not answer.success and answer.message == "failed: RuntimeError: simulated restart fault"
    assert wait_for(lambda: r.logged("remove_track failed: RuntimeError: simulated restart fault", Log.ERROR))
    assert r.track_ids(r.send()) is not None  # still spinning, still serving
    assert set(tracker.live_tracks) == {4, 9} and r.node.pipeline.stats.step_errors == 0  # none half removed


def test_label_info_keeps_dormant_tracks_until_they_expire_and_diagnostics_count_them(rig):
    """Every mask is under min_mask_area, so both tracks are lost on their first frame and, with
    lost_after_frames 1, dormant at once: in neither tracks nor masks, still in label_info."""

    r = rig(min_mask_area=10**6, lost_after_frames=1, dormant_seconds=2.5)
    r.start()
    labels = subscribe_label_info(r)
    first = r.send([(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")])
    assert r.track_ids(first) == []
    assert wait_for(lambda: first in r.masks) and not np.frombuffer(bytes(r.masks[first].data), "<u2").any()
    assert wait_for(lambda: labels and [c.class_id for c in labels[-1].class_map] == [4, 9])
    assert r.node.pipeline.tracker.dormant_tracks == {4: "thing", 9: "thing"}
    assert wait_for(
        lambda: (
            (s := r.last_status()) is not None
            and values(s)["dormant_tracks"] == "2"
            and values(s)["live_tracks"] == "0"
        )
    )
    revived = r.send([(2, 2, 20, 20, "4")])  # a detection naming a dormant id revives it (lost again at once)
    assert r.track_ids(revived) == [] and wait_for(lambda: r.node.pipeline.stats.revivals == 1)
    r.track_ids(r.send())  # stamps are 1 s apart: 9 slept on the first one, 2 s ago
    assert [c.class_id for c in labels[-1].class_map] == [4, 9]
    r.track_ids(r.send())  # 3 s: 9 ends; 4 slept again on the second stamp, 2 s ago
    assert wait_for(lambda: [c.class_id for c in labels[-1].class_map] == [4])
    assert wait_for(lambda: values(r.last_status())["expiries"] == "1" and values(r.last_status())["revivals"] == "1")


def test_add_objects_mid_stream_adds_tracks_without_disturbing_the_others(rig):
    from geometry_msgs.msg import Point
    from savi_ros_interfaces.srv import AddObjects
    from vision_msgs.msg import BoundingBox2D

    r = rig()
    r.start()
    client = r.client.create_client(AddObjects, "add_objects")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)

    def call(boxes=(), points=(), ids=(), class_ids=()):
        request = AddObjects.Request(ids=list(ids), class_ids=list(class_ids))
        for x0, y0, x1, y1 in boxes:
            box = BoundingBox2D(size_x=float(x1 - x0), size_y=float(y1 - y0))
            box.center.position.x, box.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
            request.boxes.append(box)
        request.points = [Point(x=float(x), y=float(y)) for x, y in points]
        future = client.call_async(request)
        assert wait_for(future.done)
        return future.result()

    assert r.track_ids(r.send([(2, 2, 20, 20, "4"), (30, 5, 60, 35, "9")])) is not None
    before = r.send()
    assert wait_for(lambda: before in r.masks)
    answer = call(boxes=[(40, 20, 60, 38)], ids=["12"], class_ids=["cup"])
    assert answer.success and list(answer.track_ids) == [12]
    after = r.send()
    assert wait_for(lambda: after in r.masks)
    assert r.node.pipeline.tracker.live_tracks == {4: "thing", 9: "thing", 12: "cup"}
    refused = call(points=[(10, 10)])
    assert not refused.success and "not points" in refused.message and list(refused.track_ids) == []
    empty = call(boxes=[(5, 5, 5, 9)])
    assert not empty.success and "finite numbers" in empty.message
    assert set(r.node.pipeline.tracker.live_tracks) == {4, 9, 12}


def publish_rgb(r: Rig, rgb: np.ndarray) -> int:
    """Publish an RGB array as the next image; returns its stamp (ns)."""
    stamp = r.next_stamp()
    img = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=3 * rgb.shape[1], data=rgb.tobytes())
    img.header.stamp = stamp
    r.image_pub.publish(img)
    return stamp_ns(stamp)


def prompt_publishers(r: Rig):
    from geometry_msgs.msg import Point, PointStamped

    pubs = (
        r.client.create_publisher(PointStamped, "points", RELIABLE),
        r.client.create_publisher(Point, "points_click", RELIABLE),
        r.client.create_publisher(Image, "prompt_masks", RELIABLE),
    )
    assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs))
    return pubs


def test_a_point_on_an_object_starts_a_track_whose_mask_covers_it(rig):
    """The shipped model takes points: a click at an object's centre of mass tracks that object."""
    from geometry_msgs.msg import PointStamped
    from savi_scenes import SceneConfig, generate_scene

    scene = generate_scene(11, SceneConfig(height=96, width=128, num_frames=4, min_objects=3, max_objects=3))
    r = rig(checkpoint="default", mask_threshold=0.3, image_qos="reliable")
    r.start()
    points_pub, _, _ = prompt_publishers(r)
    assert "points" in r.node.pipeline.tracker.prompt_kinds
    areas = [(scene.segmentations[0] == i + 1).sum() for i in range(scene.num_objects)]
    target = int(np.argmax(areas)) + 1
    ys, xs = np.nonzero(scene.segmentations[0] == target)
    stamp = Time(sec=r.stamp + 1, nanosec=0)
    msg = PointStamped()
    msg.header.stamp = stamp
    msg.point.x, msg.point.y = float(xs.mean() + 0.5), float(ys.mean() + 0.5)
    points_pub.publish(msg)  # before its image: held until the image comes
    assert wait_for(lambda: r.node.pipeline is not None and r.node.pipeline._prompts)
    stamps = []
    for frame in scene.video:
        stamps.append(publish_rgb(r, frame))
        assert r.track_ids(stamps[-1]) == ["1"]
    for index, stamp_value in enumerate(stamps):
        assert wait_for(lambda: stamp_value in r.masks)
        published = np.frombuffer(bytes(r.masks[stamp_value].data), "<u2").reshape(96, 128)
        truth = scene.segmentations[index] == target
        iou = ((published == 1) & truth).sum() / ((published == 1) | truth).sum()
        assert iou >= 0.5, (index, iou)
    # A point whose stamp matches no image is dropped with a warning once the hold time has passed.
    ghost = PointStamped()
    ghost.header.stamp = Time(sec=r.stamp, nanosec=500_000_000)  # between two images
    points_pub.publish(ghost)
    assert wait_for(lambda: r.logged(f"dropping point (0, 0) at stamp {r.stamp}.500 s: no image with that stamp"))
    assert list(r.node.pipeline.tracker.live_tracks) == [1]


def test_clicks_and_mask_prompts_start_tracks_and_bad_ones_are_refused_with_a_warning(rig):
    from geometry_msgs.msg import Point, PointStamped

    r = rig()
    r.start()
    points_pub, click_pub, mask_pub = prompt_publishers(r)
    # A box model: a point is refused with a warning, the mask starts one track per id, asking for it.
    click_pub.publish(Point(x=10.0, y=10.0))
    assert wait_for(lambda: r.logged("refusing point (10, 10): this model takes boxes and masks, not points"))
    labels = np.zeros((H, W), np.uint16)
    labels[2:20, 3:30] = 40
    labels[22:38, 35:60] = 2
    stamp = r.next_stamp()
    mask = Image(height=H, width=W, encoding="16UC1", step=2 * W, data=labels.astype("<u2").tobytes())
    mask.header.stamp = stamp
    mask_pub.publish(mask)
    r.stamp -= 1  # the next image gets the mask's stamp
    assert r.track_ids(r.send()) == ["2", "40"] or set(r.node.pipeline.tracker.live_tracks) == {2, 40}
    assert set(r.node.pipeline.tracker.live_tracks) == {2, 40}
    # Wrong size, wrong encoding, a point of no image: each a warning, nothing started, the node serves on.
    small = Image(height=4, width=4, encoding="mono8", step=4, data=bytes([1] * 16))
    small.header.stamp = Time(sec=r.stamp + 1, nanosec=0)
    mask_pub.publish(small)
    color = Image(height=H, width=W, encoding="rgb8", step=3 * W, data=bytes(3 * H * W))
    mask_pub.publish(color)
    assert wait_for(lambda: r.logged("refusing a prompt: mask encoding 'rgb8' is not a label image"))
    r.track_ids(r.send())
    assert wait_for(lambda: r.logged("dropping mask with 1 object(s): 4x4, the image is 64x40"))
    points_pub.publish(PointStamped())  # refused at once again (its warning throttled, its count not)
    assert wait_for(lambda: r.node.pipeline.stats.refused_prompts == 4)
    r.track_ids(r.send())
    assert set(r.node.pipeline.tracker.live_tracks) == {2, 40} and r.node.pipeline.stats.prompts == 2
