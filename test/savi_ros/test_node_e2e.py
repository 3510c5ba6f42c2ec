"""The tracker node end to end: a real `python -m savi_ros.tracker_node` process over real DDS.

One node process serves most tests of this module (module-scoped); every test starts with
`reset` and uses fresh, increasing stamps so the tests do not depend on each other's tracks.
The model is a tiny random-weights checkpoint: tests check the contract (ids, headers, sizes,
latching, robustness), not segmentation quality.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
vision_msgs = pytest.importorskip("vision_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, ObjectHypothesisWithPose  # noqa: E402

from savi_ros.qos import keep_last  # noqa: E402
from test.savi_ros.conftest import wait_for  # noqa: E402


RELIABLE = keep_last(10)
LATCHED = keep_last(1, latched=True)
# rclpy's own default incompatible-QoS callbacks (test side) still call the deprecated `warn`
pytestmark = pytest.mark.filterwarnings("ignore:Deprecated in favor of:DeprecationWarning")
FRAME_ID = "cam_optical"
H, W = 48, 80  # non-square on purpose
_stamps = itertools.count(1000 * 10)  # tenths of a second, increasing across tests


def next_stamp() -> Time:
    tenths = next(_stamps)
    return Time(sec=tenths // 10, nanosec=(tenths % 10) * 100_000_000)


def ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def make_image(stamp: Time, encoding: str = "rgb8", h: int = H, w: int = W, pad: int = 0, seed: int = 0) -> Image:
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "yuv422": 2}[encoding]
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 256, (h, w * channels + pad), dtype=np.uint8)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * channels + pad)
    msg.header.stamp, msg.header.frame_id = stamp, FRAME_ID
    msg.data = rows.tobytes()
    return msg


def make_detections(stamp: Time, boxes: list[tuple[float, float, float, float, str, str]]) -> Detection2DArray:
    """boxes: (x0, y0, x1, y1, id, class)."""
    msg = Detection2DArray()
    msg.header.stamp, msg.header.frame_id = stamp, FRAME_ID
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box[:4])  # ints in float64 fields serialise as garbage
        det_id, cls = box[4], box[5]
        det = Detection2D(id=det_id)
        det.header = msg.header
        det.bbox.center.position.x, det.bbox.center.position.y = (x0 + x1) / 2, (y0 + y1) / 2
        det.bbox.size_x, det.bbox.size_y = x1 - x0, y1 - y0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = cls, 0.9
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


class Harness:
    """Test-side endpoints for one node process."""

    def __init__(self, spinner, node_proc) -> None:
        self.spinner, self.proc = spinner, node_proc
        n, base = spinner.node, node_proc.namespace
        self.lock = threading.Lock()
        self.tracks: dict[int, Detection2DArray] = {}
        self.masks: dict[int, Image] = {}
        self.labels: list[LabelInfo] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.image_pub = n.create_publisher(Image, f"{base}/image", RELIABLE)
        self.det_pub = n.create_publisher(Detection2DArray, f"{base}/detections", RELIABLE)
        self.subs = [
            n.create_subscription(Detection2DArray, f"{base}/tracks", self._keep(self.tracks), RELIABLE),
            n.create_subscription(Image, f"{base}/masks", self._keep(self.masks), RELIABLE),
            n.create_subscription(LabelInfo, f"{base}/label_info", self._append(self.labels), LATCHED),
            n.create_subscription(DiagnosticArray, "/diagnostics", self._append(self.diagnostics), RELIABLE),
        ]
        self.reset_cli = n.create_client(Trigger, f"{base}/reset")
        self.set_cli = n.create_client(SetParameters, f"{base}/savi_tracker/set_parameters")
        self.get_cli = n.create_client(GetParameters, f"{base}/savi_tracker/get_parameters")
        self.change_cli = n.create_client(ChangeState, f"{base}/savi_tracker/change_state")
        self.state_cli = n.create_client(GetState, f"{base}/savi_tracker/get_state")

    def _keep(self, store):
        def cb(msg):
            with self.lock:
                store[ns(msg.header.stamp)] = msg

        return cb

    def _append(self, store):
        def cb(msg):
            with self.lock:
                store.append(msg)

        return cb

    def call(self, client, request, timeout: float = 10.0, idempotent: bool = False):
        """One request; an idempotent one is sent again when its answer does not come. DDS can report a
        service available before the server has matched this client's reply reader, and that first
        reply is lost (seen once here on the first `reset`, under load)."""
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        attempts = 3 if idempotent else 1
        for _ in range(attempts):
            future = client.call_async(request)
            if wait_for(future.done, timeout):
                return future.result()
        raise AssertionError(f"no answer from {client.srv_name} ({attempts} request(s), {timeout:g} s each)")

    def reset(self) -> None:
        assert self.call(self.reset_cli, Trigger.Request(), idempotent=True).success

    def send(self, image: Image, dets: Detection2DArray | None = None, dets_delay: float | None = None) -> int:
        """Publish an image (and detections, optionally `dets_delay` s later); returns its stamp in ns."""
        self.image_pub.publish(image)
        if dets is not None:
            if dets_delay:
                time.sleep(dets_delay)
            self.det_pub.publish(dets)
        return ns(image.header.stamp)

    def outputs(self, stamp: int, timeout: float = 5.0) -> tuple[Detection2DArray, Image]:
        ok = wait_for(lambda: stamp in self.tracks and stamp in self.masks, timeout)
        assert ok, f"no tracks/masks for stamp {stamp}\n--- node log ---\n{self.proc.output()[-3000:]}"
        with self.lock:
            return self.tracks[stamp], self.masks[stamp]

    def latest_labels(self) -> LabelInfo:
        with self.lock:
            return self.labels[-1]

    def set_params(self, **values) -> list:
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self.call(self.set_cli, req).results

    def get_param(self, name: str):
        res = self.call(self.get_cli, GetParameters.Request(names=[name]), idempotent=True).values[0]
        return Parameter.from_parameter_msg(ParameterMsg(name=name, value=res)).value


def expected_first_step(checkpoint: Path, boxes: list) -> "object":
    """The Tracker's result on ``make_image``'s default image with ``boxes`` (((x0, y0, x1, y1), id, class)),
    with the parameters the harness gives the node."""
    from savi_core.model.checkpoint import load_checkpoint
    from savi_core.tracking.tracker import Detection, Tracker
    from savi_core.tracking.tracker_config import TrackerConfig

    model, _ = load_checkpoint(checkpoint)
    tracker = Tracker(model, TrackerConfig(min_mask_area=0, mask_threshold=0.0, gate_margin=0.0), device="cpu")
    rgb = np.frombuffer(bytes(make_image(Time()).data), np.uint8).reshape(H, W, 3)
    return tracker.step(rgb, [Detection(box, cls, 1.0, det_id) for box, det_id, cls in boxes])


def mask_array(msg: Image) -> np.ndarray:
    assert msg.encoding == "16UC1" and msg.step == msg.width * 2
    return np.frombuffer(bytes(msg.data), dtype="<u2").reshape(msg.height, msg.width)


@pytest.fixture(scope="module")
def harness(painting_checkpoint, spinner, tmp_path_factory, node_launcher):
    namespace = f"/e2e_{os.getpid()}"
    node = node_launcher(
        tmp_path_factory.mktemp("node"),
        namespace,
        {
            "checkpoint": str(painting_checkpoint),
            "device": "cpu",
            "min_mask_area": "0",
            "mask_threshold": "0.0",
            "gate_margin": "0.0",
        },
    )
    h = Harness(spinner, node)
    h.checkpoint = painting_checkpoint
    ready = wait_for(
        lambda: (
            h.image_pub.get_subscription_count() > 0
            and h.det_pub.get_subscription_count() > 0
            and spinner.node.count_publishers(f"{namespace}/tracks") > 0
        ),
        30.0,
    )
    if not ready:
        node.stop()
        pytest.fail(f"node did not come up\n{node.output()}")
    yield h
    if node.proc.poll() is None:
        node.proc.kill()
        node.proc.wait()


def test_bootstrap_keeps_detection_ids_and_image_headers(harness):
    harness.reset()
    stamp = next_stamp()
    # The detections arrive 50 ms after their image: they must still bootstrap on that image.
    s = harness.send(
        make_image(stamp),
        make_detections(stamp, [(5, 5, 25, 30, "3", "cup"), (45, 10, 75, 40, "7", "")]),
        dets_delay=0.05,
    )
    tracks, masks = harness.outputs(s)
    assert tracks.header.stamp == stamp and tracks.header.frame_id == FRAME_ID
    assert masks.header.stamp == stamp and masks.header.frame_id == FRAME_ID
    assert (masks.height, masks.width) == (H, W)
    # What the node published is what the Tracker computes in-process on the same image and boxes.
    expected = expected_first_step(harness.checkpoint, [((5, 5, 25, 30), "3", "cup"), ((45, 10, 75, 40), "7", "")])
    published = mask_array(masks)
    assert expected.live_track_ids == [3, 7]
    for track_id in (0, 3, 7):
        assert (published == track_id).sum() == (expected.label_map == track_id).sum(), track_id
    assert (expected.label_map == 3).any() and (expected.label_map == 7).any()
    assert (published == expected.label_map).mean() > 0.999
    assert sorted(d.id for d in tracks.detections) == sorted(str(t.track_id) for t in expected.tracks)
    for det in tracks.detections:
        assert det.results[0].hypothesis.class_id == {"3": "cup", "7": "object"}[det.id]
        assert 0.0 <= det.results[0].hypothesis.score <= 1.0
    assert wait_for(lambda: harness.labels and harness.latest_labels().header.stamp == stamp, 5.0)
    labels = harness.latest_labels()
    assert {(c.class_id, c.class_name) for c in labels.class_map} == {(3, "cup"), (7, "object")}
    assert labels.threshold == pytest.approx(0.0)
    # Tracking continues without detections, ids stay.
    s2 = harness.send(make_image(next_stamp(), seed=1))
    _, masks2 = harness.outputs(s2)
    assert set(np.unique(mask_array(masks2))) <= {0, 3, 7}


def test_late_subscriber_receives_label_info(harness):
    harness.reset()
    stamp = next_stamp()
    harness.outputs(harness.send(make_image(stamp), make_detections(stamp, [(10, 10, 30, 30, "5", "box")])))
    late: list[LabelInfo] = []
    sub = harness.spinner.node.create_subscription(
        LabelInfo, f"{harness.proc.namespace}/label_info", late.append, LATCHED
    )
    try:
        assert wait_for(lambda: late, 5.0), "a late transient-local subscriber got no label_info"
        assert [(c.class_id, c.class_name) for c in late[-1].class_map] == [(5, "box")]
    finally:
        harness.spinner.node.destroy_subscription(sub)


def test_add_new_starts_a_track_and_reset_clears_everything(harness):
    harness.reset()
    stamp = next_stamp()
    harness.outputs(harness.send(make_image(stamp), make_detections(stamp, [(2, 2, 20, 20, "3", "a")])))
    stamp = next_stamp()
    harness.outputs(harness.send(make_image(stamp, seed=2), make_detections(stamp, [(60, 30, 78, 46, "", "b")])))
    harness.outputs(harness.send(make_image(next_stamp(), seed=2)))  # detections that came after their image act here
    assert wait_for(lambda: {c.class_id for c in harness.latest_labels().class_map} == {1, 3}, 5.0), (
        harness.latest_labels()
    )
    assert {c.class_name for c in harness.latest_labels().class_map} == {"a", "b"}

    harness.reset()
    stamp = next_stamp()
    tracks, masks = harness.outputs(harness.send(make_image(stamp, seed=3)), timeout=5.0)
    assert tracks.detections == []
    assert not mask_array(masks).any()
    assert wait_for(lambda: harness.latest_labels().class_map == [], 5.0)
    assert harness.latest_labels().header.stamp == stamp


@pytest.mark.parametrize(
    "encoding,h,w,pad",
    [("bgr8", 30, 90, 0), ("mono8", 64, 24, 0), ("rgba8", 40, 40, 0), ("bgra8", 17, 33, 0), ("rgb8", 48, 80, 7)],
)
def test_encodings_sizes_and_padded_step(harness, encoding, h, w, pad):
    harness.reset()
    stamp = next_stamp()
    dets = make_detections(stamp, [(1, 1, w / 2, h / 2, "9", "x")])
    tracks, masks = harness.outputs(harness.send(make_image(stamp, encoding, h, w, pad), dets))
    assert (masks.height, masks.width) == (h, w)
    assert set(np.unique(mask_array(masks))) <= {0, 9}
    for det in tracks.detections:
        cx, cy, sx, sy = det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y
        assert 0 <= cx - sx / 2 and cx + sx / 2 <= w and 0 <= cy - sy / 2 and cy + sy / 2 <= h


def test_unsupported_encoding_warns_once_and_node_keeps_serving(harness):
    harness.reset()
    warning = "unsupported encoding 'yuv422'"
    bad = [harness.send(make_image(next_stamp(), "yuv422"))]
    assert wait_for(lambda: warning in harness.proc.output(), 5.0), harness.proc.output()
    harness.outputs(harness.send(make_image(next_stamp())))
    bad.append(harness.send(make_image(next_stamp(), "yuv422")))
    harness.outputs(harness.send(make_image(next_stamp())))  # the second bad image came before this one
    assert not any(s in harness.masks for s in bad)
    assert harness.proc.output().count(warning) == 1, harness.proc.output()
    assert harness.proc.proc.poll() is None


def own_status_name(harness) -> str:
    """This node's /diagnostics status (other tracker nodes of the test run publish there too)."""
    return f"{harness.proc.namespace}/savi_tracker: tracking"


