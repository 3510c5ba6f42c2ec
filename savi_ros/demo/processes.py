"""The demo's child processes and their parameters: the three nodes started one by one, or the
package's launch file where ROS 2's `ros2 launch` and an installed savi_ros exist."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

if TYPE_CHECKING:
    from savi_ros.demo.options import DemoOptions

LAUNCH_FILE = "tracker.launch.py"


def tracker_params(opts: DemoOptions) -> dict[str, Any]:
    return {"checkpoint": opts.checkpoint, "mask_source": opts.mask_source, "device": opts.device}


def detector_params(opts: DemoOptions) -> dict[str, Any]:
    return {
        "box_noise": float(opts.box_noise),
        "drop_prob": float(opts.drop_prob),
        "every_n_frames": opts.every_n_frames,
        "use_shape_classes": opts.shape_classes,
    }


def camera_params(opts: DemoOptions) -> dict[str, Any]:
    """The camera plays once the tracker subscribes to images and both the detector and the demo's
    recorder to the ground truth."""
    cam = opts.camera_config()
    names = ("width", "height", "rate", "num_scenes", "frames_per_scene", "seed", "min_objects", "max_objects", "world")
    return {
        **{name: getattr(cam, name) for name in names},
        "min_image_subscribers": 1,
        "min_ground_truth_subscribers": 2,
    }


def ros_args(params: dict[str, Any]) -> list[str]:
    return [
        arg
        for name, value in params.items()
        for arg in ("-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}")
    ]


def write_launch_params(opts: DemoOptions, path: Path) -> Path:
    """One ROS parameter file for the launch file's three nodes (``params_file`` and ``demo_params``)."""
    sections = {
        "savi_tracker": tracker_params(opts),
        "demo_camera": camera_params(opts),
        "demo_detector": detector_params(opts),
    }
    path.write_text(
        yaml.safe_dump({f"/**/{node}": {"ros__parameters": values} for node, values in sections.items()}),
        encoding="utf-8",
    )
    return path


def launch_available() -> bool:
    """True where `ros2 launch` can find an installed savi_ros (a sourced ROS 2 + colcon install)."""
    if shutil.which("ros2") is None:
        return False
    try:
        found = subprocess.run(["ros2", "pkg", "prefix", "savi_ros"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0


class Processes:
    """The demo's child processes, each with its log file; stopped with SIGINT (then harder)."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env = log_dir, env
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    def start(self, name: str, module: str, namespace: str, args: list[str]) -> subprocess.Popen:
        """A node of this package in this Python, in ``namespace``, with ROS arguments ``args``."""
        return self.start_command(name, [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:={namespace}", *args])

    def start_command(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w", encoding="utf-8")
        self._logs.append(log)
        # A new session: a Ctrl-C in the terminal reaches only this orchestrator, which then
        # stops each child once (nodes that get SIGINT twice may not shut down cleanly).
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and name != "camera":
                raise RuntimeError(f"the {name} process exited early with code {proc.returncode}:\n" + self.tail(name))

    def tail(self, name: str, lines: int = 25) -> str:
        text = (self.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop_all(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGINT to each child once; what has not exited by ``timeout`` (ros2 launch escalates to its own
        children within about 10 s) is killed with its whole session, so no node it started outlives the demo
        (an orphaned tracker or detector would answer the next demo's camera on the same topics)."""
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
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its session: the nodes ros2 launch started
            except ProcessLookupError:
                pass
        for log in self._logs:
            log.close()
        return {name: proc.returncode for name, proc in self.procs.items()}


def wait_for(what: str, condition: Callable[[], bool], timeout: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
