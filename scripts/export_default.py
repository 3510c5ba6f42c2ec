"""Ship a trained checkpoint as the package's default model, with its model card.

Copies ``model.safetensors`` + ``config.json`` (marking it ``trained: true``) into
``savi_ros/models/default/`` and writes ``MODEL_CARD.md`` from the evaluation JSON files that
``make train-default`` produced (and the generalization benchmark's, when there). Usage:
``python scripts/export_default.py --checkpoint runs/synthetic_cpu --eval-dir runs/synthetic_cpu/eval``
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from savi_core.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint  # noqa: E402
from training.state import latest_checkpoint  # noqa: E402

MAX_BYTES = 10 * 1024 * 1024
EVALS = [  # (file stem, what it measures)
    ("base", "64x64 input (the model resolution)"),
    ("scale2", "128x128 input (2x), resized by the Tracker's path"),
    ("scale4", "256x256 input (4x), resized by the Tracker's path"),
    ("noise10", "64x64 input, box noise sigma = 10% of the object size"),
    ("points", "64x64 input, first-frame points (centres of mass) instead of boxes"),
    ("decoder", "64x64 input, decoder masks (`mask_source: decoder`, the paper's)"),
]
DOCS = ROOT / "docs"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _data_line(run: dict, config: str) -> str:
    """What the model was trained on, from the run config stored in the checkpoint."""
    data, train = run.get("data", {}), run.get("train", {})
    if not data:
        return f"- Data: see `{config}`."
    height, width = data["resolution"]
    burn_in = data.get("burn_in", 0)
    warm = f" (after up to {burn_in} gradient-free burn-in frames on half of the steps)" if burn_in else ""
    target = "flow-RGB" if data["target"] == "flow" else data["target"]
    resample = train.get("camera_resample", 0.0)
    camera = (f", {resample:.0%} of the videos resampled as if filmed up to "
              f"{train.get('camera_resample_max_scale')}x larger and resized by the Tracker" if resample else "")
    points = train.get("point_share", 0.0)
    camera += f", {points:.0%} of the objects prompted by a point (centre of mass) instead of their box" if points else ""
    options = data.get("options") or {}
    worlds = ""
    if options:
        share = float(options.get("physics_share", 0.0))
        scene = "; ".join(f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
                          for key, value in options.items() if key not in ("physics", "physics_share", "cache_dir"))
        worlds = (f"; the 2D generator's options changed from its defaults: {scene}"
                  + (f"; and {share:.0%} 3D physics scenes ({options.get('physics', {})})" if share else ""))
    return (f"- Data: `savi_scenes` synthetic videos, {height}x{width}, {data['min_objects']}-"
            f"{data['max_objects']} objects, {data['window']}-frame windows{warm}{camera}, {target} target, "
            f"batch {train.get('batch_size')}{worlds}.")


def model_card(meta: dict, evals: dict[str, dict], training: dict, configs: list[str],
               generalization: dict | None = None) -> str:
    config = configs[-1]
    prompts = "boxes and points" if meta["model"]["initializer"].get("points") else "boxes"
    commands = " then ".join(f"`python -m training.train --config {c}`" for c in configs)
    lines = [
        f"# Default model: SAVi conditioned on {prompts}, on synthetic scenes (CPU-trained)",
        "",
        "Shipped as `checkpoint: default` of the `savi_tracker` node and used by `make demo`.",
        "Reproduce from scratch with `make train-default` (fixed seed; the same command wrote this card).",
        "",
        "## Training",
        f"- Commands: {commands} (each stage starts from the previous one's weights; steps of the last: "
        f"{training.get('step')}); each config's header says why.",
        _data_line(meta.get("extra", {}).get("run_config", {}), config),
        "- Loss: the paper's flow reconstruction + auxiliary cross-entropy of the decoder masks and of the",
        "  corrector attention against the generator's ground truth (weights in the config; its header says why).",
        f"- Wall time on the 2-core CPU: {training.get('minutes', 'n/a')} min.",
        "",
        "## Evaluation (held-out seeds, 24 frames, first frame skipped, paper A.8 protocol, through the Tracker)",
        "",
        "Scenes of the original generator (other seeds than training). Masks from the corrector attention",
        "(the node's default `mask_source: attention`) unless the row says decoder.",
        "",
        "| input | method | FG-ARI | mIoU |",
        "|---|---|---|---|",
    ]
    for stem, label in EVALS:
        if stem not in evals:
            continue
        for method, values in evals[stem]["methods"].items():
            lines.append(f"| {label} | {method} | {_pct(values.get('fg_ari'))} | {_pct(values.get('miou'))} |")
    any_eval = next(iter(evals.values()), None)
    if any_eval is not None:
        lines += ["", f"{any_eval['num_videos']} videos; commands in `scripts/train_default.sh`. Per-frame curves and",
                  "the loss curve: `docs/default_model_per_frame.png`, `docs/default_model_loss.png` in the repository."]
    if generalization:
        lines += ["", "## Worlds it was not trained on (`python -m training.generalization`)", "",
                  f"{generalization['num_videos']} videos per split; each held-out split differs from the training "
                  "families in one axis (training/configs/generalization.yaml).", "",
                  "| split | method | FG-ARI | mIoU | IDF1 | ID switches / 100 object-frames |", "|---|---|---|---|---|---|"]
        for split, entry in generalization["splits"].items():
            for method, v in entry["methods"].items():
                switches = v.get("id_switches_per_100")
                lines.append(f"| {split} | {method} | {_pct(v.get('fg_ari'))} | {_pct(v.get('miou'))} | "
                             f"{_pct(v.get('idf1'))} | {'n/a' if switches is None else f'{switches:.2f}'} |")
    lines += ["", f"Model config: `{json.dumps(meta['model'])}`", ""]
    return "\n".join(lines)


def plot_loss(log: Path, path: Path) -> None:
    """Training loss and reconstruction MSE against the step, from the run's metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    fig, (ax_loss, ax_mse) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(steps, [r["loss"] for r in records])
    ax_loss.set(xlabel="step", ylabel="loss (sum over clip)", yscale="log", title="training loss")
    ax_mse.plot(steps, [r["mse"] for r in records])
    ax_mse.set(xlabel="step", ylabel="MSE", yscale="log", title="flow reconstruction MSE")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="training --out directory or a step directory")
    parser.add_argument("--eval-dir", required=True, help="folder with <stem>/metrics.json from evaluate")
    parser.add_argument("--minutes", type=float, help="training wall time to record")
    parser.add_argument("--dest", default=str(ROOT / "savi_ros" / "models" / "default"))
    parser.add_argument("--config", nargs="+", default=["training/configs/synthetic_cpu.yaml"],
                        help="the training configs in the order they ran, for the card")
    args = parser.parse_args()
    source = Path(args.checkpoint)
    step_dir = latest_checkpoint(source) if (source / "checkpoints").is_dir() else source
    if step_dir is None:
        print(f"export_default: no checkpoint under {source}", file=sys.stderr)
        return 1
    _, meta = load_checkpoint(step_dir)  # validates everything before we overwrite the shipped model
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    weights = step_dir / WEIGHTS_FILE
    if weights.stat().st_size > MAX_BYTES:
        print(f"export_default: {weights} is larger than 10 MB", file=sys.stderr)
        return 1
    evals = {}
    for stem, _ in EVALS:
        path = Path(args.eval_dir) / stem / "metrics.json"
        if path.is_file():
            evals[stem] = json.loads(path.read_text())
    training = {"step": evals["base"]["step"] if "base" in evals else None,
                "minutes": None if args.minutes is None else round(args.minutes)}
    generalization_path = Path(args.eval_dir) / "generalization" / "generalization.json"
    generalization = json.loads(generalization_path.read_text()) if generalization_path.is_file() else None
    meta["extra"] = {**meta.get("extra", {}), "trained": True, "training_config": args.config[-1],
                     "metrics": {stem: {m: {k: v[k] for k in ("fg_ari", "miou") if k in v}
                                        for m, v in e["methods"].items()} for stem, e in evals.items()}}
    shutil.copyfile(weights, dest / WEIGHTS_FILE)
    (dest / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (dest / "MODEL_CARD.md").write_text(model_card(meta, evals, training, args.config, generalization))
    load_checkpoint(dest)  # what ships must load
    if "base" in evals:
        shutil.copyfile(Path(args.eval_dir) / "base" / "per_frame.png", DOCS / "default_model_per_frame.png")
    log = step_dir.parents[1] / "metrics.jsonl"
    if log.is_file():
        plot_loss(log, DOCS / "default_model_loss.png")
    print(f"exported {step_dir} -> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