def late_detections(harness) -> int:
    """The node's late-detections counter from its newest /diagnostics status (0 before the first)."""
    with harness.lock:
        statuses = [s for a in harness.diagnostics for s in a.status if s.name == own_status_name(harness)]
    return int({kv.key: kv.value for kv in statuses[-1].values}["late_detections"]) if statuses else 0


def test_detections_for_an_unknown_stamp_act_on_the_next_processed_frame(harness):
    """No detection message is lost: one whose image never comes starts its track on the next frame."""
    harness.reset()
    ghost = Time(sec=next_stamp().sec + 3600)
    before = late_detections(harness)
    harness.det_pub.publish(make_detections(ghost, [(1, 1, 30, 30, "4", "ghost")]))
    # The node holds detections 1 s for their image, then keeps them for the next frame.
    assert wait_for(lambda: late_detections(harness) > before, 10.0)
    stamp = next_stamp()
    harness.outputs(harness.send(make_image(stamp)))
    assert wait_for(lambda: harness.labels and harness.latest_labels().header.stamp == stamp, 5.0)
    assert [(c.class_id, c.class_name) for c in harness.latest_labels().class_map] == [(4, "ghost")]
    assert harness.proc.proc.poll() is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("device", "tpu"),
        ("mask_source", "foo"),
        ("score_threshold", -0.5),
        ("new_object_iou", 1.5),
        ("image_qos", "fast"),
        ("sync_tolerance", -1.0),
        ("lost_after_frames", 0),
        ("reinit", "sometimes"),
    ],
)
def test_invalid_parameter_is_refused_with_its_name(harness, name, value):
    before = harness.get_param(name)
    [result] = harness.set_params(**{name: value})
    assert not result.successful
    assert name in result.reason
    assert harness.get_param(name) == before


