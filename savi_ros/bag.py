"""Track a recorded bag offline, as the live node would have: ``python -m savi_ros.bag track IN OUT ...``.

Reads rosbag2 (sqlite3 and MCAP) and ROS 1 bags with `rosbags` (pure Python: no ROS install and no
rclpy needed), feeds the image and detection messages in recording order through the node's own
`savi_ros.pipeline.Pipeline` with the recording time as its clock (so stamp pairing, bootstrapping,
late detections and drops follow the node's rules), and writes a new bag (MCAP by default) with the
input topics copied and ``<namespace>/tracks``, ``masks`` and ``label_info`` added with the node's
types and headers, plus ``overlay.mp4`` and ``summary.json`` inside the output folder. The output is
written under a temporary name and renamed when complete: a failed run leaves nothing that looks done.

The worker of the live node processes a frame as soon as it is released; offline, frames are
processed at the moment they would be released (hold deadlines included), before the next recorded
message arrives, which is the live node with a model that keeps up.
"""

from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C during the imports below exits quietly
    from savi_ros.launcher import quiet_sigint

    quiet_sigint()

import argparse
import bisect
import dataclasses
import json
import math
import os
import shutil
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype
from tqdm import tqdm

from savi_core.tracking.messages import stamp_ns
from savi_ros import outputs, params
from savi_ros.model_store import ModelLoadError, load_tracker
from savi_ros.pipeline import Frame, Pipeline, Settings

IMAGE_TYPES = {
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/Image",
    "sensor_msgs/CompressedImage",
}
DETECTIONS_TYPES = {"vision_msgs/msg/Detection2DArray", "vision_msgs/Detection2DArray"}
OUTPUT_TYPES = {
    "tracks": "vision_msgs/msg/Detection2DArray",
    "masks": "sensor_msgs/msg/Image",
    "label_info": "vision_msgs/msg/LabelInfo",
}
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag cannot be tracked; the message names the file and, where it matters, the topic."""


# ---------------------------------------------------------------------------------------- types


def _vision_msgs_dirs() -> list[Path]:
    """Where the project's vision_msgs .msg files are: the repository's own copy, else a ROS install's."""
    dirs = [Path(__file__).resolve().parent.parent / "interfaces" / "vision_msgs" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "vision_msgs" / "msg")
    return dirs


def typestore():
    """ROS 2 Kilted's message types plus vision_msgs (not in rosbags' stores), from .msg files."""
    store = get_typestore(Stores.ROS2_KILTED)
    for folder in _vision_msgs_dirs():
        files = sorted(folder.glob("*.msg"))
        if files:
            types: dict = {}
            for path in files:
                types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
            store.register(types)
            return store
    raise BagError(
        "cannot find vision_msgs' .msg files (looked in " + ", ".join(str(d) for d in _vision_msgs_dirs()) + ")"
    )


class RosbagsTypes:
    """`savi_ros.outputs`' message factory over a rosbags typestore: classes that take some fields as
    keywords and default the rest, as rclpy's do (rosbags' dataclasses want every field)."""

    _SHORT = {
        "Image": "sensor_msgs/msg/Image",
        "Detection2D": "vision_msgs/msg/Detection2D",
        "Detection2DArray": "vision_msgs/msg/Detection2DArray",
        "ObjectHypothesisWithPose": "vision_msgs/msg/ObjectHypothesisWithPose",
        "LabelInfo": "vision_msgs/msg/LabelInfo",
        "VisionClass": "vision_msgs/msg/VisionClass",
    }
    _NUMPY = {
        "bool": np.bool_,
        "int8": np.int8,
        "uint8": np.uint8,
        "byte": np.uint8,
        "char": np.uint8,
        "int16": np.int16,
        "uint16": np.uint16,
        "int32": np.int32,
        "uint32": np.uint32,
        "int64": np.int64,
        "uint64": np.uint64,
        "float32": np.float32,
        "float64": np.float64,
    }

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name: str):
        if name not in self._SHORT:
            raise AttributeError(name)
        typename = self._SHORT[name]
        return lambda **fields: self.make(typename, **fields)

    @staticmethod
    def uint8_array(data: np.ndarray) -> np.ndarray:
        return np.array(data, dtype=np.uint8)

    def make(self, typename: str, **fields: Any) -> Any:
        _, defs = self.store.fielddefs[typename]
        values = {name: fields[name] if name in fields else self._default(spec) for name, spec in defs}
        return self.store.types[typename](**values)

    def _default(self, spec: tuple) -> Any:
        kind, detail = spec
        if kind == Nodetype.NAME:
            return self.make(detail)
        if kind == Nodetype.BASE:
            base = detail[0]
            return (
                ""
                if base in ("string", "wstring")
                else False
                if base == "bool"
                else 0.0
                if base.startswith("float")
                else 0
            )
        (inner_kind, inner), length = detail
        if inner_kind == Nodetype.BASE and inner[0] in self._NUMPY:
            return np.zeros(length if kind == Nodetype.ARRAY else 0, self._NUMPY[inner[0]])
        return [self._default((inner_kind, inner)) for _ in range(length if kind == Nodetype.ARRAY else 0)]


