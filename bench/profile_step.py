"""Where one `Tracker.step` of the shipped model goes: its parts timed one by one on the same camera frame.

A generated scene (5 objects, first-frame boxes) runs through the Tracker for a few frames; then each part of
the next step is repeated on that frame and its median wall and process-CPU milliseconds printed beside its
share of the whole step: the image's upload and resize, the frozen backbone (taps at strides 4, 8 and 16 of
the model's input), the fusion head, the corrector step (attention at the feature grid), guided masks (the
live slots' planes upsampled and OpenCV's guided filter), the camera-size labels (resize, running maximum,
lookup tables) and the per-track stats; what the step takes beyond them is the Python around them (starts,
gate, lost rule, looks, results). A benchmark tool: it calls the Tracker's helpers, it changes nothing. Run:
``.venv/bin/python bench/profile_step.py [--size 480x640] [--threads 2] [--repeats 50]``; on a loaded
machine prefer ``--threads 1`` and the CPU column, and compare shares rather than milliseconds.

``--detections``: detection frames against plain ones instead. A longer scene of the same 5 objects streams
through the Tracker with its boxes as detections on every 6th frame (a 5 Hz detector at 30 Hz: they match
the live tracks), and the Tracker's parts are timed inside each real step (wrapped, not repeated: a
detection changes the Tracker's state) — the detections' acceptance and starts, the slots' conditioning
and restart (`init_slots_for`), the encoder, gate, corrector step, labels, revival and the lost rule; the
medians per frame kind and their difference say where a detection frame's extra milliseconds go.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Callable

import torch

from savi_core.model.checkpoint import load_checkpoint
from savi_core.numerics import flush_denormals
from savi_core.tracking.labels import guided_planes, opencv_camera_labels, opencv_label_stats
from savi_core.tracking.tracker import Detection, Tracker
from savi_core.tracking.tracker_config import TrackerConfig


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append((time.process_time() - c0) * 1e3)
        walls.append((time.perf_counter() - w0) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def padded(values: list[float], count: int) -> list[float]:
    """``values`` with zeros for the frames a part did not run on (``count`` frames in all)."""
    return values + [0.0] * (count - len(values)) if count else [0.0]


DETECT_EVERY = 6  # a 5 Hz detector on a 30 Hz camera, as bench_latency.py streams


def detection_profile(model: torch.nn.Module, height: int, width: int, repeats: int) -> None:
    """Print the median wall and process-CPU milliseconds of each part of the Tracker's step on detection and
    on plain frames (``repeats`` detection frames, the plain frames between them), timed inside the steps."""
    from savi_core.tracking import tracker as tracker_module
    from savi_scenes import SceneConfig, generate_scene

    frames = DETECT_EVERY * repeats + DETECT_EVERY
    scene = generate_scene(7, SceneConfig(height=height, width=width, num_frames=frames, min_objects=5, max_objects=5))
    tracker = Tracker(model, TrackerConfig())
    spent: dict[str, tuple[float, float]] = {}  # part -> wall, process CPU ms in this step

    def timing(name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed_fn(*args: object, **kwargs: object) -> object:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                before = spent.get(name, (0.0, 0.0))
                spent[name] = (
                    before[0] + (time.perf_counter() - wall) * 1e3,
                    before[1] + (time.process_time() - cpu) * 1e3,
                )

        return timed_fn

    for name in ("accepted", "start_tracks", "revive", "update_tracks"):
        setattr(tracker_module, name, timing(name, getattr(tracker_module, name)))
    for obj, name, label in (
        (tracker._labels, "preprocess", "image upload + resize"),
        (tracker._conditioner, "conditioning", "conditioning"),
        (model, "encode", "encoder (backbone + fusion)"),
        (model, "init_slots_for", "slot restarts (init_slots_for)"),
        (tracker._gate, "bias", "gate"),
        (model, "step", "corrector step"),
        (tracker._labels, "postprocess", "guided masks + labels + stats"),
    ):
        setattr(obj, name, timing(label, getattr(obj, name)))
    rows: dict[str, dict[str, list[float]]] = {"detection": {}, "plain": {}}
    try:
        for t in range(frames):
            detections = None
            if t % DETECT_EVERY == 0:
                detections = [
                    Detection((x0 * width, y0 * height, x1 * width, y1 * height), class_id="object", score=0.9)
                    for (y0, x0, y1, x1), seen in zip(scene.boxes[t].tolist(), scene.visible[t])
                    if seen
                ]
            spent.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            tracker.step(scene.video[t], detections, stamp=t / 30)
            total = ((time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3)
            if t < DETECT_EVERY:  # the first detections start the tracks; the next frames warm up
                continue
            kind = rows["plain" if detections is None else "detection"]
            for name, ms in spent.items():
                kind.setdefault(name, []).append(ms)
            rest = tuple(total[i] - sum(ms[i] for ms in spent.values()) for i in (0, 1))
            kind.setdefault("the rest (Python around them)", []).append(rest)
            kind.setdefault("Tracker.step", []).append(total)
    finally:
        for name in ("accepted", "start_tracks", "revive", "update_tracks"):
            setattr(tracker_module, name, getattr(tracker_module, name).__wrapped__)
    names = list(dict.fromkeys([*rows["detection"], *rows["plain"]]))
    count = {kind: len(rows[kind].get("Tracker.step", [])) for kind in rows}
    print(f"Tracker.step {height}x{width}, {len(tracker.live_tracks)} tracks, {torch.get_num_threads()} threads, "
          f"{count['detection']} detection and {count['plain']} plain frames: ms, medians per frame "
          "(a part a frame kind did not run counts 0), and on how many frames of each kind it ran")  # fmt: skip
    kinds = f"{'plain':>6s} {'extra':>6s}"
    print(f"  {'':34s} {'wall: detection':>15s} {kinds}   {'CPU: detection':>14s} {kinds}   ran: detection plain")
    for name in names:
        cells = []
        for i in (0, 1):  # wall, CPU
            det, plain = (
                statistics.median(padded([ms[i] for ms in rows[k].get(name, [])], count[k]))
                for k in ("detection", "plain")
            )
            cells.append(f"{det:15.2f} {plain:6.2f} {det - plain:6.2f}")
        ran = [len(rows[k].get(name, [])) for k in ("detection", "plain")]
        print(f"  {name:34s} {cells[0]}   {cells[1][1:]}   {ran[0]:14d} {ran[1]:5d}")


def main() -> None:
    flush_denormals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="480x640", help="camera HxW")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--detections", action="store_true", help="detection frames against plain frames")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from savi_ros.model_store import resolve_checkpoint
    from savi_scenes import SceneConfig, generate_scene
    from training.evaluate import first_frame_detections

    height, width = (int(v) for v in args.size.lower().split("x"))
    model, _ = load_checkpoint(resolve_checkpoint(args.checkpoint))
    if args.detections:
        detection_profile(model, height, width, args.repeats)
        return
    scene = generate_scene(7, SceneConfig(height=height, width=width, num_frames=8, min_objects=5, max_objects=5))
    boxes, visible = torch.from_numpy(scene.boxes[0]).float(), torch.from_numpy(scene.visible[0]).float()
    tracker = Tracker(model, TrackerConfig())
    tracker.step(scene.video[0], first_frame_detections(boxes, visible, (height, width)))
    for frame in scene.video[1:-1]:
        tracker.step(frame)
    image = scene.video[-1]
    labels, config = tracker._labels, tracker.config
    rows: list[tuple[str, float, float]] = []
    with torch.inference_mode():
        frame = labels.preprocess(image)
        taps = model.encoder.frozen(frame)
        features = model.encoder.head(taps)
        gate = tracker._gate.bias(tracker._book.tracks, config.gate_margin, height, width)
        out = model.step(frame, tracker._slots, decode="none", attention_bias=gate, features=features)
        camera = labels._camera_image()
        planes, slots = guided_planes(out.attention[0], frame[0], labels._live_slots, True, camera)
        best, _, stats_rows = opencv_camera_labels(
            planes, height, width, config.mask_threshold, labels.buffers, model.config.num_slots,
            labels.id_lut, labels.row_lut, slots,
        )  # fmt: skip
        work = labels.buffers[(height, width)][3]
        parts = {
            "image upload + resize": lambda: labels.preprocess(image),
            f"backbone {tuple(frame.shape[-2:])} -> strides 4/8/16": lambda: model.encoder.frozen(frame),
            "fusion head": lambda: model.encoder.head(taps),
            "gate + corrector step": lambda: model.step(
                frame,
                tracker._slots,
                decode="none",
                attention_bias=tracker._gate.bias(tracker._book.tracks, config.gate_margin, height, width),
                features=features,
            ),
            "guided masks": lambda: guided_planes(out.attention[0], frame[0], labels._live_slots, True, camera),
            "camera-size labels": lambda: opencv_camera_labels(
                planes,
                height,
                width,
                config.mask_threshold,
                labels.buffers,
                model.config.num_slots,
                labels.id_lut,
                labels.row_lut,
                slots,
            ),  # fmt: skip
            "per-track stats": lambda: opencv_label_stats(best, stats_rows, len(labels._live_slots), work),
        }
        for name, fn in parts.items():
            rows.append((name, *timed(fn, args.repeats)))
    step_wall, step_cpu = timed(lambda: tracker.step(image), args.repeats)
    rows.append(
        ("the rest (Python around them)", step_wall - sum(r[1] for r in rows), step_cpu - sum(r[2] for r in rows))
    )
    print(f"Tracker.step {height}x{width}, {len(labels._live_slots)} tracks, {torch.get_num_threads()} threads: "
          f"wall {step_wall:.2f} ms, process CPU {step_cpu:.2f} ms (medians of {args.repeats})")  # fmt: skip
    for name, wall, cpu in rows:
        print(f"  {name:34s} wall {wall:6.2f} ms  cpu {cpu:6.2f} ms  {100 * cpu / step_cpu:5.1f}% of the CPU")


if __name__ == "__main__":
    main()
