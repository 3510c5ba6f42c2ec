"""The demo's options (the CLI flags of the same names) and what it needs to know of the checkpoint."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from savi_core.model.checkpoint import CheckpointError, read_checkpoint_config
from savi_core.model.savi import MASK_SOURCES
from savi_core.tracking.tracker_config import TrackerConfig
from savi_ros.demo.camera_node import WORLDS, CameraConfig
from savi_ros.model_store import resolve_checkpoint
from savi_ros.params import NodeOnlyParams

LAUNCH_MODES = ("auto", "on", "off")
CAMERA_OPTIONS = ("width", "height", "rate", "seed", "min_objects", "max_objects", "world")
"""The options that are the demo camera's parameters of the same names (their defaults are its defaults)."""


@dataclass
class DemoOptions:
    """What `run_demo` plays and where it writes; the CLI flags of the same names."""

    scenes: int = 4
    frames: int = CameraConfig.frames_per_scene
    rate: float = CameraConfig.rate
    width: int = CameraConfig.width
    height: int = CameraConfig.height
    seed: int = CameraConfig.seed
    min_objects: int = CameraConfig.min_objects
    max_objects: int = CameraConfig.max_objects
    checkpoint: str = "default"
    mask_source: str = TrackerConfig.mask_source
    device: str = NodeOnlyParams.device
    box_noise: float = 0.0
    drop_prob: float = 0.0
    every_n_frames: int = 0
    shape_classes: bool = True
    world: str = CameraConfig.world
    out: Path = Path("demo_out")
    launch: str = "auto"
    startup_timeout: float = 90.0
    baselines: bool = True

    def __post_init__(self) -> None:
        if self.scenes < 1:
            raise ValueError(f"--scenes must be >= 1, got {self.scenes}")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"--mask-source must be one of {MASK_SOURCES}, got {self.mask_source!r}")
        if self.launch not in LAUNCH_MODES:
            raise ValueError(f"--launch must be one of {LAUNCH_MODES}, got {self.launch!r}")
        if not self.startup_timeout > 0:
            raise ValueError(f"--startup-timeout must be > 0, got {self.startup_timeout}")
        self.camera_config()  # validates sizes, rate, frames, seed and object counts by name

    def camera_config(self) -> CameraConfig:
        same = {name: getattr(self, name) for name in CAMERA_OPTIONS}
        return CameraConfig(num_scenes=self.scenes, frames_per_scene=self.frames, **same)


@dataclass
class CheckpointInfo:
    path: str
    trained: bool | None  # None = the checkpoint does not say
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


def parse_args(argv: list[str] | None = None) -> DemoOptions:
    d = DemoOptions()
    p = argparse.ArgumentParser(
        prog="run_demo", description="the end-to-end demo: tracker node, demo camera and demo detector over DDS"
    )
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
    p.add_argument(
        "--every-n-frames",
        type=int,
        default=d.every_n_frames,
        help="detections also every N frames (0: first frame of each scene only)",
    )
    p.add_argument(
        "--shape-classes",
        action=argparse.BooleanOptionalAction,
        default=d.shape_classes,
        help="detections carry the shape name as class (else 'object')",
    )
    p.add_argument(
        "--world",
        default=d.world,
        choices=WORLDS,
        help="2d: the original generator's scenes; 3d: physics-rendered scenes (savi_scenes.physics3d)",
    )
    p.add_argument("--out", type=Path, default=d.out, help="output folder")
    p.add_argument(
        "--launch",
        default=d.launch,
        choices=LAUNCH_MODES,
        help="start the nodes with the package's launch file (auto: where `ros2 launch` finds an "
        "installed savi_ros), or as three processes",
    )
    p.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=d.baselines,
        help="also score the untrained baselines (feature prototypes, CSRT + GrabCut) on the same scenes",
    )
    p.add_argument("--startup-timeout", type=float, default=d.startup_timeout, help="seconds to wait for the nodes")
    a = p.parse_args(argv)
    try:
        return DemoOptions(**{k: getattr(a, k) for k in asdict(d)})
    except ValueError as error:
        p.error(str(error))
