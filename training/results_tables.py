"""Results tables in the docs are rendered from checked-in results files, never typed by hand.

A document marks each table with ``<!-- results: KIND FILE [FILE ...] -->`` ... ``<!-- end results -->``;
``python -m training.results_tables --write`` renders every marked table from its JSON files (written by
the evaluation and bench scripts) and ``--check`` fails when a document's table differs from its files
(a test runs it), so a number in the docs is always the number a script wrote.

Kinds:
  * ``generalization``: files of ``python -m training.generalization --out``; one row per split, one
    column group (FG-ARI / mIoU / J&F / IDF1) per method of every file, labelled ``method (file's model,
    N videos)``, with ``, first-appearance boxes`` added for files of that protocol (``--boxes``); files that
    record each split's mIoU ceilings add one column per box protocol (a perfect tracker's mIoU when only the
    objects given can be predicted).
  * ``reid``: files of ``bench/bench_reid.py --json``; one row per world and dormancy setting: reappearances
    resumed under the original id and under the object's own id (n/a in files from before that column),
    false revivals, IDF1, ID switches.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.mask_ceiling import CEILING

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (
    "docs/RESULTS.md",
    "savi_ros/models/default/MODEL_CARD.md",
    "savi_ros/models/v7/MODEL_CARD.md",
    "savi_ros/models/v8/MODEL_CARD.md",
)
BLOCK = re.compile(r"(<!-- results: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- end results -->)", re.S)


class ResultsError(ValueError):
    """A marked table cannot be rendered; the message names the document or file."""


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _model_name(results: dict[str, Any]) -> str:
    return Path(results.get("checkpoint", "?")).name


def _protocol(results: dict[str, Any]) -> str:
    """How the objects were given, when not the paper's first-frame boxes (files before the option have none)."""
    boxes = results.get("boxes", "first-frame")
    return "" if boxes == "first-frame" else f", {boxes} boxes"


def _ceiling_label(key: str, results: dict[str, Any]) -> str:
    """A box protocol's ceiling is the data's; the feature-grid one is also the model's (its grid, its mask path)."""
    if key == CEILING:
        return f"mIoU ceiling, {key} ({_model_name(results)}{_protocol(results)})"
    return f"mIoU ceiling, {key} boxes"


def generalization_table(files: list[dict[str, Any]]) -> str:
    """Rows: splits (in the first file's order); cells: FG-ARI / mIoU / J&F / IDF1 per method and file."""
    columns: list[tuple[str, dict[str, Any], str]] = []
    for results in files:
        first = next(iter(results["splits"].values()))
        for method in first["methods"]:
            label = method if method != "savi" else _model_name(results)
            columns.append((f"{label} ({results['num_videos']} videos{_protocol(results)})", results, method))
    ceilings: dict[str, dict[str, Any]] = {}  # protocol -> the first file that has its ceiling
    for results in files:
        for protocol in next(iter(results["splits"].values())).get("ceiling_miou", {}):
            ceilings.setdefault(protocol, results)
    labels = [label for label, _, _ in columns] + [_ceiling_label(p, results) for p, results in ceilings.items()]
    lines = ["| split | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for split in files[0]["splits"]:
        cells = []
        for _, results, method in columns:
            v = results["splits"].get(split, {}).get("methods", {}).get(method)
            cells.append(
                "—" if v is None else " / ".join(_percent(v.get(k)) for k in ("fg_ari", "miou", "j_and_f", "idf1"))
            )
        for protocol, results in ceilings.items():
            entry = results["splits"].get(split)
            cells.append("—" if entry is None else _percent(entry.get("ceiling_miou", {}).get(protocol)))
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reid_table(files: list[dict[str, Any]]) -> str:
    """Rows: each file's worlds, dormancy off then on."""
    lines = [
        "| model | seeds | world | dormancy | resumed | resumed under its own id | false revivals | IDF1 "
        "| ID switches |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for results in files:
        seeds = "{}–{}".format(*results["seeds"])
        for world, modes in results["worlds"].items():
            for mode in ("off", "on"):
                if mode not in modes:
                    continue
                t = modes[mode]
                n = t["reappearances"]
                resumed, own = (
                    "n/a" if key not in t else f"{100 * t[key] / max(n, 1):.0f}% ({t[key]}/{n})"
                    for key in ("resumed", "resumed_own")
                )
                false = "–" if mode == "off" else f"{t['false_revivals']} of {t['revivals']}"
                lines.append(
                    f"| {results['checkpoint']} | {seeds} | {world.upper()} | {mode} | {resumed} | {own} | {false} | "
                    f"{_percent(t['idf1'])} | {t['switches']} |"
                )
    return "\n".join(lines) + "\n"


RENDERERS = {"generalization": generalization_table, "reid": reid_table}


def render_document(text: str, base: Path) -> str:
    """``text`` with every marked table rendered from its files (paths relative to the repository root)."""

    def render(match: re.Match) -> str:
        kind, *names = match.group("spec").split()
        if kind not in RENDERERS:
            raise ResultsError(f"unknown results kind {kind!r} (known: {sorted(RENDERERS)})")
        if not names:
            raise ResultsError(f"results block {kind!r} names no file")
        files = []
        for name in names:
            path = base / name
            try:
                files.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as exc:
                raise ResultsError(f"{name}: {exc}") from exc
        return match.group(1) + RENDERERS[kind](files) + match.group(4)

    return BLOCK.sub(render, text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.results_tables", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="re-render the marked tables in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when a document's table is stale")
    args = p.parse_args(argv)
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            rendered = render_document(text, ROOT)
        except ResultsError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        if rendered != text:
            stale.append(name)
            if args.write:
                path.write_text(rendered, encoding="utf-8")
    if args.check and stale:
        print(
            "stale results tables (run python -m training.results_tables --write): " + ", ".join(stale), file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
