"""Benchmark: throughput of the offline bag tracker against `Tracker.step` alone, in one run.

Writes a synthetic bag (camera-sized frames, detections on the first frame and every 6th), then
measures frames/s of (a) `Tracker.step` on the same decoded frames and detections, in a loop, and
(b) `python -m savi_ros.bag track` on the bag (reading, decoding, pairing, stepping, writing the output
bag; without and with the overlay video). The ratio (b)/(a) is what bag I/O costs; the target is >= 0.9.
Run on an idle machine:
``.venv/bin/python bench/bench_bag.py [--size 640x480] [--frames 60] [--device cpu] [--checkpoint default]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rosbags.highlevel import AnyReader

from savi_core.tracking import messages
from savi_core.numerics import flush_denormals
from savi_ros import bag, params
from savi_ros.model_store import load_tracker


def tracker_alone(node_params, bag_path: Path) -> tuple[float, int]:
    """Frames/s of Tracker.step over the bag's frames (decoded beforehand), detections where recorded."""
    frames, detections = [], {}
    with AnyReader([bag_path], default_typestore=bag.typestore()) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if conn.msgtype.endswith("Detection2DArray"):
                detections[stamp] = messages.detections_from_msg(msg)[0]
            else:
                frames.append((stamp, messages.image_to_rgb8(msg)))
    tracker, _, _ = load_tracker(node_params)
    tracker.step(frames[0][1], detections.get(frames[0][0]))  # warm-up, then start over
    tracker.reset()
    start = time.perf_counter()
    for stamp, rgb in frames:
        tracker.step(rgb, detections.get(stamp))
    return len(frames) / (time.perf_counter() - start), len(frames)


def main() -> None:
    flush_denormals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--storage", default="mcap", choices=sorted(bag.STORAGES))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    node_params = params.from_assignments([f"checkpoint:={args.checkpoint}", f"device:={args.device}"])
    work = Path(tempfile.mkdtemp(prefix="bench_bag_"))
    try:
        src = work / "in"
        bag.synthetic_bag(src, frames=args.frames, size=(width, height), fps=10.0, detect_every=6, storage=args.storage)
        alone, count = tracker_alone(node_params, src)
        print(f"{width}x{height}, {count} frames, {args.device}, checkpoint {args.checkpoint}")
        print(f"Tracker.step alone:         {alone:7.2f} frames/s")
        for overlay in (False, True):
            out = work / f"out_{overlay}"
            start = time.perf_counter()
            summary = bag.track_bag(
                src,
                out,
                "/camera/image",
                "/detections",
                node_params,
                storage=args.storage,
                overlay=overlay,
                progress=False,
            )
            rate = summary.processed / (time.perf_counter() - start)
            print(
                f"bag track{' + overlay.mp4' if overlay else '              '}: {rate:7.2f} frames/s "
                f"(ratio to Tracker.step {rate / alone:.2f}; {summary.processed} of {summary.images} frames, "
                f"model loading excluded: {summary.frames_per_s:.2f} frames/s)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