def test_valid_live_parameter_change_is_accepted(harness):
    [result] = harness.set_params(score_threshold=0.95)
    assert result.successful, result.reason
    try:
        harness.reset()
        stamp = next_stamp()  # detections score 0.9 < 0.95: ignored, no bootstrap
        tracks, masks = harness.outputs(
            harness.send(make_image(stamp), make_detections(stamp, [(1, 1, 20, 20, "3", "a")]))
        )
        assert tracks.detections == [] and not mask_array(masks).any()
    finally:
        assert harness.set_params(score_threshold=0.3)[0].successful


def test_diagnostics_report_step_time_and_drops(harness):
    harness.outputs(harness.send(make_image(next_stamp())))

    def ours():
        with harness.lock:
            return [s for a in harness.diagnostics for s in a.status if s.name == own_status_name(harness)]

    assert wait_for(lambda: ours(), 5.0)
    keys = {kv.key for kv in ours()[-1].values}
    assert {"fps", "step_ms_mean", "dropped_frames", "live_tracks", "processed"} <= keys


def test_debug_image_only_while_subscribed_and_output_qos_warning(harness):
    base = harness.proc.namespace
    harness.reset()
    stamp = next_stamp()
    harness.outputs(harness.send(make_image(stamp), make_detections(stamp, [(5, 5, 30, 30, "2", "a")])))
    debug: list[Image] = []
    sub = harness.spinner.node.create_subscription(Image, f"{base}/debug_image", debug.append, RELIABLE)
    # a subscriber asking for transient local on `tracks` cannot be served: the node says so
    latched_tracks = harness.spinner.node.create_subscription(
        Detection2DArray, f"{base}/tracks", lambda m: None, LATCHED
    )
    try:
        assert wait_for(lambda: harness.spinner.node.count_subscribers(f"{base}/debug_image") > 0, 5.0)
        stamp = next_stamp()
        harness.outputs(harness.send(make_image(stamp, seed=5)))
        assert wait_for(lambda: any(m.header.stamp == stamp for m in debug), 5.0)
        msg = next(m for m in debug if m.header.stamp == stamp)
        assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == ("rgb8", H, W, FRAME_ID)
        assert wait_for(lambda: "requests a QoS this node does not offer" in harness.proc.output(), 5.0)
    finally:
        harness.spinner.node.destroy_subscription(sub)
        harness.spinner.node.destroy_subscription(latched_tracks)


