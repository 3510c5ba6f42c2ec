"""Docs tables come from results files: rendering, staleness, and the repository's own docs."""

import json

import pytest

from training.mask_ceiling import CEILING
from training.results_tables import ResultsError, main, render_document


def results(model: str, n: int, miou: float) -> dict:
    scores = {"fg_ari": 0.9, "miou": miou, "j_and_f": 0.5, "idf1": None}
    return {
        "checkpoint": f"x/{model}",
        "num_videos": n,
        "splits": {
            "in-family 2D": {"methods": {"savi": scores, "feature_prototype": scores}},
            "held-out shape": {"methods": {"savi": scores}},
        },
    }


def test_marked_table_is_rendered_from_its_files_and_other_text_is_kept(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(results("v7", 100, 0.812)))
    doc = "intro\n<!-- results: generalization a.json -->\nold table\n<!-- end results -->\noutro\n"
    out = render_document(doc, tmp_path)
    assert out.startswith("intro\n<!-- results: generalization a.json -->\n| split | v7 (100 videos) |")
    assert "| in-family 2D | 90.0 / 81.2 / 50.0 / n/a | 90.0 / 81.2 / 50.0 / n/a |" in out
    assert "| held-out shape | 90.0 / 81.2 / 50.0 / n/a | — |" in out  # a method a split lacks
    assert out.endswith("<!-- end results -->\noutro\n") and "old table" not in out
    assert render_document(out, tmp_path) == out


def test_a_first_appearance_file_says_so_in_every_column_label(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({**results("v8", 20, 0.7), "boxes": "first-appearance"}))
    (tmp_path / "b.json").write_text(json.dumps({**results("v8", 20, 0.6), "boxes": "first-frame"}))
    out = render_document("<!-- results: generalization a.json b.json -->\n<!-- end results -->\n", tmp_path)
    header = out.splitlines()[1]
    assert header == (
        "| split | v8 (20 videos, first-appearance boxes) | feature_prototype (20 videos, first-appearance boxes) "
        "| v8 (20 videos) | feature_prototype (20 videos) |"
    )
    # Files with the splits' ceilings: one mIoU column per protocol, from the first file that has it.
    ceilings = results("v8", 20, 0.7)
    ceilings["splits"]["in-family 2D"]["ceiling_miou"] = {"first-frame": 0.8, "first-appearance": 0.99}
    ceilings["splits"]["held-out shape"]["ceiling_miou"] = {"first-frame": 0.5, "first-appearance": None}
    (tmp_path / "c.json").write_text(json.dumps(ceilings))
    out = render_document("<!-- results: generalization c.json a.json -->\n<!-- end results -->\n", tmp_path)
    lines = out.splitlines()
    assert lines[1].endswith("| mIoU ceiling, first-frame boxes | mIoU ceiling, first-appearance boxes |")
    assert lines[3].endswith("| 80.0 | 99.0 |") and lines[4].endswith("| 50.0 | n/a |")
    # The feature-grid ceiling is the model's own (its grid and mask path): its label names the file's model.
    ceilings["splits"]["in-family 2D"]["ceiling_miou"][CEILING] = 0.75
    (tmp_path / "c.json").write_text(json.dumps(ceilings))
    lines = render_document("<!-- results: generalization c.json -->\n<!-- end results -->\n", tmp_path).splitlines()
    assert lines[1].endswith(f"| mIoU ceiling, first-appearance boxes | mIoU ceiling, {CEILING} (v8) |")
    assert lines[3].endswith("| 80.0 | 99.0 | 75.0 |") and lines[4].endswith("| 50.0 | n/a | n/a |")


def test_reid_table_has_a_row_per_world_and_dormancy(tmp_path):
    totals = dict(reappearances=52, resumed=44, new_id=6, missed=2, revivals=34, false_revivals=1, switches=5)
    off = {**totals, "resumed": 20, "idf1": 0.617}  # a file from before the own-id column
    totals["resumed_own"] = 47
    reid = {
        "checkpoint": "default",
        "seeds": [8000, 8014],
        "worlds": {"2d": {"on": {**totals, "idf1": 0.766}, "off": off}},
    }
    (tmp_path / "r.json").write_text(json.dumps(reid))
    out = render_document("<!-- results: reid r.json -->\n<!-- end results -->\n", tmp_path)
    rows = [line for line in out.splitlines() if line.startswith("| default")]
    assert rows == [
        "| default | 8000–8014 | 2D | off | 38% (20/52) | n/a | – | 61.7 | 5 |",
        "| default | 8000–8014 | 2D | on | 85% (44/52) | 90% (47/52) | 1 of 34 | 76.6 | 5 |",
    ]


def test_unknown_kind_or_missing_file_names_it(tmp_path):
    with pytest.raises(ResultsError, match="nope"):
        render_document("<!-- results: nope a.json -->\n<!-- end results -->", tmp_path)
    with pytest.raises(ResultsError, match="missing.json"):
        render_document("<!-- results: generalization missing.json -->\n<!-- end results -->", tmp_path)


def test_the_repository_docs_tables_match_their_results_files():
    assert main(["--check"]) == 0
