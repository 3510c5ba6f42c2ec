"""`make demo`: the tracker node, the demo camera and the demo detector as separate processes over DDS.

It plays a few held-out synthetic scenes, records what the tracker publishes (`tracks`, `masks`,
`label_info`), and writes into the output folder:

* ``overlay.mp4``: every camera frame with the received masks, boxes and track ids drawn over it;
* ``contact_sheet.png``: 8 frames per scene, one row per scene;
* ``metrics.json``: per-scene FG-ARI and mIoU of the received masks against the ground truth
  (frame 0, the conditioning frame, skipped), and end-to-end latency percentiles;
* ``logs/``: each process's output, and ROS logs under ``logs/ros``.

Ground truth never travels for scoring: the camera's `demo/ground_truth` header names each stamp's
(scene seed, frame), and the scenes are regenerated here from the same seeds and config.
End-to-end latency = arrival time of `masks` here - image stamp (camera clock at publish time;
same machine, same clock). Scene changes reset the tracker from the camera (see `camera_node`).

Run: ``python -m savi_ros.demo.run_demo --scenes 3 --rate 10``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import rclpy
import torch
from lifecycle_msgs.srv import GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from savi_core.checkpoint import CheckpointError, read_checkpoint_config
from savi_core.metrics import fg_ari, miou
from savi_core.savi import MASK_SOURCES
from savi_core.tracker_config import TrackerConfig
from savi_ros.conversions import image_to_numpy
from savi_ros.demo.camera_node import (DEFAULT_SEED, GROUND_TRUTH_QOS, GROUND_TRUTH_TOPIC, CameraConfig,
                                       FrameTag)
from savi_ros.interrupt import spin_until_shutdown
from savi_ros.overlay import contact_sheet, draw_overlay
from savi_ros.params import NodeOnlyParams
from savi_ros.model_store import resolve_checkpoint
from savi_scenes import generate_scene

NAMESPACE = "/savi"
TRACKER_NODE = "savi_tracker"
SHEET_FRAMES = 8
UNTRAINED_BANNER = """
##########################################################################
#  UNTRAINED WEIGHTS: this checkpoint says its weights were never         #
#  trained (random). The masks and scores below show that the pipeline    #
#  runs, not what SAVi can do. Train a model and pass --checkpoint PATH.  #
##########################################################################
"""


@dataclass
class DemoOptions:
    """What `run_demo` plays and where it writes; the CLI flags of the same names."""

    scenes: int = 3
    frames: int = 24
    rate: float = 10.0
    width: int = 320
    height: int = 240
    seed: int = DEFAULT_SEED
    min_objects: int = 2
    max_objects: int = 5
    checkpoint: str = "default"
    mask_source: str = TrackerConfig.mask_source
    device: str = NodeOnlyParams.device
    box_noise: float = 0.0
    drop_prob: float = 0.0
    every_n_frames: int = 0
    shape_classes: bool = True
    out: Path = Path("demo_out")
    startup_timeout: float = 90.0

    def __post_init__(self) -> None:
        if self.scenes < 1:
            raise ValueError(f"--scenes must be >= 1, got {self.scenes}")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"--mask-source must be one of {MASK_SOURCES}, got {self.mask_source!r}")
        if not self.startup_timeout > 0:
            raise ValueError(f"--startup-timeout must be > 0, got {self.startup_timeout}")
        self.camera_config()  # validates sizes, rate, frames, seed and object counts by name

    def camera_config(self) -> CameraConfig:
        return CameraConfig(width=self.width, height=self.height, rate=self.rate, num_scenes=self.scenes,
                            frames_per_scene=self.frames, seed=self.seed, min_objects=self.min_objects,
                            max_objects=self.max_objects)


@dataclass
class CheckpointInfo:
    path: str
    trained: bool | None     # None = the checkpoint does not say
    num_object_slots: int


def inspect_checkpoint(spec: str) -> CheckpointInfo:
    """Where `spec` points and whether its config.json says the weights were trained."""
    path = resolve_checkpoint(spec)
    if spec.strip() == "default" and not path.exists():
        raise CheckpointError(f"the packaged default model is missing ({path}); pass --checkpoint PATH")
    cfg, meta = read_checkpoint_config(path)
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    trained = meta.get("trained", extra.get("trained"))
    return CheckpointInfo(str(path), trained if isinstance(trained, bool) else None, cfg.num_object_slots)


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
        self.node.create_subscription(Detection2DArray, GROUND_TRUTH_TOPIC, self._on_truth, GROUND_TRUTH_QOS)
        self._get_state = None
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=spin_until_shutdown, args=(self.executor,), daemon=True)
        self._spinner.start()

    def topic(self, name: str) -> str:
        return f"{self.node.get_namespace().rstrip('/')}/{name}"

    def subscribe_outputs(self) -> None:
        """Subscribe to tracks/masks with the publisher's reliability (reliable when it is), label_info latched."""
        def qos_like(topic: str) -> QoSProfile:
            infos = self.node.get_publishers_info_by_topic(self.topic(topic))
            reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200,
                              reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)

        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(Image, "masks", self._on_masks, qos_like("masks"))
        self.node.create_subscription(Detection2DArray, "tracks", self._on_tracks, qos_like("tracks"))
        self.node.create_subscription(LabelInfo, "label_info", self._on_label_info, latched)

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
            tracks.append((track_id, hyp.class_id if hyp else "", (cx - hw, cy - hh, cx + hw, cy + hh),
                           float(hyp.score) if hyp else 0.0))
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
            return Recording(dict(self.data.tags), dict(self.data.masks), dict(self.data.latency_s),
                             dict(self.data.tracks), list(self.data.label_info))

    def close(self) -> None:
        rclpy.try_shutdown()
        self._spinner.join(timeout=5.0)
        self.node.destroy_node()


