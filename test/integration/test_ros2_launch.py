"""End to end, as a ROS user runs it: `colcon build` this package, then `ros2 launch` / `ros2 run` it.

Only a real install catches what a parsed launch file cannot: console scripts that miss
`lib/savi_ros/`, data files that are not installed, the params file or the packaged model not found
from the install space, remaps and namespace not applied, a node that never gets *active* or does
not stop on Ctrl-C. The workspace is a temporary copy of the repository (the working tree gets no
build output); the ROS 2 environment is the one `make ros-env` prepared (`scripts/ros_env.py`): a
ROS 2 install, or `.venv` with the launch tooling from `../shared/ros2_launch/`. Without either the
tests are skipped with the reason.

This test process watches the launched nodes over DDS with its own rclpy context (same
`ROS_DOMAIN_ID`, set per pytest run by test/conftest.py); every launch gets its own `ROS_LOG_DIR`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from test.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "savi_ros"
NODE = "savi_tracker"
SHIPPED_MODEL = ROOT / PACKAGE / "models" / "default"
# What a workspace copy leaves out: VCS, the venv, build outputs, caches, and what the package does
# not install (tests, benchmarks, CI).
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "install",
    "log",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    "runs",
    "demo_out",
    ".whl",
    "test",
    "bench",
    ".ci",
)
STOP_WITHIN_S = 10.0
START_TIMEOUT_S = 90.0  # 2 shared cores: python + torch + rclpy start-up under load
LAUNCH_FILE = "tracker.launch.py"
DEMO_ARGS = ["demo:=true"]

STARTED = re.compile(r"\[INFO\] \[(?P<name>[\w.-]+)\]: process started with pid \[(?P<pid>\d+)\]")
FINISHED = re.compile(r"\[INFO\] \[(?P<name>[\w.-]+)\]: process has finished cleanly \[pid (?P<pid>\d+)\]")
DIED = re.compile(r"\[ERROR\] \[(?P<name>[\w.-]+)\]: process has died \[pid (?P<pid>\d+), exit code (?P<code>-?\d+)")
CONFIGURED = re.compile(r"configured: checkpoint (?P<path>\S+) on (?P<device>\S+), mask_source (?P<mask>\w+)")


ros_env = load_script("scripts/ros_env.py")


# ---------------------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Workspace:
    root: Path
    ros: "ros_env.RosEnv"

    @property
    def install(self) -> Path:
        return self.root / "install" / PACKAGE

    def child_env(self, log_dir: Path) -> dict[str, str]:
        """This process's environment minus its ROS set-up, so the shell builds it as a user's would."""
        env = ros_env.clean_env()  # drops the wheels' bootstrap guard with its library path
        for name in ("AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH", "PYTHONPATH"):
            env.pop(name, None)
        log_dir.mkdir(parents=True, exist_ok=True)
        # PYTHONFAULTHANDLER: a process that hangs can be made to print every thread's stack (SIGABRT).
        env.update(
            ROS_LOG_DIR=str(log_dir),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            RCUTILS_COLORIZED_OUTPUT="0",
            PYTHONFAULTHANDLER="1",
        )
        return env

    def shell(self, command: list[str], sourced: bool = True) -> str:
        """A bash script running `command` in a shell that sourced the ROS env (and the workspace)."""
        lines = [self.ros.shell_prefix()]
        if sourced:
            lines.append(f'source "{self.root}/install/setup.bash"')
        lines.append(f"exec {shlex.join(command)}")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def ros():
    ros = ros_env.current()
    if ros is None:
        if ros_env.system_ros() is None and not ros_env.LAUNCH_SOURCES.is_file():
            pytest.skip(
                f"no ROS 2 install ({ros_env.ROS_SETUP_GLOB}) and no launch tooling sources "
                f"({ros_env.LAUNCH_SOURCES}): `ros2 launch` cannot run here"
            )
        pytest.skip("the ROS 2 launch environment is not prepared: run `make ros-env` (`make test` does)")
    return ros


def _importable_in(ros, module: str, env: dict[str, str]) -> bool:
    script = ros.shell_prefix() + f"\nexec python3 -c 'import {module}'"
    return (
        subprocess.run(["bash", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        == 0
    )


@pytest.fixture(scope="module")
def workspace(ros, tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("colcon_ws")
    src = root / "src"
    shutil.copytree(ROOT, src / PACKAGE, ignore=COPY_IGNORE)
    ws = Workspace(root, ros)
    env = ws.child_env(root / "log_build")
    if not _importable_in(ros, "vision_msgs.msg", env):
        # The stand-in interface package carries COLCON_IGNORE (a distro's vision_msgs wins); build it here.
        shutil.copytree(
            ROOT / "interfaces" / "vision_msgs", src / "vision_msgs", ignore=shutil.ignore_patterns("COLCON_IGNORE")
        )
    result = subprocess.run(
        ["bash", "-c", ws.shell(["colcon", "build", "--event-handlers", "console_direct+"], sourced=False)],
        cwd=root,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=600,
    )
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-4000:]}"
    return ws


class Probe:
    """An rclpy node in its own context: watches topics, asks lifecycle state and parameters."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("savi_launch_test_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)

    def spin_until(
        self, condition: Callable[[], bool], timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.1)
        return condition()

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return None
            future = client.call_async(request)
            self.executor.spin_until_future_complete(future, timeout_sec=timeout)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def lifecycle_state(self, node_fqn: str, timeout: float = 5.0) -> Optional[str]:
        from lifecycle_msgs.srv import GetState

        response = self.call(GetState, f"{node_fqn}/get_state", GetState.Request(), timeout)
        return None if response is None else response.current_state.label

    def wait_active(self, node_fqn: str, timeout: float, alive: Callable[[], bool]) -> Optional[str]:
        deadline = time.monotonic() + timeout
        label = None
        while time.monotonic() < deadline and alive():
            label = self.lifecycle_state(node_fqn, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
            if label == "active":
                break
            time.sleep(0.2)
        return label

    def parameters(self, node_fqn: str, names: list[str]) -> dict[str, object]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(GetParameters, f"{node_fqn}/get_parameters", GetParameters.Request(names=names))
        assert response is not None, f"{node_fqn}/get_parameters did not answer"
        return {n: parameter_value_to_python(v) for n, v in zip(names, response.values)}

    def outputs(self, namespace: str) -> "Outputs":
        return Outputs(self, namespace)

    def endpoints(self, topic: str, kind: str) -> set[str]:
        """Fully qualified names of the nodes with `kind` ("publishers"/"subscriptions") on `topic`."""
        infos = getattr(self.node, f"get_{kind}_info_by_topic")(topic)
        return {f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos}


class Outputs:
    """`tracks` and `masks` of one tracker, keyed by image stamp."""

    def __init__(self, probe: Probe, namespace: str) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=50)
        self.tracks: dict[int, set[int]] = {}
        self.masks: dict[int, set[int]] = {}
        self.subs = [
            probe.node.create_subscription(Detection2DArray, f"{namespace}/tracks", self._on_tracks, qos),
            probe.node.create_subscription(Image, f"{namespace}/masks", self._on_masks, qos),
        ]

    @staticmethod
    def _stamp(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _on_tracks(self, msg) -> None:
        self.tracks[self._stamp(msg)] = {int(d.id) for d in msg.detections}

    def _on_masks(self, msg) -> None:
        assert msg.encoding == "16UC1", msg.encoding
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pixels = np.frombuffer(bytes(msg.data), dtype=dtype).reshape(msg.height, msg.step // 2)[:, : msg.width]
        self.masks[self._stamp(msg)] = {int(v) for v in np.unique(pixels) if v}

    def answered(self) -> list[int]:
        """Stamps with both outputs."""
        return [s for s in self.tracks if s in self.masks]

    def frames_with_live_tracks(self) -> list[int]:
        """Stamps whose tracks name live tracks and whose mask paints exactly those ids."""
        return [s for s, ids in self.tracks.items() if ids and self.masks.get(s) and self.masks[s] <= ids]


@pytest.fixture(scope="module")
def probe(ros):
    probe = Probe()
    yield probe
    probe.close()


def _default_sigint() -> None:
    """In the child before exec: SIGINT handled by default and not blocked, whatever the test process did
    (an ignored or blocked signal is inherited, and a shell cannot undo an ignore it was started with; this
    process may ignore SIGINT after in-process code ran `savi_ros.interrupt.shutdown`), so `ros2 launch`
    sees a Ctrl-C as a terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class Launched:
    """A `ros2 ...` command in a sourced shell (bash `exec`s it: signals go to ros2 itself)."""

    def __init__(self, ws: Workspace, command: list[str], name: str) -> None:
        self.log_dir = ws.root / "ros_logs" / name
        self.command = command
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["bash", "-c", ws.shell(command)],
            cwd=ws.root,
            env=ws.child_env(self.log_dir),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, pattern: re.Pattern, timeout: float) -> Optional[re.Match]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.output)
            if match or not self.alive():
                return match or pattern.search(self.output)
            time.sleep(0.1)
        return None

    def interrupt(self, group: bool, within: float = STOP_WITHIN_S) -> tuple[Optional[int], float]:
        """SIGINT to ros2 only (`timeout --foreground -s INT`), or to its whole process group as Ctrl-C in
        a terminal does; returns the exit code (None: still running) and the seconds it took."""
        start = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.monotonic() - start
        if code is None:  # hung: have every process of the group print its threads' stacks for the report
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        return code, seconds

    def kill(self) -> None:
        """Clean-up: whatever is left of this command's own process group."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)

    def describe(self) -> str:
        return f"$ {shlex.join(self.command)}\n{self.output[-6000:]}"


@pytest.fixture
def launch(workspace):
    started: list[Launched] = []

    def start(command: list[str], name: str) -> Launched:
        launched = Launched(workspace, command, name)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.kill()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _params_files(pid: int) -> list[str]:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return [args[i + 1].decode() for i, a in enumerate(args[:-1]) if a == b"--params-file"]


def assert_stops_cleanly(run: Launched, group: bool) -> None:
    """SIGINT: ros2 launch and every process it started exit 0 within STOP_WITHIN_S."""
    started = {m["pid"]: m["name"] for m in STARTED.finditer(run.output)}
    assert started, run.describe()
    code, seconds = run.interrupt(group)
    assert code == 0 and seconds <= STOP_WITHIN_S, (
        f"after SIGINT: exit {code} in {seconds:.1f} s (want 0 within {STOP_WITHIN_S} s)\n{run.describe()}"
    )
    finished = {m["pid"] for m in FINISHED.finditer(run.output)}
    assert set(started) <= finished, (
        f"not finished cleanly: {[n for p, n in started.items() if p not in finished]}\n{run.describe()}"
    )
    assert not [p for p in started if _pid_alive(int(p))], run.describe()


# ------------------------------------------------------------------------------------------------- tests


def test_colcon_build_installs_what_ros2_launch_needs(workspace):
    install = workspace.install
    for exe in ("savi_tracker", "demo_camera", "demo_detector"):
        path = install / "lib" / PACKAGE / exe
        assert path.is_file() and os.access(path, os.X_OK), f"console script {exe} not in {path.parent}"
    share = install / "share" / PACKAGE
    for rel in (f"launch/{LAUNCH_FILE}", "config/tracker.yaml", "package.xml"):
        assert (share / rel).is_file(), f"{share / rel} not installed"
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    models = list(install.glob(f"lib/python3*/site-packages/{PACKAGE}/models/default/model.safetensors"))
    assert models, "the default model is not installed with the package"
    assert not list((workspace.root / "src" / PACKAGE).glob("*.egg-info")), "colcon wrote into the source copy"


def test_demo_launch_is_active_tracks_and_stops_on_sigint(workspace, probe, launch):
    outputs = probe.outputs("/savi")
    run = launch(["ros2", "launch", PACKAGE, LAUNCH_FILE, *DEMO_ARGS], "demo")
    state = probe.wait_active(f"/savi/{NODE}", START_TIMEOUT_S, run.alive)
    assert state == "active", f"/savi/{NODE} state {state!r}\n{run.describe()}"

    # The installed params file is the one loaded, and `checkpoint: default` is the installed model.
    tracker_pid = next((int(m["pid"]) for m in STARTED.finditer(run.output) if m["name"].startswith(NODE)), None)
    assert tracker_pid is not None, run.describe()
    installed_yaml = str(workspace.install / "share" / PACKAGE / "config" / "tracker.yaml")
    assert installed_yaml in _params_files(tracker_pid), run.describe()
    configured = run.wait_for(CONFIGURED, 10.0)
    assert configured, run.describe()
    model_dir = Path(configured["path"])
    assert model_dir.is_relative_to(workspace.install) and model_dir.name == "default", configured["path"]
    assert not model_dir.is_relative_to(ROOT), configured["path"]

    # Every demo frame the tracker answers has `tracks` and a `masks` painting only those ids; the trained
    # default model's tracks are live.
    assert probe.spin_until(lambda: len(outputs.answered()) >= 5, 60.0, run.alive), (
        f"tracks {len(outputs.tracks)} / masks {len(outputs.masks)} demo frames\n{run.describe()}"
    )
    assert all(outputs.masks[s] <= outputs.tracks[s] for s in outputs.answered()), (outputs.tracks, outputs.masks)
    assert probe.spin_until(lambda: len(outputs.frames_with_live_tracks()) >= 3, 60.0, run.alive), (
        f"{len(outputs.answered())} demo frames answered, none with live tracks\n{run.describe()}"
    )
    tracker = f"/savi/{NODE}"
    assert {tracker} <= probe.endpoints("/savi/image", "subscriptions") & probe.endpoints(
        "/savi/detections", "subscriptions"
    )
    assert {tracker} <= probe.endpoints("/savi/tracks", "publishers") & probe.endpoints("/savi/masks", "publishers")
    assert_stops_cleanly(run, group=True)


def test_launch_arguments_take_effect(workspace, probe, launch, tmp_path):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2D, Detection2DArray

    params_file = tmp_path / "robot.yaml"
    # mask_threshold 0 / min_mask_area 1: every pixel goes to its most likely slot, so even untrained
    # weights give the track a mask; what is checked here is the wiring, not the model.
    params_file.write_text(
        "/**:\n  ros__parameters:\n    lost_after_frames: 7\n    max_tracks: 2\n"
        "    mask_source: decoder\n    device: auto\n    mask_threshold: 0.0\n"
        "    min_mask_area: 1\n"
    )
    ns, image_topic, det_topic = "/robot_7", "/cam7/image_raw", "/det7/boxes"
    outputs = probe.outputs(ns)
    run = launch(
        [
            "ros2",
            "launch",
            PACKAGE,
            LAUNCH_FILE,
            f"namespace:={ns}",
            f"image:={image_topic}",
            f"detections:={det_topic}",
            f"params_file:={params_file}",
            "device:=cpu",
        ],
        "arguments",
    )
    node = f"{ns}/{NODE}"
    state = probe.wait_active(node, START_TIMEOUT_S, run.alive)
    assert state == "active", f"{node} state {state!r}\n{run.describe()}"
    values = probe.parameters(node, ["lost_after_frames", "max_tracks", "device", "mask_source"])
    assert values == {"lost_after_frames": 7, "max_tracks": 2, "device": "cpu", "mask_source": "decoder"}, values

    # The remapped inputs feed the tracker: a frame and its detections, same stamp, on the new names.
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
    image_pub = probe.node.create_publisher(Image, image_topic, qos)
    det_pub = probe.node.create_publisher(Detection2DArray, det_topic, qos)
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[10:30, 20:44] = (230, 40, 40)

    def send(seq: int) -> None:
        image = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=pixels.tobytes())
        image.header.stamp.sec, image.header.frame_id = 1000 + seq, "camera"
        detections = Detection2DArray(header=image.header)
        det = Detection2D(id="5")
        det.bbox.center.position.x, det.bbox.center.position.y = 32.0, 20.0
        det.bbox.size_x, det.bbox.size_y = 24.0, 20.0
        detections.detections.append(det)
        det_pub.publish(detections)
        image_pub.publish(image)

    sent = [0]

    def tracked() -> bool:
        if outputs.frames_with_live_tracks():
            return True
        sent[0] += 1
        if sent[0] % 5 == 0:
            send(sent[0])
        return False

    try:
        assert probe.spin_until(tracked, 60.0, run.alive), (
            f"no tracks on {ns}/tracks for frames sent to {image_topic} + {det_topic}\n{run.describe()}"
        )
        assert 5 in set().union(*outputs.tracks.values()), outputs.tracks
        assert node in probe.endpoints(image_topic, "subscriptions") & probe.endpoints(det_topic, "subscriptions")
        assert node not in probe.endpoints(f"{ns}/image", "subscriptions"), "image was not remapped"
        assert node in probe.endpoints(f"{ns}/tracks", "publishers")
        configured = run.wait_for(CONFIGURED, 10.0)
        assert configured and configured["device"] == "cpu" and configured["mask"] == "decoder", run.describe()
    finally:
        probe.node.destroy_publisher(image_pub)
        probe.node.destroy_publisher(det_pub)
    # Ctrl-C as a terminal sends it, to the process group. SIGINT to `ros2 launch` alone went unhandled
    # in 2 of about 10 runs here: the stack dump showed launch's asyncio loop idle in select() with no
    # handler run, before any of our processes was signalled (the launch tooling, not this package).
    assert_stops_cleanly(run, group=True)


def test_ros2_run_starts_the_node(workspace, probe, launch):
    run = launch(["ros2", "run", PACKAGE, NODE, "--ros-args", "-r", "__ns:=/run_check", "-p", "device:=cpu"], "run")
    state = probe.wait_active(f"/run_check/{NODE}", START_TIMEOUT_S, run.alive)
    assert state == "active", f"/run_check/{NODE} state {state!r}\n{run.describe()}"
    code, seconds = run.interrupt(group=True)  # ros2 run forwards nothing: Ctrl-C reaches the node directly
    assert code == 0 and seconds <= STOP_WITHIN_S, f"exit {code} after {seconds:.1f} s\n{run.describe()}"


def test_a_killed_node_under_respawn_comes_back_and_serves_again(workspace, probe, launch):
    """`respawn:=true`: SIGKILL to the tracker alone (as the kernel's OOM killer sends it); launch starts it
    again after `respawn_delay`, and the new process answers a frame. Then SIGINT to launch alone stops
    everything: a supervisor stops launch, not its children (a terminal's Ctrl-C, which reaches the node too,
    can race launch's shutdown, and ros2 launch then starts the node once more: README, "Supervised")."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    ns = "/respawn_check"
    node = f"{ns}/{NODE}"
    outputs = probe.outputs(ns)
    run = launch(
        [
            "ros2",
            "launch",
            PACKAGE,
            LAUNCH_FILE,
            f"namespace:={ns}",
            "device:=cpu",
            "respawn:=true",
            "respawn_delay:=1.0",
        ],
        "respawn",
    )
    qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
    image_pub = probe.node.create_publisher(Image, f"{ns}/image", qos)
    sent: list[int] = []

    def answers() -> Callable[[], bool]:
        """A condition: the tracker answered a frame sent from now on (a new frame every 2 s until then)."""
        first, polls = len(sent), [0]

        def answered() -> bool:
            if any(s in outputs.tracks and s in outputs.masks for s in sent[first:]):
                return True
            if polls[0] % 20 == 0:
                image = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=bytes(48 * 64 * 3))
                image.header.stamp.sec = 2000 + len(sent)
                image_pub.publish(image)
                sent.append(image.header.stamp.sec * 10**9)
            polls[0] += 1
            return False

        return answered

    def tracker_pids() -> list[int]:
        return [int(m["pid"]) for m in STARTED.finditer(run.output) if m["name"].startswith(NODE)]

    try:
        assert probe.wait_active(node, START_TIMEOUT_S, run.alive) == "active", run.describe()
        assert probe.spin_until(answers(), 60.0, run.alive), f"no answer before the kill\n{run.describe()}"
        [first] = tracker_pids()
        os.kill(first, signal.SIGKILL)
        died = run.wait_for(re.compile(rf"process has died \[pid {first}, exit code -9"), 30.0)
        assert died, run.describe()
        assert probe.spin_until(lambda: len(tracker_pids()) == 2, START_TIMEOUT_S, run.alive), run.describe()
        second = tracker_pids()[1]
        assert second != first and _pid_alive(second) and not _pid_alive(first)
        assert probe.wait_active(node, START_TIMEOUT_S, run.alive) == "active", run.describe()
        assert probe.spin_until(answers(), 60.0, run.alive), f"no answer after the respawn\n{run.describe()}"
    finally:
        probe.node.destroy_publisher(image_pub)
    code, seconds = run.interrupt(group=False)
    assert code == 0 and seconds <= STOP_WITHIN_S, f"exit {code} after {seconds:.1f} s\n{run.describe()}"
    assert not [p for p in tracker_pids() if _pid_alive(p)], run.describe()
    assert len(tracker_pids()) == 2, f"respawned while launch stopped\n{run.describe()}"


def test_missing_checkpoint_exits_non_zero_with_its_message(workspace, launch):
    run = launch(["ros2", "launch", PACKAGE, LAUNCH_FILE, "checkpoint:=/no/such/file"], "bad_checkpoint")
    died = run.wait_for(DIED, START_TIMEOUT_S)
    assert died and died["name"].startswith(NODE) and int(died["code"]) != 0, run.describe()
    assert re.search(rf"\[{NODE}-\d+\] \[ERROR\] .*/no/such/file", run.output), (
        f"the node logged no error naming the checkpoint\n{run.describe()}"
    )
    if run.alive():
        code, _ = run.interrupt(group=False)
        assert code is not None, run.describe()


def test_shipped_default_model_is_trained_and_installed(workspace):
    installed = list(workspace.install.glob(f"lib/python3*/site-packages/{PACKAGE}/models/default/config.json"))
    assert installed and installed[0].read_bytes() == (SHIPPED_MODEL / "config.json").read_bytes()
    assert json.loads(installed[0].read_text())["extra"]["trained"] is True


def test_make_demo_runs_through_the_launch_file_where_it_is_installed(workspace, tmp_path):
    """`run_demo` in a sourced workspace starts the nodes with `ros2 launch` and its parameter file
    reaches all three nodes: the scene size, frame count and checkpoint it asked for are the ones played."""
    out = tmp_path / "demo_out"
    command = [
        "python3",
        "-m",
        "savi_ros.demo.run_demo",
        "--scenes",
        "1",
        "--frames",
        "6",
        "--rate",
        "10",
        "--width",
        "64",
        "--height",
        "48",
        "--device",
        "cpu",
        "--launch",
        "on",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        ["bash", "-c", workspace.shell(command)],
        cwd=tmp_path,
        env=workspace.child_env(tmp_path / "log"),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=300,
    )
    log = (out / "logs" / "launch.log").read_text() if (out / "logs" / "launch.log").is_file() else ""
    assert result.returncode == 0, result.stdout[-3000:] + log[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["started_by"] == "ros2 launch"
    [scene] = metrics["scenes"]
    assert scene["frames_published"] == 6 and scene["frames_with_output"] == 6, metrics
    assert "demo_camera" in log and "demo_detector" in log and NODE in log
