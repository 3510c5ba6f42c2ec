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

import json
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2

from savi_ros.demo.options import DemoOptions, inspect_checkpoint, parse_args
from savi_ros.demo.processes import (
    LAUNCH_FILE,
    Processes,
    camera_params,
    detector_params,
    launch_available,
    ros_args,
    tracker_params,
    wait_for,
    write_launch_params,
)
from savi_ros.demo.recorder import Recorder
from savi_ros.demo.scoring import baseline_scores, evaluate, print_table, write_video

NAMESPACE = "/savi"
UNTRAINED_BANNER = """
##########################################################################
#  UNTRAINED WEIGHTS: this checkpoint says its weights were never         #
#  trained (random). The masks and scores below show that the pipeline    #
#  runs, not what SAVi can do. Train a model and pass --checkpoint PATH.  #
##########################################################################
"""


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

    use_launch = opts.launch == "on" or (opts.launch == "auto" and launch_available())
    recorder = Recorder(NAMESPACE)
    procs = Processes(out / "logs", dict(os.environ))
    codes: dict[str, int | None] = {}
    try:
        if use_launch:
            params_file = write_launch_params(opts, out / "demo_params.yaml")
            print(
                f"starting the nodes with ros2 launch savi_ros {LAUNCH_FILE} demo:=true (log: demo_out/logs/launch.log)"
            )
            procs.start_command(
                "launch",
                [
                    "ros2",
                    "launch",
                    "savi_ros",
                    LAUNCH_FILE,
                    "demo:=true",
                    f"namespace:={NAMESPACE.strip('/')}",
                    f"params_file:={params_file}",
                    f"demo_params:={params_file}",
                ],
            )
        else:
            procs.start("tracker", "savi_ros.tracker_node", NAMESPACE, ros_args(tracker_params(opts)))
            procs.start("detector", "savi_ros.demo.detector_node", NAMESPACE, ros_args(detector_params(opts)))
        wait_for(
            "the tracker node to come up (see demo_out/logs/)",
            lambda: (
                recorder.count("pub", "masks") > 0
                and recorder.count("pub", "tracks") > 0
                and recorder.count("sub", "image") > 0
                and recorder.count("sub", "detections") > 0
            ),
            opts.startup_timeout,
            procs,
        )
        wait_for("the tracker's reset service", lambda: recorder.has_service("reset"), opts.startup_timeout, procs)
        wait_for("the tracker to become active", recorder.tracker_active, opts.startup_timeout, procs)
        wait_for("the detector node", lambda: recorder.count("pub", "detections") > 0, opts.startup_timeout, procs)
        # The camera plays once the detector and this recorder subscribe to its ground truth, which the
        # recorder does last, after its output subscriptions.
        recorder.subscribe_outputs()
        print(
            f"nodes up after {time.monotonic() - started:.1f} s; playing {opts.scenes} scenes of "
            f"{opts.frames} frames at {opts.rate:g} Hz ({opts.width}x{opts.height})"
        )
        play_time = opts.scenes * (opts.frames / opts.rate + 3.0) + 30.0
        last_frame = (opts.scenes - 1, opts.frames - 1)
        if use_launch:
            wait_for("the camera's last frame", lambda: recorder.saw_frame(*last_frame), play_time, procs)
        else:
            camera = procs.start("camera", "savi_ros.demo.camera_node", NAMESPACE, ros_args(camera_params(opts)))
            wait_for("the camera to finish its scenes", lambda: camera.poll() is not None, play_time, procs)
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
    if opts.baselines:
        metrics["baselines"] = baseline_scores(opts, [s["seed"] for s in metrics["scenes"]])
    metrics.update(
        {
            "checkpoint": opts.checkpoint,
            "checkpoint_path": ckpt.path,
            "trained": ckpt.trained,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
            "started_by": "ros2 launch" if use_launch else "processes",
            "exit_codes": codes,
            "runtime_s": round(time.monotonic() - started, 1),
        }
    )
    write_video(out / "overlay.mp4", frames, opts.rate)
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print_table(metrics)
    if untrained:
        print("(weights are UNTRAINED: the numbers above are those of a random model)")
    return metrics


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