class Processes:
    """The demo's child processes, each with its log file; stopped with SIGINT (then harder)."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    def start(self, name: str, module: str, ros_args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w", encoding="utf-8")
        self._logs.append(log)
        cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={NAMESPACE}", *ros_args]
        # A new session: a Ctrl-C in the terminal reaches only this orchestrator, which then
        # stops each child once (nodes that get SIGINT twice may not shut down cleanly).
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and name != "camera":
                raise RuntimeError(f"the {name} process exited early with code {proc.returncode}:\n"
                                   + self.tail(name))

    def tail(self, name: str, lines: int = 25) -> str:
        text = (self.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop_all(self, timeout: float = 10.0) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()
        return {name: proc.returncode for name, proc in self.procs.items()}


def _wait(what: str, condition: Callable[[], bool], timeout: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    v = np.asarray(values) * 1000.0
    return {"count": len(values), "p50_ms": float(np.percentile(v, 50)), "p90_ms": float(np.percentile(v, 90)),
            "p99_ms": float(np.percentile(v, 99)), "max_ms": float(v.max())}


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _caption(track_id: int, class_id: str) -> str:
    return str(track_id) if class_id in ("", "object") else f"{track_id} {class_id}"


def _mean_defined(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else None


def evaluate(rec: Recording, opts: DemoOptions, sheet_frames: int = SHEET_FRAMES,
             banner: str = "") -> tuple[dict[str, Any], list[np.ndarray], np.ndarray]:
    """Per-scene metrics, the overlay frames (every published frame) and the contact sheet."""

    scene_cfg = opts.camera_config().scene_config()
    by_frame = {(tag.scene, tag.frame): (stamp, tag) for stamp, tag in rec.tags.items()}
    seeds = {tag.scene: tag.seed for tag in rec.tags.values()}
    scenes_out, frames_out, sheet_rows = [], [], []
    sheet_at = set(np.linspace(0, opts.frames - 1, min(sheet_frames, opts.frames)).round().astype(int).tolist())
    for index in range(opts.scenes):
        seed = seeds.get(index, opts.seed + index)
        scene = generate_scene(seed, scene_cfg)
        gt = scene.segmentations.astype(np.int64)
        pred = np.zeros_like(gt)
        received = np.zeros(opts.frames, bool)
        row = []
        for t in range(opts.frames):
            stamp, _ = by_frame.get((index, t), (None, None))
            labels = rec.masks.get(stamp) if stamp is not None else None
            status = "" if labels is not None else (" (no output)" if stamp is not None else " (not seen)")
            if labels is not None:
                if labels.shape != gt.shape[1:]:
                    raise ValueError(f"masks of scene {index} frame {t} are {labels.shape}, images {gt.shape[1:]}")
                pred[t] = labels
                received[t] = True
            tracks = rec.tracks.get(stamp, []) if stamp is not None else []
            frame = draw_overlay(scene.video[t], labels,
                                 boxes={tid: box for tid, _, box, _ in tracks},
                                 captions={tid: _caption(tid, cls) for tid, cls, _, _ in tracks},
                                 banner=f"scene {index} frame {t}{status}{banner}")
            frames_out.append(frame)
            if t in sheet_at:
                row.append(frame)
        sheet_rows.append(row)
        present = np.array([(gt == i + 1).any() for i in range(scene.num_objects)])
        frame_mask = torch.from_numpy(received)[None]
        pred_t, gt_t = torch.from_numpy(pred)[None], torch.from_numpy(gt)[None]
        ari = float(fg_ari(pred_t, gt_t, skip_first=True, frame_mask=frame_mask)[0])
        iou = float(miou(pred_t, gt_t, scene.num_objects, skip_first=True, frame_mask=frame_mask,
                         instance_mask=torch.from_numpy(present)[None])[0])
        scenes_out.append({"scene": index, "seed": seed, "objects": scene.num_objects,
                           "frames_published": sum((index, t) in by_frame for t in range(opts.frames)),
                           "frames_with_output": int(received.sum()),
                           "fg_ari": _nan_to_none(ari), "miou": _nan_to_none(iou)})
    stamps_of_demo = set(rec.tags)
    latency = [v for s, v in rec.latency_s.items() if s in stamps_of_demo]
    metrics = {
        "scenes": scenes_out,
        "mean_fg_ari": _mean_defined(scenes_out, "fg_ari"),
        "mean_miou": _mean_defined(scenes_out, "miou"),
        "latency": _percentiles(latency),
        "track_ids_seen": sorted({tid for tracks in rec.tracks.values() for tid, *_ in tracks}),
        "label_info_messages": len(rec.label_info),
    }
    return metrics, frames_out, contact_sheet(sheet_rows)


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), max(1.0, fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (mp4v)")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _format(value: float | None, digits: int = 3) -> str:
    return "  n/a" if value is None else f"{value:.{digits}f}"


def print_table(metrics: dict[str, Any]) -> None:
    print(f"{'scene':>5} {'seed':>7} {'objects':>7} {'frames out':>10} {'FG-ARI':>7} {'mIoU':>7}")
    for s in metrics["scenes"]:
        print(f"{s['scene']:>5} {s['seed']:>7} {s['objects']:>7} {s['frames_with_output']:>4}/{s['frames_published']:<5} "
              f"{_format(s['fg_ari']):>7} {_format(s['miou']):>7}")
    print(f"{'mean':>5} {'':>26} {_format(metrics['mean_fg_ari']):>7} {_format(metrics['mean_miou']):>7}")
    lat = metrics["latency"]
    if lat["count"]:
        print(f"end-to-end latency over {lat['count']} frames: p50 {lat['p50_ms']:.0f} ms, "
              f"p90 {lat['p90_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms")
    else:
        print("end-to-end latency: no masks received")


def run(opts: DemoOptions) -> dict[str, Any]:
    """Run the demo end to end; returns the metrics written to metrics.json."""
    started = time.monotonic()
    ckpt = inspect_checkpoint(opts.checkpoint)
    if opts.max_objects > ckpt.num_object_slots:
        print(f"note: the model has {ckpt.num_object_slots} object slots; scenes get at most that many objects")
        opts.max_objects = ckpt.num_object_slots
        opts.min_objects = min(opts.min_objects, opts.max_objects)
    untrained = ckpt.trained is False
    if untrained:
        print(UNTRAINED_BANNER)
    elif ckpt.trained is None:
        print(f"note: {ckpt.path} does not say whether its weights are trained")
    out = opts.out.absolute()
    (out / "logs" / "ros").mkdir(parents=True, exist_ok=True)
    domain = os.environ.get("ROS_DOMAIN_ID") or str(random.randint(1, 100))
    os.environ["ROS_DOMAIN_ID"] = domain
    os.environ["ROS_LOG_DIR"] = str(out / "logs" / "ros")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # a demo needs no other hosts
    print(f"checkpoint: {opts.checkpoint} ({ckpt.path}); ROS_DOMAIN_ID={domain}; namespace {NAMESPACE}")

    recorder = Recorder(NAMESPACE)
    procs = Processes(out / "logs", dict(os.environ))
    codes: dict[str, int | None] = {}
    try:
        procs.start("tracker", "savi_ros.tracker_node", [
            "-p", f"checkpoint:={opts.checkpoint}", "-p", f"mask_source:={opts.mask_source}",
            "-p", f"device:={opts.device}"])
        procs.start("detector", "savi_ros.demo.detector_node", [
            "-p", f"box_noise:={float(opts.box_noise)}", "-p", f"drop_prob:={float(opts.drop_prob)}",
            "-p", f"every_n_frames:={opts.every_n_frames}",
            "-p", f"use_shape_classes:={str(opts.shape_classes).lower()}"])
        _wait("the tracker node to come up (see demo_out/logs/tracker.log)",
              lambda: (recorder.count("pub", "masks") > 0 and recorder.count("pub", "tracks") > 0
                       and recorder.count("sub", "image") > 0 and recorder.count("sub", "detections") > 0),
              opts.startup_timeout, procs)
        _wait("the tracker's reset service", lambda: recorder.has_service("reset"), opts.startup_timeout, procs)
        _wait("the tracker to become active", recorder.tracker_active, opts.startup_timeout, procs)
        _wait("the detector node", lambda: recorder.count("pub", "detections") > 0, opts.startup_timeout, procs)
        recorder.subscribe_outputs()
        time.sleep(0.5)  # let the endpoints that discovery just announced match each other
        print(f"nodes up after {time.monotonic() - started:.1f} s; playing {opts.scenes} scenes of "
              f"{opts.frames} frames at {opts.rate:g} Hz ({opts.width}x{opts.height})")
        cam = opts.camera_config()
        camera = procs.start("camera", "savi_ros.demo.camera_node", [
            *(arg for name in ("width", "height", "rate", "num_scenes", "frames_per_scene", "seed",
                               "min_objects", "max_objects")
              for arg in ("-p", f"{name}:={getattr(cam, name)}")),
            "-p", "min_image_subscribers:=1", "-p", "min_ground_truth_subscribers:=2"])
        play_time = opts.scenes * (opts.frames / opts.rate + 3.0) + 30.0
        _wait("the camera to finish its scenes", lambda: camera.poll() is not None, play_time, procs)
        if camera.returncode != 0:
            raise RuntimeError(f"the camera exited with code {camera.returncode}:\n{procs.tail('camera')}")
        last = max(recorder.snapshot().tags, default=None)
        deadline = time.monotonic() + 10.0
        while last is not None and time.monotonic() < deadline:
            if any(s >= last for s in recorder.snapshot().tracks):
                break
            time.sleep(0.05)
    finally:
        codes = procs.stop_all()
        recorder.close()
    rec = recorder.snapshot()
    metrics, frames, sheet = evaluate(rec, opts, banner=" UNTRAINED" if untrained else "")
    metrics.update({"checkpoint": opts.checkpoint, "checkpoint_path": ckpt.path, "trained": ckpt.trained,
                    "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
                    "exit_codes": codes, "runtime_s": round(time.monotonic() - started, 1)})
    write_video(out / "overlay.mp4", frames, opts.rate)
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print_table(metrics)
    if untrained:
        print("(weights are UNTRAINED: the numbers above are those of a random model)")
    return metrics


def parse_args(argv: list[str] | None = None) -> DemoOptions:
    d = DemoOptions()
    p = argparse.ArgumentParser(prog="run_demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=d.scenes, help="number of scenes to play")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per scene")
    p.add_argument("--rate", type=float, default=d.rate, help="camera rate in Hz")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the first scene (held out from training)")
    p.add_argument("--min-objects", type=int, default=d.min_objects)
    p.add_argument("--max-objects", type=int, default=d.max_objects)
    p.add_argument("--checkpoint", default=d.checkpoint, help="'default' (the packaged model) or a directory")
    p.add_argument("--mask-source", default=d.mask_source, choices=MASK_SOURCES)
    p.add_argument("--device", default=d.device, help="tracker device: auto, cpu, cuda, cuda:N")
    p.add_argument("--box-noise", type=float, default=d.box_noise, help="detector box noise (fraction of size)")
    p.add_argument("--drop-prob", type=float, default=d.drop_prob, help="detector drop probability")
    p.add_argument("--every-n-frames", type=int, default=d.every_n_frames,
                   help="detections also every N frames (0: first frame of each scene only)")
    p.add_argument("--shape-classes", action=argparse.BooleanOptionalAction, default=d.shape_classes,
                   help="detections carry the shape name as class (else 'object')")
    p.add_argument("--out", type=Path, default=d.out, help="output folder")
    p.add_argument("--startup-timeout", type=float, default=d.startup_timeout, help="seconds to wait for the nodes")
    a = p.parse_args(argv)
    try:
        return DemoOptions(**{k: getattr(a, k) for k in asdict(d)})
    except ValueError as error:
        p.error(str(error))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        run(opts)
    except (RuntimeError, TimeoutError, ValueError, OSError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
