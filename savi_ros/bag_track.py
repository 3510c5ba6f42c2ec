"""Tracking a recorded bag offline through the node's own `savi_ros.pipeline.Pipeline` (see `savi_ros.bag`)."""

from __future__ import annotations

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
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from tqdm import tqdm

from savi_core.tracking.messages import stamp_ns
from savi_ros import outputs
from savi_ros.bag_types import DETECTIONS_TYPES, IMAGE_TYPES, STORAGES, BagError, RosbagsTypes, ros2_name, typestore
from savi_ros.model_store import load_tracker
from savi_ros.pipeline import Frame, Pipeline, Settings

OUTPUT_TYPES = {
    "tracks": "vision_msgs/msg/Detection2DArray",
    "masks": "sensor_msgs/msg/Image",
    "label_info": "vision_msgs/msg/LabelInfo",
}


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


class _Replay:
    """The recorded messages through the node's pipeline, whose clock is the recording time: every frame the
    node would have released is processed (into ``out``) before the next recorded message arrives."""

    def __init__(self, tracker: Any, node_params: Any, summary: Summary) -> None:
        self.summary = summary
        self.warnings: dict[str, int] = {}
        self.recorded_ns = 0  # the node's clock for poison stamps: the recording time of the newest message
        self.pipeline = Pipeline(tracker, Settings.from_params(node_params), self._warn, lambda: self.recorded_ns)
        self.clock = 0.0
        self.out: Optional[_Outputs] = None
        self.image_stamps: list[int] = []
        self.detection_stamps: list[int] = []

    def _warn(self, kind: str, text: str) -> None:
        if kind not in self.warnings:
            print(f"warning: {text}", file=sys.stderr)
        self.warnings[kind] = self.warnings.get(kind, 0) + 1

    def _now(self) -> float:
        return self.clock

    def arrive(self, time_ns: int) -> None:
        """A message recorded at ``time_ns`` comes: what the node released before it is processed first."""
        self.recorded_ns = time_ns
        self.drain(time_ns * 1e-9)

    def add(self, msg: Any, is_image: bool) -> None:
        """The message that arrived, into the pipeline; then what it releases is processed."""
        stamp = stamp_ns(msg.header.stamp)
        if is_image:
            self.summary.images += 1
            self.image_stamps.append(stamp)
            self.pipeline.add_image(msg, self.clock)
        else:
            self.summary.detection_messages += 1
            self.detection_stamps.append(stamp)
            self.pipeline.add_detections(msg, self.clock)
        self.drain(self.clock)

    def drain(self, until_s: float) -> None:
        """Process every frame the node would have released up to ``until_s``."""
        while True:
            deadline = self.pipeline.next_deadline()
            self.clock = until_s if deadline is None else max(self.clock, min(until_s, deadline))
            pair = self.pipeline.next_pair(self._now)
            if pair is not None:
                if pair.detections is not None:
                    self.summary.detections_with_their_image += 1
                frame = self.pipeline.process(pair, self._now)
                if frame is not None:
                    self.out.write(frame, int(self.clock * 1e9))
                continue
            if deadline is None or deadline > until_s:
                self.clock = until_s
                return


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
    """Track ``in_path`` into a new bag ``out_path`` (see `savi_ros.bag`). Raises BagError."""
    in_path, out_path = Path(in_path), Path(out_path)
    if out_path.exists():
        raise BagError(f"{out_path}: already exists; choose a new output path")
    store = typestore()
    tracker, _checkpoint, _device = load_tracker(node_params)
    summary = Summary(str(in_path), str(out_path), image_topic, detections_topic)
    replay = _Replay(tracker, node_params, summary)
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
            replay.out = _Outputs(writer, store, namespace, partial / "overlay.mp4" if overlay else None)
            replay.out.fps = _frames_per_second(sum(c.msgcount for c in image_conns), reader.duration)
            copies = {
                c.id: writer.add_connection(c.topic, ros2_name(c.msgtype), typestore=store)
                for c in [*image_conns, *det_conns]
            }
            start = time.perf_counter()
            total = sum(c.msgcount for c in [*image_conns, *det_conns])
            messages = reader.messages(connections=[*image_conns, *det_conns])
            for conn, time_ns, raw in tqdm(messages, total=total, unit="msg", disable=not progress, desc=in_path.name):
                replay.arrive(time_ns)
                msg = reader.deserialize(raw, conn.msgtype)
                writer.write(
                    copies[conn.id], time_ns, raw if reader.is2 else store.serialize_cdr(msg, ros2_name(conn.msgtype))
                )
                replay.add(msg, conn.msgtype in IMAGE_TYPES)
            replay.drain(math.inf)
            replay.out.close()
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

    tolerance = node_params.sync_tolerance
    summary.detections_stamped_like_an_image = _stamps_matching(
        replay.detection_stamps, replay.image_stamps, int(tolerance * 1e9)
    )
    if summary.detection_messages and not summary.detections_stamped_like_an_image:
        shutil.rmtree(staging, ignore_errors=True)
        raise BagError(
            f"{in_path}: none of the {summary.detection_messages} messages on {detections_topic!r} "
            f"has the stamp of an image on {image_topic!r} (within sync_tolerance "
            f"{tolerance:g} s): is the detector stamping with its own clock?"
        )
    _summarise(summary, replay, time.perf_counter() - start)
    (partial / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
    os.replace(partial, out_path)
    staging.rmdir()
    return summary


def _summarise(summary: Summary, replay: _Replay, wall: float) -> None:
    """The counts, tracks and timings of a finished replay, into ``summary``."""
    stats = replay.pipeline.stats
    steps = [ms for _, ms in stats.step_ms]
    summary.processed = stats.processed
    summary.counters = stats.counters()
    summary.tracks_started = replay.out.started
    summary.frames_per_track = {str(k): v for k, v in replay.out.frames_per_track.items()}
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