# ---------------------------------------------------------------------------------------- tracking


@dataclass
class Summary:
    """What a run did, written as summary.json and printed."""

    input: str
    output: str
    image_topic: str
    detections_topic: Optional[str]
    images: int = 0
    detection_messages: int = 0
    detections_stamped_like_an_image: int = 0  # the rest can never pair (another clock?)
    detections_with_their_image: int = 0  # paired with their image (not acting a frame late)
    processed: int = 0
    counters: dict = field(default_factory=dict)
    tracks_started: list = field(default_factory=list)
    frames_per_track: dict = field(default_factory=dict)
    step_ms: dict = field(default_factory=dict)
    wall_s: float = 0.0
    frames_per_s: float = 0.0


class _Outputs:
    """The output bag's added topics, the overlay video, and what the summary counts about outputs."""

    def __init__(self, writer: Writer, store, namespace: str, overlay_path: Optional[Path]) -> None:
        self.writer, self.store = writer, store
        self.types = RosbagsTypes(store)
        prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.connections = {
            name: writer.add_connection(f"{prefix}/{name}", msgtype, typestore=store)
            for name, msgtype in OUTPUT_TYPES.items()
        }
        self.overlay_path = overlay_path
        self.video: Optional[cv2.VideoWriter] = None
        self.video_size = (0, 0)
        self.fps = 10.0
        self.published_labels: Optional[dict[int, str]] = None
        self.frames_per_track: dict[int, int] = {}
        self.started: list[int] = []

    def write(self, frame: Frame, time_ns: int) -> None:
        """The node's `_publish`, into the bag."""
        result, header = frame.result, frame.header
        self._put("tracks", outputs.tracks_msg(self.types, result.tracks, header), time_ns)
        self._put("masks", outputs.label_map_msg(self.types, result.label_map, header), time_ns)
        if frame.labelled_tracks != self.published_labels:
            self._put(
                "label_info",
                outputs.label_info_msg(self.types, frame.labelled_tracks, header, frame.mask_threshold),
                time_ns,
            )
            self.published_labels = frame.labelled_tracks
        for track in result.tracks:
            if track.track_id not in self.frames_per_track:
                self.started.append(track.track_id)
            self.frames_per_track[track.track_id] = self.frames_per_track.get(track.track_id, 0) + 1
        if self.overlay_path is not None:
            overlay = outputs.debug_overlay(frame.rgb, result.label_map, result.tracks)
            if self.video is None:
                self.video_size = (overlay.shape[1], overlay.shape[0])
                self.video = cv2.VideoWriter(
                    str(self.overlay_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.video_size
                )
            if (overlay.shape[1], overlay.shape[0]) != self.video_size:  # the camera changed size mid-bag
                overlay = cv2.resize(overlay, self.video_size)
            self.video.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))

    def _put(self, name: str, msg: Any, time_ns: int) -> None:
        data = self.store.serialize_cdr(msg, OUTPUT_TYPES[name])
        self.writer.write(self.connections[name], time_ns, data)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def _open_reader(path: Path, store) -> AnyReader:
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    reader = AnyReader([path], default_typestore=store)
    try:
        reader.open()
    except Exception as exc:  # rosbags raises several types for "not a bag" / truncated metadata
        raise BagError(f"{path}: not a readable bag ({type(exc).__name__}: {exc})") from None
    return reader


