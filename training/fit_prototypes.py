"""Fit a prototype model's few parameters by what the node is scored on: ``python -m training.fit_prototypes
--config training/configs/pretrained_cpu.yaml --out runs/pretrained_fit``.

A prototype model (``savi_core.model.prototypes``) has about ten parameters. Gradient training on the mask
cross-entropy (``training.train``) was measured to lower the temperature until the masks are soft, and the
published label maps (guided edges, ``mask_threshold``) got worse than the untrained matching's (in-family
2D mIoU 72.8 against 75.4, 100 videos). So the shipped parameters are chosen by coordinate search on the
metric itself: each parameter in turn takes the value of its grid that scores best, through the Tracker,
on whole videos of the run's *training* seeds and families (2D and 3D alike); held-out families are never
looked at. Passes over the parameters repeat until one changes nothing (a parameter's best value moves when
another's does: the prior and the temperature trade against each other). It starts from the untrained
matching (or ``--start``, an earlier fit) and writes a checkpoint. ``--init`` starts from a checkpoint's
parameters instead of the untrained ones where the grid does not reach: the projection that
``training.fit_metric`` fitted.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any
from pathlib import Path

import torch

from savi_core.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_config, save_checkpoint
from savi_core.model.config import ConfigError
from savi_core.model.savi import SAVi
from training.config import EvalConfig, load_config
from training.data import build_dataset
from training.evaluate import evaluate


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _softplus_inverse(x: float) -> float:
    return math.log(math.expm1(x))


#: Parameter -> values tried (as the parameter's raw value; a list for a vector parameter); the first is the
#: untrained matching's. Rates are logits, the pool width a softplus argument, the tap weights the fusion's
#: per-scale weights (strides 4, 8, 16; only their ratios matter).
GRID: dict[str, list[float | list[float]]] = {
    "corrector.log_temperature": [math.log(100.0), math.log(50.0), math.log(30.0), math.log(20.0)],
    "corrector.object_rate": [-30.0, _logit(0.03), _logit(0.08), _logit(0.15)],
    "corrector.prior": [0.0, 1.0, 3.0, 5.0, 8.0],
    "initializer.pool_width": [_softplus_inverse(w) for w in (0.3, 0.2, 0.45, 0.15, 0.1)],
    "corrector.background_rate": [-30.0, _logit(0.05), _logit(0.2)],
    "corrector.size_rate": [_logit(0.2), _logit(0.05), _logit(0.5)],
    "corrector.velocity_rate": [_logit(0.5), _logit(0.2), _logit(0.8)],
    "corrector.prior_mass": [2.0, 0.5, 8.0],
    "encoder.tap_weights": [[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [1.0, 1.0, 0.5], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]],
}
#: A pass visits every parameter once; the search stops after a pass that changes nothing, or after this many.
MAX_PASSES = 4


def _get(model: SAVi, name: str) -> float | list[float]:
    module, attribute = name.split(".")
    value = getattr(getattr(model, module), attribute).detach()
    return float(value) if value.dim() == 0 else [float(v) for v in value]


def _set(model: SAVi, name: str, value: float | list[float]) -> None:
    module, attribute = name.split(".")
    tensor = getattr(getattr(model, module), attribute)
    with torch.no_grad():
        tensor.copy_(torch.as_tensor(value, dtype=tensor.dtype).expand_as(tensor))


def _same(a: float | list[float], b: float | list[float]) -> bool:
    return bool(torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)))


def _label(value: float | list[float]) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "[" + ", ".join(f"{v:.2f}" for v in value) + "]"


def fit(
    config: str,
    videos: int,
    out: Path,
    start: dict[str, Any] | None = None,
    frame_size: tuple[int, int] | None = None,
    init: Path | None = None,
) -> dict[str, float | list[float]]:
    """``frame_size`` (height, width) renders the training videos at a camera's size, which the Tracker
    resizes to the model's, as the node and the benchmark do (default: the data section's resolution).
    ``init``: a checkpoint of the same model whose parameters the search starts from (the grid's own are
    then set as usual)."""
    cfg = load_config(config)
    if cfg.model.corrector.kind != "prototype":
        raise ConfigError(f"model.corrector.kind: fitting needs a prototype model, got {cfg.model.corrector.kind!r}")
    unknown = [name for name in start or {} if name not in GRID]
    if unknown:
        raise ValueError(f"--start: {unknown[0]!r} is not a fitted parameter (one of {', '.join(GRID)})")
    data = copy.deepcopy(cfg.data)
    if frame_size is not None:
        data.resolution = frame_size
        data.validate()
    dataset = build_dataset(data, "train")
    dataset.window = None
    physics = [i for i in range(len(dataset)) if getattr(dataset, "is_physics", lambda _: False)(i)]
    flat = [i for i in range(len(dataset)) if i not in set(physics)]
    # Rendered once: every trial scores the same videos, and rendering them was a quarter of a trial.
    groups = [[dataset[i] for i in g[:videos]] for g in (flat, physics) if g]
    model = SAVi(cfg.model)
    model.corrector.make_neutral()
    if init is not None:
        start_model, _ = load_checkpoint(init, device=torch.device("cpu"))
        if start_model.config != cfg.model:
            raise ConfigError(f"--init: {init} holds another model than the config's model section")
        model.load_state_dict(start_model.state_dict())
    model.eval()
    for name, values in GRID.items():
        _set(model, name, values[0])

    def score() -> float:
        means = [
            evaluate(
                model,
                group,
                EvalConfig(num_videos=len(group), mask_source="attention", batch_size=4),
                torch.device("cpu"),
                progress=False,
                identity=False,
            )["methods"]["savi"]["miou"]
            for group in groups
        ]
        return float(sum(means) / len(means))

    if start is not None:
        for name, value in start.items():
            _set(model, name, value)
    begun = time.perf_counter()
    best = score()
    print(f"start: {100 * best:.1f} mIoU ({time.perf_counter() - begun:.0f} s)", flush=True)
    log: list[dict[str, Any]] = [{"start": best, "seconds": time.perf_counter() - begun}]

    def save(passes: int) -> dict[str, float | list[float]]:
        """Write the checkpoint of the values chosen so far (each pass: a long fit cut short keeps its best)."""
        chosen = {name: _get(model, name) for name in GRID}
        fitted = {
            "videos_per_world": videos,
            "frame_size": list(data.resolution),
            "passes": passes,
            "chosen": chosen,
            "log": log,
        }
        save_checkpoint(out, model, extra={"run_config": cfg.to_dict(), "fit": fitted})
        (out / "fit.json").write_text(json.dumps({**fitted, "miou": best}, indent=1) + "\n")
        return chosen

    chosen = save(0)
    for sweep in range(1, MAX_PASSES + 1):
        changed = False
        for name, values in GRID.items():
            current = known = _get(model, name)  # ``known`` scored ``best`` already
            for value in values:
                if _same(value, known):
                    continue
                _set(model, name, value)
                begun = time.perf_counter()
                value_score = score()
                seconds = time.perf_counter() - begun
                print(f"pass {sweep} {name} = {_label(value)}: {100 * value_score:.1f} ({seconds:.0f} s)", flush=True)
                log.append({"pass": sweep, name: value, "miou": value_score, "seconds": seconds})
                if value_score > best:
                    best, current, changed = value_score, value, True
                _set(model, name, current)
        chosen = save(sweep)
        if not changed:
            break
    print(f"chosen {chosen}: {100 * best:.1f} mIoU on {sum(map(len, groups))} training videos", flush=True)
    return chosen


def earlier_fit(path: Path) -> dict[str, Any]:
    """The chosen values of an earlier fit: its ``fit.json``, or the ``config.json`` of a fitted checkpoint
    (a shipped model's, e.g. ``savi_ros/models/v8``)."""
    if path.is_dir():
        return read_checkpoint_config(path)[1]["extra"]["fit"]["chosen"]
    return json.loads(path.read_text())["chosen"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.fit_prototypes", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="run config of a prototype model (its training data)")
    p.add_argument("--videos", type=int, default=10, help="training videos per world (2D, 3D) scored per trial")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument(
        "--start",
        type=Path,
        help="a fit.json or a fitted checkpoint directory: the search starts from its chosen values (else untrained)",
    )
    p.add_argument("--init", type=Path, help="a checkpoint to start from (e.g. training.fit_metric's projection)")
    p.add_argument(
        "--frame-size", help="WxH: score the training videos rendered at this camera size (default: the data's)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        initial = earlier_fit(args.start) if args.start else None
        frame_size = None
        if args.frame_size:
            width, _, height = args.frame_size.partition("x")
            if not (width.isdigit() and height.isdigit()):
                raise ValueError(f"--frame-size: expected WxH, e.g. 320x240, got {args.frame_size!r}")
            frame_size = (int(height), int(width))
        fit(args.config, args.videos, args.out, initial, frame_size, args.init)
    except (ConfigError, CheckpointError, ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"fitted in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
