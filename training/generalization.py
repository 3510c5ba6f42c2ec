"""Generalization benchmark: in-family and held-out-family scores side by side.

``python -m training.generalization --checkpoint RUN_OR_STEP_DIR [--spec training/configs/generalization.yaml]``

The training families are the run's own (``data.options`` of its run config; a run without them was
trained on the original generator's families). The spec names held-out families per axis; each
held-out split is the training split with that one axis replaced by its held-out families, so a
held-out row differs from the in-family row in that axis only. The 3D family and the 2D generator are
worlds of their own: for a model that never saw one, that whole family is held out. Every split is
scored through the Tracker (what the node publishes), beside the baselines, with identity metrics and J&F;
the untrained feature-prototype baseline is scored too unless ``--no-prototype-baseline`` (it is cheap, and
the floor a pretrained model must clear). ``--boxes first-appearance`` gives every method each later
object's box on the frame it appears instead of frame 0's boxes only (docs/TRAINING.md, "Evaluation"); every
split records both protocols' mIoU ceiling.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from savi_core.model.checkpoint import CheckpointError, load_checkpoint
from savi_core.model.config import ConfigError
from savi_core.device import resolve_device
from savi_core.numerics import flush_denormals
from savi_scenes.generator import ALL_BACKGROUNDS, ALL_TEXTURES, SceneConfig
from savi_scenes.physics3d import FLOOR_FAMILIES, OBJECT_FAMILIES, PhysicsSceneConfig
from savi_scenes.shapes import SHAPES
from savi_core.model.savi import MASK_SOURCES
from savi_core.tracking.tracker_config import TrackerConfig
from training.config import EvalConfig, config_from_dict, load_config
from training.data import build_dataset
from training.evaluate import (
    BOX_PROTOCOLS,
    MIN_APPEARANCE_AREA,
    add_tracker_option,
    evaluate,
    parse_tracker_params,
    resolve_checkpoint,
)

AXES_2D = {"shapes": SHAPES, "backgrounds": ALL_BACKGROUNDS, "textures": ALL_TEXTURES}
AXES_3D = {"objects": OBJECT_FAMILIES, "floors": FLOOR_FAMILIES}
DEFAULT_SPEC = Path(__file__).resolve().parent / "configs" / "generalization.yaml"


def training_families(options: dict[str, Any]) -> dict[str, Any]:
    """The families a run trained on, with the generators' defaults filled in; ``physics`` is None when
    the run saw no 3D scenes, and the 2D axes are empty when it saw only 3D ones (``physics_share`` 1)."""
    share = float(options.get("physics_share", 0.0))
    defaults_2d = SceneConfig()
    families: dict[str, Any] = {
        axis: tuple(options.get(axis, getattr(defaults_2d, axis))) if share < 1.0 else () for axis in AXES_2D
    }
    families["saw_2d"] = share < 1.0
    if share > 0:
        physics = options.get("physics") or {}
        defaults_3d = PhysicsSceneConfig()
        families["physics"] = {axis: tuple(physics.get(axis, getattr(defaults_3d, axis))) for axis in AXES_3D}
    else:
        families["physics"] = None
    return families


def validate_spec(spec: Any, train: dict[str, Any]) -> dict[str, dict[str, tuple[str, ...]]]:
    """``held_out: {name: {axis: [families]}}`` checked against the training families; errors name the field."""
    if not isinstance(spec, dict) or not isinstance(spec.get("held_out"), dict) or not spec["held_out"]:
        raise ConfigError("held_out: must be a non-empty mapping of split name -> {axis: [families]}")
    for axis in AXES_2D:
        if train["saw_2d"] and not train[axis]:
            raise ConfigError(f"data.options.{axis}: the training split is empty")
    if train["physics"] is not None:
        for axis in AXES_3D:
            if not train["physics"][axis]:
                raise ConfigError(f"data.options.physics.{axis}: the training split is empty")
    splits: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, axes in spec["held_out"].items():
        field = f"held_out.{name}"
        if not isinstance(axes, dict) or len(axes) != 1:
            raise ConfigError(f"{field}: must hold exactly one axis, e.g. {{backgrounds: [photo]}}")
        ((axis, families),) = axes.items()
        known = AXES_2D.get(axis) or AXES_3D.get(axis)
        if known is None:
            raise ConfigError(f"{field}.{axis}: unknown axis (known: {sorted(AXES_2D) + sorted(AXES_3D)})")
        families = tuple(families or ())
        if not families:
            raise ConfigError(f"{field}.{axis}: names no family")
        for family in families:
            if family not in known:
                raise ConfigError(f"{field}.{axis}: unknown family {family!r} (known: {known})")
            trained = train[axis] if axis in AXES_2D else (train["physics"] or {}).get(axis, ())
            if family in trained:
                raise ConfigError(f"{field}.{axis}: {family!r} is also a training family")
        splits[name] = {axis: families}
    return splits


def split_options(
    base: dict[str, Any], train: dict[str, Any], held_out: dict[str, dict[str, tuple[str, ...]]]
) -> dict[str, dict[str, Any]]:
    """``data.options`` of every split: in-family 2D and 3D (or a whole family the run never saw, held
    out, with its generator's default families), then each held-out split."""
    two_d = {k: v for k, v in base.items() if k not in ("physics", "physics_share", "cache_dir")}
    if train["saw_2d"]:
        two_d.update({axis: list(train[axis]) for axis in AXES_2D})
    else:
        defaults_2d = SceneConfig()
        two_d.update({axis: list(getattr(defaults_2d, axis)) for axis in AXES_2D})
    physics = {k: v for k, v in (base.get("physics") or {}).items()}
    if train["physics"] is not None:
        physics.update({axis: list(train["physics"][axis]) for axis in AXES_3D})
    out = {"in-family 2D" if train["saw_2d"] else "2D family (held out)": {**two_d, "physics_share": 0.0}}
    out["in-family 3D" if train["physics"] is not None else "3D family (held out)"] = {
        **two_d,
        "physics_share": 1.0,
        "physics": physics,
    }
    for name, axes in held_out.items():
        ((axis, families),) = axes.items()
        if axis in AXES_2D:
            out[f"held-out {name}"] = {**two_d, axis: list(families), "physics_share": 0.0}
        else:
            out[f"held-out {name}"] = {**two_d, "physics_share": 1.0, "physics": {**physics, axis: list(families)}}
    return out


def run(
    checkpoint: str | Path,
    spec_path: str | Path,
    num_videos: int,
    baselines: bool,
    device: str,
    out: Path | None,
    mask_source: str = TrackerConfig.mask_source,
    families_from: str | Path | None = None,
    points: bool = False,
    frame_size: tuple[int, int] | None = None,
    tracker_params: dict[str, Any] | None = None,
    prototype_baseline: bool = True,
    scene_cache: str | Path | None = None,
    boxes: str = "first-frame",
) -> dict[str, Any]:
    """Score every split. ``families_from`` (a run config YAML) takes the training families and data
    settings from another run, to compare two models on the very same videos. ``points`` adds the row
    ``savi_points``: the same model and videos prompted by first-frame points instead of boxes.
    ``frame_size`` (height, width) renders every split at a camera's size, which the Tracker resizes to
    the model's (the generators' random draws depend on the size: other scenes of the same families).
    ``tracker_params`` override the node's default Tracker parameters. ``scene_cache`` keeps the generated
    videos in that folder (keyed by generator, families, size and seed), so the next model scored there
    reads the very same videos instead of rendering them again. ``boxes`` is the protocol
    (``evaluate.BOX_PROTOCOLS``: first-frame, or first-appearance); every split also records both protocols'
    ``ceiling_miou`` (the mIoU of a perfect tracker that can predict only the objects given)."""
    if points and boxes != "first-frame":
        raise ValueError("--points prompts the objects on the first frame only: use it with --boxes first-frame")
    step_dir = resolve_checkpoint(checkpoint)
    model, meta = load_checkpoint(step_dir, device=resolve_device(device))
    if families_from is not None:
        cfg = load_config(families_from)
    else:
        run_config = meta.get("extra", {}).get("run_config")
        if run_config is None:
            raise ConfigError(
                f"{step_dir}: the checkpoint holds no run config, so its training families are "
                "unknown (pass --families-from)"
            )
        cfg = config_from_dict(run_config)
    if cfg.data.kind != "synthetic":
        raise ConfigError(f"data.kind: the benchmark generates scenes; this run trained on {cfg.data.kind!r}")
    train = training_families(cfg.data.options)
    held_out = validate_spec(yaml.safe_load(Path(spec_path).read_text()), train)
    eval_cfg = EvalConfig(num_videos=num_videos, mask_source=mask_source, batch_size=cfg.eval.batch_size)
    results: dict[str, Any] = {
        "checkpoint": str(step_dir),
        "num_videos": num_videos,
        "frame_size": list(frame_size or cfg.data.resolution),
        "tracker": tracker_params or {},
        "boxes": boxes,
        "min_appearance_area": MIN_APPEARANCE_AREA,
        "training_families": train,
        "splits": {},
    }
    for name, options in split_options(cfg.data.options, train, held_out).items():
        data = copy.deepcopy(cfg.data)
        data.options, data.eval_num_videos = options, num_videos
        if scene_cache is not None:
            data.options = {**options, "cache_dir": str(scene_cache)}
        if frame_size is not None:
            data.resolution = tuple(frame_size)
        data.validate()
        dataset = build_dataset(data, "eval")
        scores = evaluate(
            model,
            dataset,
            eval_cfg,
            resolve_device(device),
            baselines=baselines,
            progress=sys.stderr.isatty(),
            tracker_params=tracker_params,
            prototype_baseline=prototype_baseline,
            boxes=boxes,
        )
        if points:
            scores["methods"]["savi_points"] = evaluate(
                model,
                dataset,
                eval_cfg,
                resolve_device(device),
                progress=sys.stderr.isatty(),
                prompt="points",
                tracker_params=tracker_params,
            )["methods"]["savi"]
        results["splits"][name] = {
            "options": options,
            "ceiling_miou": scores["ceiling_miou"],
            "methods": scores["methods"],
        }
        print(
            f"{name}: "
            + ", ".join(f"{m} {100 * v['fg_ari']:.1f}/{100 * v['miou']:.1f}" for m, v in scores["methods"].items())
            + "; mIoU ceiling "
            + ", ".join(f"{p} {100 * v:.1f}" for p, v in scores["ceiling_miou"].items() if v is not None),
            flush=True,
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "generalization.json").write_text(json.dumps(results, indent=1, default=list) + "\n")
    return results


def format_results(results: dict[str, Any]) -> str:
    """One row per split and method: FG-ARI, mIoU, DAVIS J&F, IDF1 (percent), ID switches per 100
    object-frames, ms/frame."""

    def cell(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
        return "n/a" if value is None else f"{scale * value:.{digits}f}"

    lines = [
        f"boxes: {results.get('boxes', 'first-frame')}",
        f"{'split':<28}{'method':<17}{'FG-ARI':>7}{'mIoU':>7}{'J&F':>7}{'IDF1':>7}{'IDsw%':>7}{'ms/fr':>7}",
    ]
    for split, entry in results["splits"].items():
        for protocol, value in entry.get("ceiling_miou", {}).items():
            lines.append(f"{split:<28}{'ceiling ' + protocol[:9]:<17}{'':>7}{cell(value):>7}")
        for method, v in entry["methods"].items():
            lines.append(
                f"{split:<28}{method:<17}{cell(v.get('fg_ari')):>7}{cell(v.get('miou')):>7}"
                f"{cell(v.get('j_and_f')):>7}{cell(v.get('idf1')):>7}"
                f"{cell(v.get('id_switches_per_100'), 1.0, 2):>7}{cell(v.get('ms_per_frame'), 1.0):>7}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    flush_denormals()
    p = argparse.ArgumentParser(prog="python -m training.generalization", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint step directory, or a training --out directory")
    p.add_argument("--spec", default=str(DEFAULT_SPEC), help="held-out families (YAML)")
    p.add_argument("--num-videos", type=int, default=100, help="videos per split")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also the static-box, flow k-means, CSRT box and CSRT + GrabCut baselines",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--mask-source",
        choices=MASK_SOURCES,
        default=TrackerConfig.mask_source,
        help="the Tracker's mask source (default: the node's)",
    )
    p.add_argument("--out", type=Path, help="write generalization.json here")
    p.add_argument(
        "--families-from",
        help="a run config YAML whose training families define the splits "
        "(default: the checkpoint's own), to score two models on the same videos",
    )
    p.add_argument(
        "--points",
        action="store_true",
        help="also score the model prompted by first-frame points (centres of mass) instead of boxes",
    )
    p.add_argument(
        "--frame-size",
        metavar="WxH",
        help="render the scenes at this camera size (e.g. 320x240); the Tracker resizes them to the model's resolution",
    )
    add_tracker_option(p)
    p.add_argument(
        "--prototype-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score the untrained feature-prototype model through the Tracker",
    )
    p.add_argument(
        "--scene-cache",
        type=Path,
        help="keep the generated videos here, so that several models are scored on the same videos "
        "without rendering them again",
    )
    p.add_argument(
        "--boxes",
        choices=BOX_PROTOCOLS,
        default="first-frame",
        help="first-frame: the objects' boxes on frame 0 only (the paper's protocol); first-appearance: also "
        "each later object's box on the first frame it shows (YouTube-VOS style; docs/TRAINING.md); "
        "first-appearance-detector: "
        "and on that frame every visible object's box too (a detector firing then)",
    )
    args = p.parse_args(argv)
    try:
        frame_size = None
        if args.frame_size:
            width, _, height = args.frame_size.partition("x")
            if not (width.isdigit() and height.isdigit() and int(width) >= 8 and int(height) >= 8):
                raise ValueError(f"--frame-size: expected WxH with both at least 8, got {args.frame_size!r}")
            frame_size = (int(height), int(width))
        results = run(
            args.checkpoint,
            args.spec,
            args.num_videos,
            args.baselines,
            args.device,
            args.out,
            args.mask_source,
            args.families_from,
            args.points,
            frame_size,
            parse_tracker_params(args.tracker),
            args.prototype_baseline,
            args.scene_cache,
            args.boxes,
        )
    except (CheckpointError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
