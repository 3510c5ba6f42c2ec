"""The `savi_tracker` ROS 2 node: images + detections in, tracks / masks / label info out.

The public contract is docs/INTERFACE.md; this module is only the adapter around
`savi_core.tracker.Tracker`.

Threads: subscription callbacks (one mutually exclusive group) only file messages into a
`StampMatcher` and wake the worker; one worker thread pairs images with detections, keeps the
latest frame (`LatestFirst`), converts it and runs the model, so a slow model never blocks a
callback and never builds a backlog. The executor is single-threaded on purpose: a lifecycle
transition destroys subscriptions and publishers that carry QoS event handlers, and rclpy's
multi-threaded executor can be building its wait set from those handlers at that moment
(`InvalidHandle`, seen in CI); in one thread a transition never overlaps a wait-set build.

Lifecycle: configure loads the checkpoint and builds the Tracker and the outputs; activate
subscribes and starts the worker; deactivate stops both (a pause: live tracks are kept, `reset`
clears them); cleanup releases the model. With
`autostart` (default) `main` runs configure + activate itself and exits 1 if that fails.
Outputs are plain publishers: only the worker publishes and it runs only while active.

One module on purpose (about 450 lines): the lifecycle callbacks, the worker and the parameter hooks
share the node's locks and state, and reading them together is how that state machine is checked.

Run: ``python -m savi_ros.tracker_node --ros-args -r __ns:=/savi -p checkpoint:=default``
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m`: a Ctrl-C during the imports below exits 0, quietly
    from savi_ros.launcher import quiet_sigint

    quiet_sigint()

import dataclasses
import sys
import threading
import time
from collections import deque
from typing import Optional

import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_policy_name_from_kind)
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray, LabelInfo

from savi_core.checkpoint import CheckpointError, load_checkpoint
from savi_core.device import resolve_device
from savi_core.numerics import flush_denormals
from savi_core.tracker import Tracker
from savi_ros.interrupt import RCLError, interrupt_via_rclpy_only, shutdown, spin_until_shutdown
from savi_ros import conversions, params
from savi_ros.diagnostics import Stats, tracking_status
from savi_ros.model_store import resolve_checkpoint
from savi_ros.sync import LatestFirst, Pair, StampMatcher

NODE_NAME = "savi_tracker"
IMAGE_HOLD_S = 0.25        # how long an image waits for detections with its stamp
DETECTION_HOLD_S = 1.0     # how long detections wait for their image
MAX_HELD_IMAGES = 8
MAX_HELD_DETECTIONS = 16
DIAGNOSTICS_PERIOD_S = 1.0
STATS_LOG_PERIOD_S = 10.0
WARN_THROTTLE_S = 5.0
MAX_LATE_DETECTIONS = 16  # detection messages waiting for the next processed frame
MAX_WARNED_ENCODINGS = 32  # beyond that, unsupported encodings are counted but not warned about by name

IMAGE_QOS = {
    "sensor_data": QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT,
                              history=HistoryPolicy.KEEP_LAST, depth=1),
    "reliable": QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                           history=HistoryPolicy.KEEP_LAST, depth=1),
}
DETECTIONS_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                            history=HistoryPolicy.KEEP_LAST, depth=10)
OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST, depth=5)
LATCHED_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                         depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE,
                             history=HistoryPolicy.KEEP_LAST, depth=10)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class TrackerNode(LifecycleNode):
    """See the module docstring; construction declares and validates parameters only."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = params.declare(self)
        params.validate(self.params)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self._cond = threading.Condition()         # guards matcher, queue, stats
        self._tracker_lock = threading.Lock()      # guards the Tracker (worker step vs reset/cleanup)
        self._matcher: StampMatcher[Image, Detection2DArray] = self._new_matcher()
        self._queue: LatestFirst[Image, Detection2DArray] = LatestFirst()
        self._stats = Stats()
        self._tracker: Optional[Tracker] = None
        self._device_name = ""
        self._checkpoint_path = ""
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._warned_encodings: set[str] = set()  # bounded: at most MAX_WARNED_ENCODINGS names
        self._late: deque[Detection2DArray] = deque()   # detections waiting for the next processed frame
        self._newest_stamp_ns: Optional[int] = None
        self._warned_at: dict[str, float] = {}
        self._published_labels: Optional[dict[int, str]] = None
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._subs: list = []
        self._pubs: dict[str, object] = {}
        self._reset_srv = None
        self._diag_timer = None
        self._last_stats_log = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            tracker_cfg = params.validate(self.params)
            path = resolve_checkpoint(self.params.checkpoint)
            device = resolve_device(self.params.device)
        except (params.ParamError, ValueError) as exc:
            self.get_logger().error(f"cannot configure: {exc}")
            return TransitionCallbackReturn.FAILURE
        try:
            model, _meta = load_checkpoint(path, device=device)
        except CheckpointError as exc:
            self.get_logger().error(f"cannot load checkpoint '{self.params.checkpoint}': {exc}")
            return TransitionCallbackReturn.FAILURE
        except (OSError, RuntimeError, ValueError) as exc:  # e.g. unreadable file, device errors
            self.get_logger().error(f"cannot load checkpoint '{self.params.checkpoint}' ({path}): "
                                    f"{type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        try:
            tracker = Tracker(model, tracker_cfg, device=device)
        except ValueError as exc:
            self.get_logger().error(f"cannot configure: {exc} (checkpoint {path})")
            return TransitionCallbackReturn.FAILURE
        with self._tracker_lock:
            self._tracker = tracker
        self._device_name, self._checkpoint_path = str(device), str(path)
        if tracker.max_tracks < self.params.max_tracks:
            self.get_logger().info(f"max_tracks {self.params.max_tracks} capped to the model's "
                                   f"{tracker.max_tracks} object slots")
        self._create_outputs()
        self.get_logger().info(f"configured: checkpoint {path} on {device}, "
                               f"mask_source {tracker_cfg.mask_source}, precision {tracker_cfg.precision}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._cond:
            self._matcher = self._new_matcher()
            self._queue.clear()
            self._newest_stamp_ns = None
        self._published_labels = None
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="savi_tracker_worker", daemon=True)
        self._worker.start()
        self._create_subscriptions()
        self.get_logger().info(f"active: listening on '{self._subs[0].topic_name}' "
                               f"(image_qos {self.params.image_qos}) and '{self._subs[1].topic_name}'")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _new_matcher(self) -> StampMatcher:
        matcher = StampMatcher(self.params.sync_tolerance, IMAGE_HOLD_S, DETECTION_HOLD_S,
                               MAX_HELD_IMAGES, MAX_HELD_DETECTIONS)
        matcher.patient = True  # no tracks yet
        return matcher

    def _create_outputs(self) -> None:
        def on_incompatible(topic: str):
            def warn(event) -> None:
                self.get_logger().warning(
                    f"a subscriber of '{topic}' requests a QoS this node does not offer "
                    f"(policy {qos_policy_name_from_kind(event.last_policy_kind)}): it receives "
                    "nothing. Outputs are reliable+volatile; only label_info is transient local.")
            return PublisherEventCallbacks(incompatible_qos=warn)

        for topic, msg_type in (("tracks", Detection2DArray), ("masks", Image), ("debug_image", Image)):
            self._pubs[topic] = self.create_publisher(msg_type, topic, OUTPUT_QOS,
                                                      event_callbacks=on_incompatible(topic))
        self._pubs["label_info"] = self.create_publisher(LabelInfo, "label_info", LATCHED_QOS)
        self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._reset_srv = self.create_service(Trigger, "reset", self._on_reset)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

    def _create_subscriptions(self) -> None:
        def on_incompatible(topic: str, offered_hint: str):
            def warn(event) -> None:
                self.get_logger().warning(
                    f"a publisher on '{topic}' offers a QoS incompatible with this node's "
                    f"subscription (policy {qos_policy_name_from_kind(event.last_policy_kind)}): "
                    f"none of its messages will arrive. {offered_hint}")
            return SubscriptionEventCallbacks(incompatible_qos=warn)

        image_hint = (f"This node subscribes with image_qos '{self.params.image_qos}'; "
                      "set image_qos:=sensor_data to accept best-effort publishers.")
        if self.params.image_transport == "compressed":
            # image_transport's naming: the resolved (remapped) image topic plus "/compressed".
            topic = f"{self.resolve_topic_name('image')}/compressed"
            image_sub = self.create_subscription(CompressedImage, topic, self._on_image, IMAGE_QOS[self.params.image_qos],
                                                 callback_group=self._io_group,
                                                 event_callbacks=on_incompatible(topic, image_hint))
        else:
            image_sub = self.create_subscription(Image, "image", self._on_image, IMAGE_QOS[self.params.image_qos],
                                                 callback_group=self._io_group,
                                                 event_callbacks=on_incompatible("image", image_hint))
        self._subs = [
            image_sub,
            self.create_subscription(Detection2DArray, "detections", self._on_detections, DETECTIONS_QOS,
                                     callback_group=self._io_group,
                                     event_callbacks=on_incompatible(
                                         "detections", "Detections are subscribed reliable, keep last 10.")),
        ]

    def _stop_processing(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            if self._worker.is_alive():
                self.get_logger().warning("worker did not stop within 10 s (a model step is hanging)")
            self._worker = None

    def _release(self) -> None:
        """Drop the model and the outputs (cleanup/shutdown)."""
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._reset_srv is not None:
            self.destroy_service(self._reset_srv)
            self._reset_srv = None
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        with self._tracker_lock:
            had_model = self._tracker is not None
            self._tracker = None
        if had_model and self._device_name.startswith("cuda"):
            torch.cuda.empty_cache()  # hand the memory back to other processes, not just torch's cache

    # ------------------------------------------------------------------ parameters

    def _validate_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        try:
            params.validate(params.with_changes(self.params, changes))
        except params.ParamError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, changes: list[Parameter]) -> None:
        self.params = params.read(self)
        names = {p.name for p in changes} & {f.name for f in dataclasses.fields(params.NodeParams)}
        later = sorted(names - params.LIVE)
        if later:
            self.get_logger().info(f"{', '.join(later)} take effect after a reconfigure (deactivate, cleanup, configure, activate)")
        with self._tracker_lock:
            if self._tracker is not None:
                live = {n: getattr(self.params, n) for n in names & params.LIVE
                        if n in {f.name for f in dataclasses.fields(type(self._tracker.config))}}
                self._tracker.config = dataclasses.replace(self._tracker.config, **live)
        with self._cond:
            self._matcher.set_tolerance(self.params.sync_tolerance)

    # ------------------------------------------------------------------ callbacks (cheap only)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        # A compressed image's encoding and size are known once decoded, in the worker.
        if isinstance(msg, Image):
            if msg.encoding not in conversions.INPUT_ENCODINGS:
                with self._cond:
                    self._stats.unsupported_images += 1
                    first = (msg.encoding not in self._warned_encodings
                             and len(self._warned_encodings) < MAX_WARNED_ENCODINGS)
                    if first:
                        self._warned_encodings.add(msg.encoding)
                if first:
                    self.get_logger().warning(
                        f"dropping images with unsupported encoding '{msg.encoding}' (accepted: "
                        f"{', '.join(sorted(conversions.INPUT_ENCODINGS))}); warned once per encoding")
                return
            if self._too_large(msg.width, msg.height):
                return
        with self._cond:
            self._matcher.add_image(stamp_ns(msg.header.stamp), msg, time.monotonic())
            self._cond.notify()

    def _too_large(self, width: int, height: int) -> bool:
        """More pixels than max_image_pixels: counted and warned about (the caller drops the image)."""
        if width * height <= self.params.max_image_pixels:
            return False
        with self._cond:
            self._stats.oversized_images += 1
        self._warn("oversized", f"dropping a {width}x{height} image: more than max_image_pixels "
                                f"({self.params.max_image_pixels})")
        return True

    def _on_detections(self, msg: Detection2DArray) -> None:
        with self._cond:
            self._matcher.add_detections(stamp_ns(msg.header.stamp), msg, time.monotonic())
            self._cond.notify()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._tracker_lock:
            if self._tracker is None:
                response.success, response.message = False, "no model loaded (node not configured)"
                return response
            ended = self._tracker.reset()
        with self._cond:
            self._matcher.clear()
            self._matcher.patient = True
            self._queue.clear()
            self._late.clear()
            self._newest_stamp_ns = None
        self.get_logger().info(f"reset: ended tracks {ended}")
        response.success, response.message = True, f"ended {len(ended)} track(s)"
        return response

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while not self._stop.is_set():
            warnings: list[tuple[str, str]] = []
            jumped: list[Pair[Image, Detection2DArray]] = []
            with self._cond:
                released = self._matcher.pop_ready(time.monotonic())
                self._keep_late([late.detections for late in released.late_detections])
                for index, pair in enumerate(released.pairs):
                    verdict = self._admit(pair)
                    if verdict == "jump":
                        jumped = released.pairs[index:]
                        break
                    if verdict:
                        warnings.append(verdict)
                self._stats.dropped_frames = self._queue.dropped + self._stats.future_frames
                pair = None if jumped else self._queue.take()
                if pair is not None and self._late:
                    pair.carried.extend(self._late)
                    self._late.clear()
                if pair is None and not jumped and not warnings:
                    deadline = self._matcher.next_deadline()
                    timeout = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
                    self._cond.wait(timeout=timeout)
            for kind, text in warnings:
                self._warn(kind, text)
            if jumped:
                self._start_over(jumped)
                continue
            if pair is None:
                continue
            try:
                self._process(pair)
            except Exception as exc:  # keep serving; at shutdown the context is gone: just stop
                if not self.context.ok():
                    return
                self.get_logger().error(f"processing the image at stamp {pair.stamp_ns * 1e-9:.3f} s failed: "
                                        f"{type(exc).__name__}: {exc}", throttle_duration_sec=WARN_THROTTLE_S)

    def _warn(self, kind: str, text: str) -> None:
        """A warning throttled per kind (rclpy's own throttle is per call site, shared by every kind here)."""
        now = time.monotonic()
        if now - self._warned_at.get(kind, -WARN_THROTTLE_S) >= WARN_THROTTLE_S:
            self._warned_at[kind] = now
            self.get_logger().warning(text)

    def _keep_late(self, messages: list[Detection2DArray]) -> None:
        """Detections that found no image act on the next processed frame (bounded; under `_cond`)."""
        for message in messages:
            if len(self._late) == MAX_LATE_DETECTIONS:
                self._late.popleft()
                self._stats.dropped_detections += 1
            self._late.append(message)
            self._stats.late_detections += 1

    def _admit(self, pair: Pair[Image, Detection2DArray]) -> str | tuple[str, str]:
        """Queue a released pair (under `_cond`): "" when queued, "jump" for a jump back in time that must
        end the tracks first, else (kind, warning) for a dropped frame (whose detections are kept)."""
        jump_ns = int(self.params.time_jump_reset * 1e9)
        last = self._queue.last_taken_ns
        if last is not None and pair.stamp_ns < last - jump_ns:
            return "jump"
        newest = self._newest_stamp_ns
        self._newest_stamp_ns = pair.stamp_ns if newest is None else max(newest, pair.stamp_ns)
        if not self._matcher.patient and newest is not None and pair.stamp_ns > newest + jump_ns:
            self._stats.future_frames += 1
            self._keep_late(pair.all_detections())
            return "future", (f"dropping image at stamp {pair.stamp_ns * 1e-9:.3f} s: "
                              f"{(pair.stamp_ns - newest) * 1e-9:.1f} s ahead of the newest image so far (more than "
                              "time_jump_reset); its detections act on the next frame")
        if not self._queue.put(pair):
            self._keep_late(pair.all_detections())
            return "stale", (f"dropping image at stamp {pair.stamp_ns * 1e-9:.3f} s: older than the last processed "
                             f"one ({last * 1e-9:.3f} s)")
        return ""

    def _start_over(self, pairs: list[Pair[Image, Detection2DArray]]) -> None:
        """A jump back in time (a restarted recording, a sim clock reset): end every track and start again
        from ``pairs`` (the first image of the new timeline, and those released with it)."""
        with self._tracker_lock:
            ended = self._tracker.reset() if self._tracker is not None else []
        with self._cond:
            last = self._queue.last_taken_ns or pairs[0].stamp_ns
            self._queue.clear()
            self._stats.dropped_detections += len(self._late)  # they belong to the old timeline
            self._late.clear()
            self._newest_stamp_ns = None
            self._matcher.patient = True
            self._stats.time_jumps += 1
            for pair in pairs:
                self._admit(pair)
        self.get_logger().warning(f"time jumped back by {(last - pairs[0].stamp_ns) * 1e-9:.1f} s (more than "
                                  f"time_jump_reset {self.params.time_jump_reset:g} s): ended tracks {ended}, "
                                  "starting over as after 'reset'")

    def _process(self, pair: Pair[Image, Detection2DArray]) -> None:
        msg = pair.image
        try:
            if isinstance(msg, CompressedImage):
                rgb = conversions.compressed_to_rgb8(msg)
            else:
                rgb = conversions.image_to_rgb8(msg)
        except ValueError as exc:
            with self._cond:
                self._stats.bad_images += 1
                self._keep_late(pair.all_detections())  # they still act, on the next good image
            self.get_logger().warning(f"dropping image: {exc}", throttle_duration_sec=WARN_THROTTLE_S)
            return
        if isinstance(msg, CompressedImage) and self._too_large(rgb.shape[1], rgb.shape[0]):
            with self._cond:
                self._keep_late(pair.all_detections())
            return
        detections = None
        messages = pair.all_detections()
        if messages:
            detections, rejected = [], []
            for message in messages:
                accepted, refused = conversions.detections_from_msg(message)
                detections += accepted
                rejected += refused
            if rejected:
                with self._cond:
                    self._stats.bad_detections += len(rejected)
                self.get_logger().warning(f"rejected {len(rejected)} detection(s): {'; '.join(rejected[:3])}",
                                          throttle_duration_sec=WARN_THROTTLE_S)
        with self._tracker_lock:
            tracker = self._tracker
            if tracker is None:
                return
            try:
                result = tracker.step(rgb, detections)
            except Exception as exc:  # keep serving: one bad step must not kill the worker
                with self._cond:
                    self._stats.step_failed(time.monotonic())
                self.get_logger().error(f"tracker step failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=WARN_THROTTLE_S)
                return
            live = tracker.live_tracks
            mask_threshold = tracker.config.mask_threshold
        with self._cond:
            self._matcher.patient = not live  # nothing tracked: wait the full hold for bootstrapping detections
        header = msg.header
        pubs = self._pubs
        pubs["tracks"].publish(conversions.tracks_to_msg(result.tracks, header))
        pubs["masks"].publish(conversions.label_map_to_image(result.label_map, header))
        if live != self._published_labels:
            pubs["label_info"].publish(conversions.label_info_msg(live, header, mask_threshold))
            self._published_labels = live
        if self.params.publish_debug_image or pubs["debug_image"].get_subscription_count() > 0:
            overlay = conversions.debug_overlay(rgb, result.label_map, result.tracks)
            pubs["debug_image"].publish(conversions.numpy_to_image(overlay, "rgb8", header))
        if result.ignored_detections:
            self.get_logger().warning(f"{result.ignored_detections} new detection(s) ignored: no free slot "
                                   f"(max_tracks {tracker.max_tracks})", throttle_duration_sec=WARN_THROTTLE_S)
        with self._cond:
            self._stats.processed += 1
            self._stats.step_ms.append((time.monotonic(), result.timings.get("total", 0.0)))

    # ------------------------------------------------------------------ reporting

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._tracker_lock:
            live = len(self._tracker.live_tracks) if self._tracker is not None else 0
        with self._cond:
            status = tracking_status(self._stats, now, f"{self.get_fully_qualified_name()}: tracking", self._device_name,
                                     self._checkpoint_path, live, self._matcher.detector_lag)
            counters = self._stats.counters()
            recent = self._stats.window(now)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        pub = self._pubs.get("diagnostics")
        if pub is not None:
            pub.publish(array)
        if recent and now - self._last_stats_log >= STATS_LOG_PERIOD_S:
            self._last_stats_log = now
            values = {kv.key: kv.value for kv in status.values}
            self.get_logger().info(f"{values['fps']} fps, step {values['step_ms_mean']} ms (max {values['step_ms_max']}), "
                                   f"{live} live track(s), dropped frames {counters['dropped_frames']}, "
                                   f"dropped detections {counters['dropped_detections']}")


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of `savi_tracker`; returns the process exit code (1 = could not start)."""
    interrupt_via_rclpy_only()
    flush_denormals()
    rclpy.init(args=args)
    node: Optional[TrackerNode] = None
    try:
        try:
            node = TrackerNode()
        except params.ParamError as exc:
            rclpy.logging.get_logger(NODE_NAME).error(f"invalid parameter: {exc}")
            return 1
        if node.params.autostart:
            # A transition that fails because Ctrl-C shut the context down meanwhile is a clean stop.
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                return 1 if rclpy.ok() else 0
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                if not rclpy.ok():
                    return 0
                node.get_logger().error("activation failed")
                return 1
        else:
            node.get_logger().info("autostart is false: unconfigured, waiting for lifecycle transitions")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_until_shutdown(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C during configure/activate
    except RCLError:
        if rclpy.ok():
            raise
        # Ctrl-C shut the context down while configure/activate was using it: a clean stop.
    finally:
        if node is not None:
            node._stop_processing()
            node._release()
            node.destroy_node()
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
