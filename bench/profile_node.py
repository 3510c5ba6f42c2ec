"""The `savi_tracker` node with a stopwatch on each frame's way from DDS receipt to publish, for
`bench_latency.py --profile DIR` (a benchmark tool: the node's code is wrapped here, not changed).

Per image it records, on the system clock (the clock of DDS's timestamps): the client's publish (source
timestamp), DDS receipt, the subscription callback, the worker taking the frame, decode, `Tracker.step`
(with its own phase timings), building each output message, and each `publish` call. With
``SAVI_PROFILE_CPROFILE=1`` it also runs cProfile in the worker and the executor threads. On exit it
writes ``frames.json`` and the ``*.prof`` files into ``SAVI_PROFILE_DIR`` and prints a summary with
``python bench/profile_node.py --summary DIR``.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path


def _install(out: Path) -> None:
    from savi_core.tracking import messages
    from savi_core.tracking.tracker import Tracker
    from savi_ros import conversions, tracker_node

    frames: dict[int, dict[str, float]] = {}
    lock = threading.Lock()
    current = threading.local()

    def mark(stamp: int, key: str, value: float | None = None) -> None:
        with lock:
            frames.setdefault(stamp, {})[key] = time.time_ns() if value is None else value

    on_image = tracker_node.TrackerNode._on_image

    def timed_on_image(self, msg, info) -> None:
        stamp = messages.stamp_ns(msg.header.stamp)
        mark(stamp, "callback")
        mark(stamp, "source", info["source_timestamp"])
        mark(stamp, "received", info["received_timestamp"])
        on_image(self, msg, info)
        mark(stamp, "filed")

    to_rgb8 = messages.image_to_rgb8

    def timed_to_rgb8(msg):
        current.stamp = messages.stamp_ns(msg.header.stamp)
        mark(current.stamp, "taken")
        rgb = to_rgb8(msg)
        mark(current.stamp, "decoded")
        return rgb

    step = Tracker.step

    def timed_step(self, image, detections=None, *args, **kwargs):
        stamp = getattr(current, "stamp", None)
        if stamp is not None:
            mark(stamp, "detections", len(detections or []))
            mark(stamp, "step_start")
        cpu = time.thread_time()
        result = step(self, image, detections, *args, **kwargs)
        if stamp is not None:
            mark(stamp, "step_end")
            mark(stamp, "step_thread_cpu_ms", 1e3 * (time.thread_time() - cpu))
            for key, value in result.timings.items():
                mark(stamp, f"tracker_{key}_ms", value)
        return result

    def timed(name: str, function):
        def wrapped(*args, **kwargs):
            stamp = getattr(current, "stamp", None)
            start = time.perf_counter()
            value = function(*args, **kwargs)
            if stamp is not None:
                with lock:
                    entry = frames.setdefault(stamp, {})
                    entry[f"{name}_ms"] = entry.get(f"{name}_ms", 0.0) + 1e3 * (time.perf_counter() - start)
            return value

        return wrapped

    publish = tracker_node.TrackerNode._publish

    def timed_publish(self, frame) -> None:
        stamp = messages.stamp_ns(frame.header.stamp)
        mark(stamp, "publish_start")
        originals = {name: pub.publish for name, pub in self._pubs.items()}
        try:
            for name, pub in self._pubs.items():
                pub.publish = timed(f"publish_{name}", pub.publish)
            publish(self, frame)
        finally:
            for name, pub in self._pubs.items():
                pub.publish = originals[name]
        mark(stamp, "published")

    work = tracker_node.TrackerNode._work

    def profiled_work(self) -> None:
        profile = cProfile.Profile() if os.environ.get("SAVI_PROFILE_CPROFILE") == "1" else None
        if profile is not None:
            profile.enable()
        try:
            work(self)
        finally:
            if profile is not None:
                profile.disable()
                profile.dump_stats(out / "worker.prof")

    pauses: list[list[int]] = []  # the collector's pauses in this process: [start, end] ns, system clock

    def collecting(phase: str, info: dict) -> None:
        if phase == "start":
            pauses.append([time.time_ns(), 0])
        elif pauses:
            pauses[-1][1] = time.time_ns()

    gc.callbacks.append(collecting)

    def save() -> None:
        with lock:
            (out / "frames.json").write_text(json.dumps({str(k): v for k, v in frames.items()}))
            (out / "gc.json").write_text(json.dumps(pauses))

    tracker_node.TrackerNode._on_image = timed_on_image
    tracker_node.TrackerNode._publish = timed_publish
    tracker_node.TrackerNode._work = profiled_work
    messages.image_to_rgb8 = timed_to_rgb8
    Tracker.step = timed_step
    conversions.tracks_to_msg = timed("tracks_msg", conversions.tracks_to_msg)
    conversions.label_map_to_image = timed("masks_msg", conversions.label_map_to_image)
    return save


def run_node(argv: list[str]) -> int:
    try:
        from savi_ros.openmp import before_torch
    except ImportError:  # a node tree from before it (bench_latency.py --node-tree)
        try:
            from savi_ros.openmp import spin_briefly as before_torch
        except ImportError:
            before_torch = None
    if before_torch is not None:
        before_torch()  # as the node's entry points do
    out = Path(os.environ["SAVI_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    save = _install(out)
    from savi_ros import tracker_node

    profile = cProfile.Profile() if os.environ.get("SAVI_PROFILE_CPROFILE") == "1" else None
    if profile is not None:
        profile.enable()
    try:
        return tracker_node.main(argv)
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(out / "executor.prof")
        save()


SPANS = (  # (label, from, to): consecutive spans of one frame, on the system clock
    ("DDS: client publish -> receipt", "source", "received"),
    ("receipt -> image callback", "received", "callback"),
    ("image callback (file the message)", "callback", "filed"),
    ("filed -> worker takes it", "filed", "taken"),
    ("decode (image_to_rgb8)", "taken", "decoded"),
    ("detections, prompts, locks", "decoded", "step_start"),
    ("Tracker.step", "step_start", "step_end"),
    ("step end -> publish start", "step_end", "publish_start"),
    ("publish (build + publish all outputs)", "publish_start", "published"),
    ("total: receipt -> published", "received", "published"),
)


def summary(directory: Path) -> str:
    """Median and p90 of each span over the recorded frames (ms): all of them, the frames whose step took
    detections, the frames whose step took none, and the slowest 2% from the client's publish to the node's
    (what makes a p99). Also the collector's pauses within each frame's receipt -> published, where recorded,
    and the step thread's CPU time (a step whose wall time is far above it waited: for a core, or for its
    OpenMP team)."""
    frames = [f for f in json.loads((directory / "frames.json").read_text()).values() if "published" in f]
    pauses_file = directory / "gc.json"
    if pauses_file.exists():
        pauses = [p for p in json.loads(pauses_file.read_text()) if p[1]]
        for f in frames:
            f["gc_pauses_ms"] = 1e-6 * sum(
                max(0, min(end, f["published"]) - max(start, f["received"])) for start, end in pauses
            )
    slowest = sorted(frames, key=lambda f: f["published"] - f.get("source", f["received"]))
    kinds = {
        "all": frames,
        "with detections": [f for f in frames if f.get("detections")],
        "without": [f for f in frames if not f.get("detections")],
        "slowest 2%": slowest[len(slowest) - max(1, len(slowest) // 50) :],
    }
    tail = kinds["slowest 2%"]
    lines = [
        f"{len(frames)} published frames, {len(kinds['with detections'])} of them stepped with detections; "
        f"the slowest 2% ({len(tail)}): {sum(bool(f.get('detections')) for f in tail)} with detections; "
        "medians (p90) in ms"
    ]
    lines.append(f"  {'':40s} " + " ".join(f"{kind:>17s}" for kind in kinds))

    def row(label: str, value) -> None:
        cells = []
        for group in kinds.values():
            values = sorted(v for v in map(value, group) if v is not None)
            cells.append(
                f"{statistics.median(values):7.2f} ({values[int(0.9 * (len(values) - 1))]:7.2f})" if values else ""
            )
        if any(cells):
            lines.append(f"  {label:40s} " + " ".join(f"{cell:>17s}" for cell in cells))

    for label, start, end in (("client publish -> published", "source", "published"), *SPANS):
        row(label, lambda f: (f[end] - f[start]) * 1e-6 if start in f and end in f else None)
    for key in sorted({k for f in frames for k in f if k.endswith("_ms")}):
        row(key, lambda f: f.get(key))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summary":
        print(summary(Path(sys.argv[2])))
        sys.exit(0)
    sys.exit(run_node(sys.argv))
