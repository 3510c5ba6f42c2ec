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

This module is the command line; the work is in `savi_ros.bag_track` (reading and tracking),
`savi_ros.bag_write` (writing bags, a synthetic one) and `savi_ros.bag_types` (message types without ROS).
"""

from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C during the imports below exits quietly
    from savi_ros.launcher import quiet_sigint

    quiet_sigint()

import argparse
import sys
from pathlib import Path
from typing import Optional

from savi_ros import params
from savi_ros.bag_track import Summary, track_bag
from savi_ros.bag_types import STORAGES, BagError, typestore
from savi_ros.bag_write import synthetic_bag, write_bag
from savi_ros.model_store import ModelLoadError

__all__ = ["STORAGES", "BagError", "Summary", "main", "synthetic_bag", "track_bag", "typestore", "write_bag"]


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