def _connection(reader: AnyReader, path: Path, topic: str, allowed: set[str], role: str):
    """The connections of ``topic``; for images, ``<topic>/compressed`` too when only that was recorded
    (image_transport's name, so ``--image /camera/image`` finds either)."""
    found = [c for c in reader.connections if c.topic == topic]
    if not found and role == "images":
        found = [c for c in reader.connections if c.topic == f"{topic.rstrip('/')}/compressed"]
    if not found:
        topics = ", ".join(sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})) or "none"
        raise BagError(f"{path}: no topic {topic!r} for {role} in the bag; its topics: {topics}")
    if found[0].msgtype not in allowed:
        raise BagError(
            f"{path}: topic {topic!r} carries {found[0].msgtype}, not {role} "
            f"({', '.join(sorted(t for t in allowed if '/msg/' in t))})"
        )
    return found


def _frames_per_second(images: int, duration_ns: int) -> float:
    """The overlay video's rate: the camera's, from the bag's length (1..60 fps; 10 when unknown)."""
    if images < 2 or duration_ns <= 0:
        return 10.0
    return float(min(60.0, max(1.0, (images - 1) * 1e9 / duration_ns)))


def track_bag(
    in_path: Path,
    out_path: Path,
    image_topic: str,
    detections_topic: Optional[str],
    node_params: Any,
    storage: str = "mcap",
    namespace: str = "savi",
    overlay: bool = True,
    progress: bool = True,
) -> Summary:
    """Track ``in_path`` into a new bag ``out_path`` (see the module docstring). Raises BagError."""
    in_path, out_path = Path(in_path), Path(out_path)
    if out_path.exists():
        raise BagError(f"{out_path}: already exists; choose a new output path")
    store = typestore()
    tracker, _checkpoint, _device = load_tracker(node_params)
    warnings: dict[str, int] = {}

    def warn(kind: str, text: str) -> None:
        if kind not in warnings:
            print(f"warning: {text}", file=sys.stderr)
        warnings[kind] = warnings.get(kind, 0) + 1

    recorded_ns = [0]  # the node's clock for poison stamps: the recording time of the newest message read
    pipeline = Pipeline(tracker, Settings.from_params(node_params), warn, lambda: recorded_ns[0])
    summary = Summary(str(in_path), str(out_path), image_topic, detections_topic)
    reader = _open_reader(in_path, store)
    # Written as <parent>/.<name>.partial/<name>, so the bag's files carry their final names, then renamed.
    staging = out_path.with_name(f".{out_path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    partial = staging / out_path.name
    complete = False
    try:
        image_conns = _connection(reader, in_path, image_topic, IMAGE_TYPES, "images")
        det_conns = (
            _connection(reader, in_path, detections_topic, DETECTIONS_TYPES, "detections") if detections_topic else []
        )
        writer = Writer(partial, version=9, storage_plugin=STORAGES[storage])
        writer.open()
        try:
            out = _Outputs(writer, store, namespace, partial / "overlay.mp4" if overlay else None)
            out.fps = _frames_per_second(sum(c.msgcount for c in image_conns), reader.duration)
            copies = {
                c.id: writer.add_connection(c.topic, _ros2_name(c.msgtype), typestore=store)
                for c in [*image_conns, *det_conns]
            }
            start = time.perf_counter()
            total = sum(c.msgcount for c in [*image_conns, *det_conns])
            clock = [0.0]
            now = lambda: clock[0]  # noqa: E731 - the pipeline's clock: the recording time

            def drain(until_s: float) -> None:
                """Process every frame the node would have released up to ``until_s``."""
                while True:
                    deadline = pipeline.next_deadline()
                    clock[0] = until_s if deadline is None else max(clock[0], min(until_s, deadline))
                    pair = pipeline.next_pair(now)
                    if pair is not None:
                        if pair.detections is not None:
                            summary.detections_with_their_image += 1
                        frame = pipeline.process(pair, now)
                        if frame is not None:
                            out.write(frame, int(clock[0] * 1e9))
                        continue
                    if deadline is None or deadline > until_s:
                        clock[0] = until_s
                        return

            image_stamps: list[int] = []
            detection_stamps: list[int] = []
            messages = reader.messages(connections=[*image_conns, *det_conns])
            for conn, time_ns, raw in tqdm(messages, total=total, unit="msg", disable=not progress, desc=in_path.name):
                t = time_ns * 1e-9
                recorded_ns[0] = time_ns
                drain(t)
                msg = reader.deserialize(raw, conn.msgtype)
                data = raw if reader.is2 else store.serialize_cdr(msg, _ros2_name(conn.msgtype))
                writer.write(copies[conn.id], time_ns, data)
                stamp = stamp_ns(msg.header.stamp)
                if conn.msgtype in IMAGE_TYPES:
                    summary.images += 1
                    image_stamps.append(stamp)
                    pipeline.add_image(msg, t)
                else:
                    summary.detection_messages += 1
                    detection_stamps.append(stamp)
                    pipeline.add_detections(msg, t)
                drain(t)
            drain(math.inf)
            out.close()
        finally:
            writer.close()
        complete = True
    except Exception as exc:
        if not _is_read_error(exc):
            raise
        raise BagError(f"{in_path}: reading failed, truncated or corrupt? ({type(exc).__name__}: {exc})") from None
    finally:
        reader.close()
        if not complete:
            shutil.rmtree(staging, ignore_errors=True)

    summary.detections_stamped_like_an_image = _stamps_matching(
        detection_stamps, image_stamps, int(node_params.sync_tolerance * 1e9)
    )
    if summary.detection_messages and not summary.detections_stamped_like_an_image:
        shutil.rmtree(staging, ignore_errors=True)
        raise BagError(
            f"{in_path}: none of the {summary.detection_messages} messages on {detections_topic!r} "
            f"has the stamp of an image on {image_topic!r} (within sync_tolerance "
            f"{node_params.sync_tolerance:g} s): is the detector stamping with its own clock?"
        )
    wall = time.perf_counter() - start
    steps = [ms for _, ms in pipeline.stats.step_ms]
    summary.processed = pipeline.stats.processed
    summary.counters = pipeline.stats.counters()
    summary.tracks_started = out.started
    summary.frames_per_track = {str(k): v for k, v in out.frames_per_track.items()}
    summary.step_ms = (
        {
            "mean": round(statistics.fmean(steps), 2),
            "p50": round(statistics.median(steps), 2),
            "max": round(max(steps), 2),
        }
        if steps
        else {}
    )
    summary.wall_s = round(wall, 3)
    summary.frames_per_s = round(summary.processed / wall, 2) if wall > 0 else 0.0
    (partial / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
    os.replace(partial, out_path)
    staging.rmdir()
    return summary


def _stamps_matching(stamps: list[int], image_stamps: list[int], tolerance_ns: int) -> int:
    """How many of ``stamps`` lie within ``tolerance_ns`` of an image stamp."""
    ordered = sorted(image_stamps)
    count = 0
    for stamp in stamps:
        i = bisect.bisect_left(ordered, stamp - tolerance_ns)
        count += i < len(ordered) and ordered[i] <= stamp + tolerance_ns
    return count


def _is_read_error(exc: Exception) -> bool:
    """A truncated or corrupt bag surfaces mid-read as an error of rosbags, its storage or decompression
    libraries, or of unpacking short bytes; anything else is a bug to show as is."""
    module = type(exc).__module__ or ""
    return module.split(".")[0] in {"rosbags", "apsw", "sqlite3", "lz4", "zstandard", "backports"} or isinstance(
        exc, (EOFError, struct.error, UnicodeDecodeError)
    )


def _ros2_name(msgtype: str) -> str:
    """ROS 1 names a type ``pkg/Type``; ROS 2 ``pkg/msg/Type``."""
    return msgtype if "/msg/" in msgtype else msgtype.replace("/", "/msg/", 1)


# ---------------------------------------------------------------------------------------- writing


def image_message(
    store, rgb: np.ndarray, nanoseconds: int, frame_id: str = "camera", compressed: Optional[str] = None
) -> tuple[str, Any]:
    """(type name, message) of an RGB frame: raw rgb8, or jpeg/png when ``compressed`` names the format."""
    types = RosbagsTypes(store)
    header = _header(types, nanoseconds, frame_id)
    if compressed is None:
        return "sensor_msgs/msg/Image", outputs.image_msg(types, np.ascontiguousarray(rgb), "rgb8", header)
    ok, data = cv2.imencode(f".{compressed}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode a frame as {compressed}")
    msg = types.make(
        "sensor_msgs/msg/CompressedImage", header=header, format=compressed, data=np.asarray(data, np.uint8).ravel()
    )
    return "sensor_msgs/msg/CompressedImage", msg


def detections_message(
    store,
    boxes_xyxy: list[tuple[float, float, float, float]],
    nanoseconds: int,
    class_id: str = "object",
    frame_id: str = "camera",
) -> Any:
    """A Detection2DArray of pixel boxes (ids "1", "2", ... in order), as a detector would publish."""
    types = RosbagsTypes(store)
    header = _header(types, nanoseconds, frame_id)
    msg = types.Detection2DArray(header=header)
    for index, (x0, y0, x1, y1) in enumerate(boxes_xyxy, 1):
        det = types.Detection2D(header=header, id=str(index))
        det.bbox.center.position.x, det.bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
        hyp = types.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = class_id, 0.9
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


def _header(types: RosbagsTypes, nanoseconds: int, frame_id: str) -> Any:
    stamp = types.store.types["builtin_interfaces/msg/Time"](
        sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000
    )
    return types.store.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def write_bag(
    path: Path,
    frames: np.ndarray,
    boxes: dict[int, list],
    image_topic: str = "/camera/image",
    detections_topic: str = "/detections",
    fps: float = 10.0,
    storage: str = "mcap",
    compressed: Optional[str] = None,
    start_ns: int = 1_000_000_000,
    detection_delay_s: float = 0.0,
) -> None:
    """A bag as a robot records it: ``frames`` (uint8 RGB [T,H,W,3]) on ``image_topic`` at ``fps``
    (topic ``<image_topic>/compressed`` when ``compressed``), and for each frame index in ``boxes``
    a Detection2DArray stamped like that frame, recorded ``detection_delay_s`` after it."""
    store = typestore()
    path = Path(path)
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        image_conn = writer.add_connection(
            f"{image_topic}/compressed" if compressed else image_topic, image_type, typestore=store
        )
        det_conn = writer.add_connection(detections_topic, "vision_msgs/msg/Detection2DArray", typestore=store)
        records = []
        for t, rgb in enumerate(frames):
            stamp = start_ns + int(round(t * 1e9 / fps))
            typename, msg = image_message(store, rgb, stamp, compressed=compressed)
            records.append((stamp, 0, image_conn, store.serialize_cdr(msg, typename)))
            if t in boxes:
                det = detections_message(store, boxes[t], stamp)
                records.append(
                    (
                        stamp + int(detection_delay_s * 1e9),
                        1,
                        det_conn,
                        store.serialize_cdr(det, "vision_msgs/msg/Detection2DArray"),
                    )
                )
        for time_ns, _, conn, data in sorted(records, key=lambda r: r[:2]):
            writer.write(conn, time_ns, data)
    finally:
        writer.close()


def synthetic_bag(
    path: Path,
    world: str = "2d",
    seed: int = 0,
    frames: int = 24,
    size: tuple[int, int] = (320, 240),
    fps: float = 10.0,
    detect_every: int = 0,
    **kwargs: Any,
) -> None:
    """A bag of one synthetic scene (the demo's worlds) with first-frame detections (and every
    ``detect_every`` frames if > 0): something to try the bag workflow on without a robot."""
    from savi_scenes import SceneConfig, generate_scene
    from savi_scenes.physics3d import PhysicsSceneConfig, generate_physics_scene

    width, height = size
    if world == "3d":
        scene = generate_physics_scene(seed, PhysicsSceneConfig(height=height, width=width, num_frames=frames))
    else:
        scene = generate_scene(seed, SceneConfig(height=height, width=width, num_frames=frames))
    boxes = {}
    for t in range(frames):
        if t == 0 or (detect_every > 0 and t % detect_every == 0):
            boxes[t] = [
                (float(b[1] * width), float(b[0] * height), float(b[3] * width), float(b[2] * height))
                for b, v in zip(scene.boxes[t], scene.visible[t])
                if v
            ]
    write_bag(path, scene.video, boxes, fps=fps, **kwargs)


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m savi_ros.bag", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    track = sub.add_parser("track", help="track a bag offline into a new bag")
    track.add_argument("input", type=Path, help="rosbag2 folder or file (sqlite3, MCAP) or ROS 1 .bag")
    track.add_argument("output", type=Path, help="the new bag's folder (must not exist)")
    track.add_argument("--image", required=True, help="image topic (sensor_msgs/Image or CompressedImage)")
    track.add_argument("--detections", help="detections topic (vision_msgs/Detection2DArray)")
    track.add_argument("--checkpoint", default=None, help="'default' or a checkpoint folder (node parameter)")
    track.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (node parameter)")
    track.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="any other node parameter, as with ros2 run (repeatable)",
    )
    track.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="output bag storage")
    track.add_argument("--namespace", default="savi", help="namespace of the added topics (as the launch file's)")
    track.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    track.add_argument("--no-progress", action="store_true", help="no progress bar")
    synth = sub.add_parser("synth", help="write a bag of a synthetic scene (image + detections) to try this on")
    synth.add_argument("output", type=Path)
    synth.add_argument("--world", choices=("2d", "3d"), default="2d")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--frames", type=int, default=24)
    synth.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    synth.add_argument("--fps", type=float, default=10.0)
    synth.add_argument("--detect-every", type=int, default=0, help="re-detect every N frames (0: first frame only)")
    synth.add_argument("--compressed", choices=("jpeg", "png"), default=None)
    synth.add_argument("--storage", choices=sorted(STORAGES), default="mcap")
    args = parser.parse_args(argv)
    if args.command == "synth":
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            parser.error(f"--size: expected WIDTHxHEIGHT, got {args.size!r}")
        if args.output.exists():
            print(f"savi_ros.bag: error: {args.output}: already exists", file=sys.stderr)
            return 1
        synthetic_bag(
            args.output,
            args.world,
            args.seed,
            args.frames,
            (width, height),
            args.fps,
            args.detect_every,
            storage=args.storage,
            compressed=args.compressed,
        )
        print(
            f"{args.output}: {args.frames} frames on /camera/image{'/compressed' if args.compressed else ''}, "
            "detections on /detections"
        )
        return 0
    try:
        assignments = list(args.param)
        if args.checkpoint is not None:
            assignments.append(f"checkpoint:={args.checkpoint}")
        if args.device is not None:
            assignments.append(f"device:={args.device}")
        node_params = params.from_assignments(assignments)
        summary = track_bag(
            args.input,
            args.output,
            args.image,
            args.detections,
            node_params,
            storage=args.storage,
            namespace=args.namespace,
            overlay=not args.no_overlay,
            progress=not args.no_progress,
        )
    except (BagError, ModelLoadError, params.ParamError) as exc:
        print(f"savi_ros.bag: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    counters = summary.counters
    print(
        f"{summary.output}: {summary.processed} of {summary.images} images tracked "
        f"({counters['dropped_frames']} dropped, {counters['bad_images']} bad), "
        f"{summary.detection_messages} detection messages ({summary.detections_with_their_image} with their image, "
        f"{counters['late_detections']} late), tracks {summary.tracks_started}, "
        f"step p50 {summary.step_ms.get('p50', 0)} ms, {summary.frames_per_s} frames/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
