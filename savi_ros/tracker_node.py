"""The `savi_tracker` ROS 2 node: images + detections in, tracks / masks / label info out.

The public contract is docs/INTERFACE.md; this module is only the ROS adapter around
`savi_ros.pipeline.Pipeline` (stamp pairing, latest-first frames, decoding, the `Tracker` step), which
the offline bag tracker drives too.

Threads: subscription callbacks only file messages into the pipeline; one worker thread takes the
latest frame, processes it and publishes, so a slow model never blocks a callback and never builds a
backlog. Images skip the executor: a thread of their own waits on the image subscription alone, takes
each image and files it (`savi_ros.taker`), so an image reaches the worker without passing through the
executor's Python loop over all the node's entities, whose wait-set rebuilds held the GIL on the image's
way in and, after the callback, against the worker taking it. The executor is single-threaded on
purpose: a lifecycle transition destroys subscriptions and publishers that carry QoS event handlers, and
rclpy's multi-threaded executor can be building its wait set from those handlers at that moment
(`InvalidHandle`, seen in CI); in one thread a transition never overlaps a wait-set build. The image
thread's wait set holds only the image subscription and its QoS events, and a transition stops that
thread before it destroys the subscription.

Lifecycle: configure loads the checkpoint and builds the pipeline and the outputs; activate
subscribes and starts the worker; deactivate stops both (a pause: live tracks are kept, `reset`
clears them); cleanup releases the model. With `autostart` (default) `main` runs configure +
activate itself and exits 1 if that fails. Outputs are plain publishers: only the worker publishes
and it runs only while active.

Run: ``python -m savi_ros.tracker_node --ros-args -r __ns:=/savi -p checkpoint:=default``
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m`: a Ctrl-C during the imports below exits 0, quietly
    from savi_ros.launcher import quiet_sigint
    from savi_ros.openmp import before_torch

    quiet_sigint()
    before_torch()

import dataclasses
import sys
import threading
import time
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
from geometry_msgs.msg import Point, PointStamped
from rclpy.subscription import MessageInfo
from rclpy.qos import qos_policy_name_from_kind
from sensor_msgs.msg import CompressedImage, Image
from savi_ros_interfaces.srv import AddObjects, RemoveTrack
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray, LabelInfo

from savi_core.tracking.messages import stamp_ns
from savi_core.numerics import flush_denormals
from savi_ros.interrupt import RCLError, init, interrupt_via_rclpy_only, shutdown, spin_until_shutdown
from savi_ros import conversions, outputs, params
from savi_ros.dds import use_large_message_profile
from savi_ros.diagnostics import tracking_status
from savi_ros.memory import Trimmer, mmap_large_buffers
from savi_ros.model_store import ModelLoadError, load_tracker
from savi_ros.openmp import in_own_thread
from savi_ros.pipeline import STEP_FAILED, Frame, Pipeline, Settings
from savi_ros.qos import keep_last
from savi_ros.taker import OwnThreadGroup, Taker
from savi_ros.transport import ImageAges, PublisherGaps

NODE_NAME = "savi_tracker"
DIAGNOSTICS_PERIOD_S = 1.0
STATS_LOG_PERIOD_S = 10.0
WARN_THROTTLE_S = 5.0

IMAGE_QOS = {"sensor_data": keep_last(1, reliable=False), "reliable": keep_last(1)}
DETECTIONS_QOS = keep_last(10)
OUTPUT_QOS = keep_last(5)
LATCHED_QOS = keep_last(1, latched=True)
DIAGNOSTICS_QOS = keep_last(10)


class TrackerNode(LifecycleNode):
    """See the module docstring; construction declares and validates parameters only."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = params.declare(self)
        params.validate(self.params)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self.pipeline: Optional[Pipeline] = None  # exists from configure to cleanup
        self._device_name = ""
        self._checkpoint_path = ""
        self._worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._warned_at: dict[str, float] = {}
        self._published_labels: Optional[dict[int, str]] = None
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._image_group = OwnThreadGroup()  # the image subscription: `_images` takes it, not the executor
        self._images: Optional[Taker] = None
        self._subs: list = []
        self._pubs: dict[str, object] = {}
        self._savi_services: list = []
        self._last_header = None  # of the last published frame: label_info published between frames uses it
        self._diag_timer = None
        self._last_stats_log = time.monotonic()
        self._memory = Trimmer()
        self._ages = ImageAges()  # added to by the image thread only; the diagnostics timer copies its values
        self._gaps = PublisherGaps()  # the image thread's (cleared at activation, before that thread starts)
        self._fast_dds = rclpy.get_rmw_implementation_identifier().startswith("rmw_fastrtps")

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            tracker, path, device = in_own_thread(load_tracker, self.params)  # savi_ros.openmp says why
        except ModelLoadError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        self.pipeline = Pipeline(
            tracker, Settings.from_params(self.params), self._warn, lambda: self.get_clock().now().nanoseconds
        )
        self._device_name, self._checkpoint_path = str(device), str(path)
        if tracker.max_tracks < self.params.max_tracks:
            self.get_logger().info(
                f"max_tracks {self.params.max_tracks} capped to the model's {tracker.max_tracks} object slots"
            )
        if tracker.mask_source != tracker.config.mask_source:
            self.get_logger().warning(
                f"mask_source {tracker.config.mask_source}: this model has no decoder, its masks are its attention"
            )
        self._create_outputs()
        return self._reached(
            f"configured: checkpoint {path} on {device}, "
            f"mask_source {tracker.config.mask_source}, precision {tracker.config.precision}"
        )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.restart()
        self._published_labels = None
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="savi_tracker_worker", daemon=True)
        self._worker.start()
        self._create_subscriptions()
        return self._reached(
            f"active: listening on '{self._subs[0].topic_name}' "
            f"(image_qos {self.params.image_qos}) and '{self._subs[1].topic_name}'"
        )

    def _reached(self, where: str) -> TransitionCallbackReturn:
        """A transition that succeeded: say in the log what the node holds now."""
        self.get_logger().info(where)
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

    on_error = on_shutdown  # after an error the node holds nothing, as after a shutdown

    def _create_outputs(self) -> None:
        def on_incompatible(topic: str):
            def warn(event) -> None:
                self.get_logger().warning(
                    f"a subscriber of '{topic}' requests a QoS this node does not offer "
                    f"(policy {qos_policy_name_from_kind(event.last_policy_kind)}): it receives "
                    "nothing. Outputs are reliable+volatile; only label_info is transient local."
                )

            return PublisherEventCallbacks(incompatible_qos=warn)

        for topic, msg_type in (("tracks", Detection2DArray), ("masks", Image), ("debug_image", Image)):
            self._pubs[topic] = self.create_publisher(
                msg_type, topic, OUTPUT_QOS, event_callbacks=on_incompatible(topic)
            )
        self._pubs["label_info"] = self.create_publisher(LabelInfo, "label_info", LATCHED_QOS)
        self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._savi_services = [
            self.create_service(Trigger, "reset", self._guarded("reset", self._on_reset)),
            self.create_service(RemoveTrack, "remove_track", self._guarded("remove_track", self._on_remove_track)),
            self.create_service(AddObjects, "add_objects", self._guarded("add_objects", self._on_add_objects)),
        ]
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

    def _create_subscriptions(self) -> None:
        def on_incompatible(topic: str, offered_hint: str):
            def warn(event) -> None:
                self.get_logger().warning(
                    f"a publisher on '{topic}' offers a QoS incompatible with this node's "
                    f"subscription (policy {qos_policy_name_from_kind(event.last_policy_kind)}): "
                    f"none of its messages will arrive. {offered_hint}"
                )

            return SubscriptionEventCallbacks(incompatible_qos=warn)

        self._gaps.clear()  # images published while no subscription existed were not missed
        image_hint = (
            f"This node subscribes with image_qos '{self.params.image_qos}'; "
            "set image_qos:=sensor_data to accept best-effort publishers."
        )
        if self.params.image_transport == "compressed":
            # image_transport's naming: the resolved (remapped) image topic plus "/compressed".
            topic = f"{self.resolve_topic_name('image')}/compressed"
            image_sub = self.create_subscription(
                CompressedImage,
                topic,
                self._on_image,
                IMAGE_QOS[self.params.image_qos],
                callback_group=self._image_group,
                event_callbacks=on_incompatible(topic, image_hint),
            )
        else:
            image_sub = self.create_subscription(
                Image,
                "image",
                self._on_image,
                IMAGE_QOS[self.params.image_qos],
                callback_group=self._image_group,
                event_callbacks=on_incompatible("image", image_hint),
            )
        self._subs = [
            image_sub,
            self.create_subscription(
                Detection2DArray,
                "detections",
                self._on_detections,
                DETECTIONS_QOS,
                callback_group=self._io_group,
                event_callbacks=on_incompatible("detections", "Detections are subscribed reliable, keep last 10."),
            ),
        ]
        prompt_hint = "Prompts are subscribed reliable, keep last 10."
        self._subs += [
            self.create_subscription(
                msg_type,
                topic,
                self._on_prompt,
                DETECTIONS_QOS,
                callback_group=self._io_group,
                event_callbacks=on_incompatible(topic, prompt_hint),
            )
            for msg_type, topic in ((PointStamped, "points"), (Point, "points_click"), (Image, "prompt_masks"))
        ]
        self._images = Taker(image_sub, self.context, self._on_image, self._image_failed, "savi_tracker_images")

    def _stop_processing(self) -> None:
        if self._images is not None:
            if not self._images.stop():
                self.get_logger().warning("the image thread did not stop within 10 s (filing an image is hanging)")
            self._images = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._stop.set()
        if self.pipeline is not None:
            with self.pipeline.cond:
                self.pipeline.cond.notify_all()
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
        for service in self._savi_services:
            self.destroy_service(service)
        self._savi_services = []
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        had_model, self.pipeline = self.pipeline is not None, None
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
            self.get_logger().info(
                f"{', '.join(later)} take effect after a reconfigure (deactivate, cleanup, configure, activate)"
            )
        pipeline = self.pipeline
        if pipeline is not None:
            live = {
                n: getattr(self.params, n)
                for n in names & params.LIVE
                if n in {f.name for f in dataclasses.fields(type(pipeline.tracker.config))}
            }
            pipeline.update(Settings.from_params(self.params), **live)

    # ------------------------------------------------------------------ callbacks (cheap only)

    def _on_image(self, msg: Image | CompressedImage, info: MessageInfo) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            slow = self._ages.add(
                stamp_ns(msg.header.stamp),
                info["received_timestamp"],
                info["source_timestamp"],
                len(msg.data),
                self.get_clock().ros_time_is_active,
            )
            if slow and self._fast_dds:
                self.get_logger().warning(slow)
            self._memory.saw(getattr(msg, "width", 0) * getattr(msg, "height", 0))  # compressed: once decoded
            gid = (info.get("publisher_gid") or {}).get("data", b"")
            missed = self._gaps.add(bytes(gid), info.get("publication_sequence_number"))
            pipeline.add_image(msg, time.monotonic(), missed)

    def _image_failed(self, exc: Exception) -> None:
        """An image the image thread could not take or file: logged, and the next one is taken."""
        self.get_logger().error(
            f"taking an image failed: {type(exc).__name__}: {exc}", throttle_duration_sec=WARN_THROTTLE_S
        )

    def _on_detections(self, msg: Detection2DArray) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.add_detections(msg, time.monotonic())

    def _on_prompt(self, msg: PointStamped | Point | Image) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.add_prompt_msg(msg, time.monotonic())

    def _guarded(self, name: str, callback):
        """A service callback that answers ``success: false`` and logs the exception at ERROR instead of
        raising it: an exception out of a callback stops the executor, and with it the node."""

        def call(request, response):
            try:
                return callback(request, response)
            except Exception as exc:
                response.success, response.message = False, f"failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(f"{name} {response.message}")
                return response

        return call

    def _configured(self, response):
        """The pipeline a service works on; None (and ``response`` says why) while unconfigured."""
        pipeline = self.pipeline
        if pipeline is None:
            response.success, response.message = False, "no model loaded (node not configured)"
        return pipeline

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        pipeline = self._configured(response)
        if pipeline is None:
            return response
        ended = pipeline.reset()
        self.get_logger().info(f"reset: ended tracks {ended}")
        response.success, response.message = True, f"ended {len(ended)} track(s)"
        return response

    def _on_remove_track(self, request: RemoveTrack.Request, response: RemoveTrack.Response) -> RemoveTrack.Response:
        pipeline = self._configured(response)
        if pipeline is None:
            return response
        response.success, response.message = in_own_thread(pipeline.remove_track, int(request.track_id))
        if response.success:
            labelled = pipeline.labelled_tracks()
            header = self._last_header or Header(stamp=self.get_clock().now().to_msg())
            self._pubs["label_info"].publish(
                conversions.label_info_msg(labelled, header, pipeline.tracker.config.mask_threshold)
            )
            self._published_labels = labelled
            self.get_logger().info(f"remove_track: {response.message}")
        return response

    def _on_add_objects(self, request: AddObjects.Request, response: AddObjects.Response) -> AddObjects.Response:
        pipeline = self._configured(response)
        if pipeline is None:
            return response
        boxes = [
            (
                b.center.position.x - b.size_x / 2,
                b.center.position.y - b.size_y / 2,
                b.center.position.x + b.size_x / 2,
                b.center.position.y + b.size_y / 2,
            )
            for b in request.boxes
        ]
        points = [(p.x, p.y) for p in request.points]
        try:
            ids, response.message = pipeline.add_objects(boxes, points, list(request.class_ids), list(request.ids))
        except ValueError as exc:
            response.success, response.message = False, f"refused: {exc}"
            self.get_logger().warning(f"add_objects {response.message}", throttle_duration_sec=WARN_THROTTLE_S)
            return response
        response.success, response.track_ids = True, ids
        self.get_logger().info(f"add_objects: {response.message}")
        return response

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        pipeline = self.pipeline
        while not self._stop.is_set():
            try:
                pair = pipeline.next_pair(time.monotonic, wait_s=0.5)
                frame = None if pair is None else pipeline.process(pair, time.monotonic)
                if frame is not None:
                    self._publish(frame)
                    pipeline.settle()  # the freed slots' restarts, after the outputs are out
                    self._memory.processed(frame.rgb.shape[0] * frame.rgb.shape[1])
            except Exception as exc:  # keep serving; at shutdown the context is gone: just stop
                if not self.context.ok():
                    return
                self.get_logger().error(
                    f"processing a frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=WARN_THROTTLE_S
                )

    def _warn(self, kind: str, text: str) -> None:
        """A warning throttled per kind (rclpy's own throttle is per call site, shared by every kind here);
        a failed tracker step is an error. One call site per severity: rclpy refuses a severity change at
        a call site (ValueError), which would replace the message."""
        now = time.monotonic()
        if now - self._warned_at.get(kind, -WARN_THROTTLE_S) < WARN_THROTTLE_S:
            return
        self._warned_at[kind] = now
        if kind.startswith(STEP_FAILED):
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def _publish(self, frame: Frame) -> None:
        header, result, pubs = frame.header, frame.result, self._pubs
        self._last_header = header
        pubs["tracks"].publish(conversions.tracks_to_msg(result.tracks, header))
        pubs["masks"].publish(conversions.label_map_to_image(result.label_map, header))
        if frame.labelled_tracks != self._published_labels:
            pubs["label_info"].publish(conversions.label_info_msg(frame.labelled_tracks, header, frame.mask_threshold))
            self._published_labels = frame.labelled_tracks
        if self.params.publish_debug_image or pubs["debug_image"].get_subscription_count() > 0:
            overlay = outputs.debug_overlay(frame.rgb, result.label_map, result.tracks)
            pubs["debug_image"].publish(conversions.numpy_to_image(overlay, "rgb8", header))

    # ------------------------------------------------------------------ reporting

    def _publish_diagnostics(self) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        now = time.monotonic()
        lag = pipeline.detector_lag
        with pipeline.cond:
            live = pipeline.live_count
            status = tracking_status(
                pipeline.stats,
                now,
                f"{self.get_fully_qualified_name()}: tracking",
                self._device_name,
                self._checkpoint_path,
                live,
                lag,
                self._ages.values(),
                pipeline.dormant_count,
            )
            counters = pipeline.stats.counters()
            recent = pipeline.stats.window(now)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        pub = self._pubs.get("diagnostics")
        if pub is not None:
            pub.publish(array)
        if recent and now - self._last_stats_log >= STATS_LOG_PERIOD_S:
            self._last_stats_log = now
            values = {kv.key: kv.value for kv in status.values}
            self.get_logger().info(
                f"{values['fps']} fps, step {values['step_ms_mean']} ms (max {values['step_ms_max']}), "
                f"{live} live track(s), dropped frames {counters['dropped_frames']}, "
                f"dropped detections {counters['dropped_detections']}"
            )


def main(args: Optional[list[str]] = None) -> int:
    """Entry point of `savi_tracker`; returns the process exit code (1 = could not start)."""
    interrupt_via_rclpy_only()
    flush_denormals()
    mmap_large_buffers()
    profile = use_large_message_profile()
    if not init(args):
        return 0
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
        if profile is not None:
            node.get_logger().info(
                f"Fast DDS transports for camera-sized messages from {profile} "
                "(set FASTDDS_DEFAULT_PROFILES_FILE to use your own)"
            )
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