def test_frame_older_than_the_last_processed_is_dropped_with_a_warning(harness):
    harness.reset()
    newer = next_stamp()
    older_ns = ns(newer) - 50_000_000  # off the tenths grid other tests use: never an earlier test's stamp
    older = Time(sec=older_ns // 10**9, nanosec=older_ns % 10**9)
    harness.outputs(harness.send(make_image(newer)))
    stale = harness.send(make_image(older))  # less than time_jump_reset (1 s) back: a stale frame
    assert wait_for(lambda: "older than the last processed" in harness.proc.output(), 5.0), harness.proc.output()
    harness.outputs(harness.send(make_image(next_stamp())))
    assert stale not in harness.masks


def test_jumps_in_time_end_tracks_or_drop_the_odd_frame_and_outputs_resume(harness):
    """A far-future stamp while tracking is dropped with a warning; a jump back ends the tracks once."""
    harness.reset()
    start = next_stamp()
    harness.outputs(harness.send(make_image(start), make_detections(start, [(2, 2, 30, 30, "3", "a")])))
    future = harness.send(make_image(Time(sec=2**31 - 1)))
    dropped = "ahead of the node's clock (more than time_jump_reset and future_tolerance)"
    assert wait_for(lambda: dropped in harness.proc.output(), 5.0), harness.proc.output()
    for _ in range(3):  # outputs go on at once, tracks kept
        harness.outputs(harness.send(make_image(next_stamp())))
    assert future not in harness.masks and harness.latest_labels().class_map[0].class_id == 3
    back = Time(sec=start.sec - 100)  # a restarted recording
    harness.outputs(harness.send(make_image(back)))
    assert wait_for(lambda: "time jumped back by" in harness.proc.output(), 5.0)
    assert harness.proc.output().count("time jumped back by") == 1
    assert wait_for(lambda: harness.latest_labels().class_map == [], 5.0)  # tracks ended
    harness.reset()


def test_lifecycle_reconfigure_and_incompatible_qos_warning(harness):
    """Deactivate + cleanup release the model; a new image_qos applies on configure; a best-effort
    publisher meeting the now reliable subscription is reported."""
    for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
        assert harness.call(harness.change_cli, ChangeState.Request(transition=Transition(id=transition))).success
    assert harness.call(harness.state_cli, GetState.Request(), idempotent=True).current_state.label == "unconfigured"
    assert harness.set_params(image_qos="reliable")[0].successful
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert harness.call(harness.change_cli, ChangeState.Request(transition=Transition(id=transition))).success
    assert harness.call(harness.state_cli, GetState.Request(), idempotent=True).current_state.label == "active"
    best_effort = keep_last(1, reliable=False)
    pub = harness.spinner.node.create_publisher(Image, f"{harness.proc.namespace}/image", best_effort)
    try:
        assert wait_for(lambda: "offers a QoS incompatible" in harness.proc.output(), 10.0), harness.proc.output()
        assert "RELIABILITY" in harness.proc.output()
    finally:
        harness.spinner.node.destroy_publisher(pub)
    # the reliable test publisher still gets through after the reconfigure
    harness.outputs(harness.send(make_image(next_stamp())), timeout=10.0)


def test_sigint_stops_the_node_with_exit_code_zero(harness):
    assert harness.proc.stop(timeout=30.0) == 0, harness.proc.output()
    assert "Traceback" not in harness.proc.output()


# ---------------------------------------------------------------------------------------------- start-up


def _broken_checkpoints(tiny_checkpoint: Path, root: Path) -> dict[str, Path]:
    truncated = root / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    (truncated / "model.safetensors").write_bytes((tiny_checkpoint / "model.safetensors").read_bytes()[:100])
    return {"missing": root / "does_not_exist", "truncated": truncated}


def test_start_up_failures_exit_non_zero_with_a_clear_message(tiny_checkpoint, tmp_path, node_launcher):
    """Each case is a process start (~3 s of imports), so only one per kind of failure here; the
    checkpoint checks themselves are unit-tested with savi_core.model.checkpoint, type errors in test_params."""
    cases = {
        name: ({"checkpoint": str(path)}, [str(path)])
        for name, path in _broken_checkpoints(tiny_checkpoint, tmp_path).items()
    }
    cases["bad_param"] = ({"checkpoint": str(tiny_checkpoint), "mask_source": "foo"}, ["mask_source", "foo"])
    procs = {name: node_launcher(tmp_path, f"/startup_{name}_{os.getpid()}", p) for name, (p, _) in cases.items()}
    expected_problem = {"missing": "not found", "truncated": "corrupt"}
    for name, proc in procs.items():
        rc = proc.proc.wait(timeout=60)
        out = proc.output()
        assert rc == 1, f"{name}: exit {rc}\n{out}"
        assert "Traceback" not in out, out
        assert len(out.strip().splitlines()) == 1, f"{name}: expected one error line\n{out}"
        for needle in cases[name][1] + [expected_problem.get(name, "")]:
            assert needle in out, f"{name}: {needle!r} not in\n{out}"
