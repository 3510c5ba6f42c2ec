"""Generalization benchmark: held-out splits differ from the training split in one axis, and bad specs
are refused naming the field."""

import json
from pathlib import Path

import pytest
import yaml

from savi_core.model.config import ConfigError
from training.config import load_config
from training.generalization import main, split_options, training_families, validate_spec
from training.mask_ceiling import CEILING
from training.train import train

TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"
TRAIN_OPTIONS = {
    "shapes": ["circle", "star"],
    "backgrounds": ["noise", "plain"],
    "textures": ["solid"],
    "effects": True,
    "physics_share": 0.3,
    "physics": {"objects": ["primitives"], "floors": ["plain"]},
}


def test_held_out_splits_replace_one_axis():
    train_families = training_families(TRAIN_OPTIONS)
    held = validate_spec(
        {"held_out": {"bg": {"backgrounds": ["photo"]}, "toys": {"objects": ["toys"]}}}, train_families
    )
    splits = split_options(TRAIN_OPTIONS, train_families, held)
    assert list(splits) == ["in-family 2D", "in-family 3D", "held-out bg", "held-out toys"]
    assert splits["in-family 2D"]["physics_share"] == 0.0 and splits["in-family 2D"]["effects"] is True
    assert splits["held-out bg"] == {**splits["in-family 2D"], "backgrounds": ["photo"]}
    assert splits["in-family 3D"]["physics_share"] == 1.0
    assert splits["held-out toys"]["physics"] == {"objects": ["toys"], "floors": ["plain"]}


def test_a_run_without_3d_has_the_whole_3d_family_held_out():
    train_families = training_families({})
    assert train_families["physics"] is None and "circle" in train_families["shapes"]
    splits = split_options({}, train_families, validate_spec({"held_out": {"s": {"shapes": ["thin"]}}}, train_families))
    assert "3D family (held out)" in splits and splits["3D family (held out)"]["physics_share"] == 1.0


def test_a_3d_only_run_has_the_whole_2d_family_held_out():
    options = {"physics_share": 1.0, "physics": {"objects": ["primitives"], "floors": ["plain"]}}
    train_families = training_families(options)
    assert all(train_families[axis] == () for axis in ("shapes", "backgrounds", "textures"))
    held = validate_spec({"held_out": {"s": {"shapes": ["thin"]}, "toys": {"objects": ["toys"]}}}, train_families)
    splits = split_options(options, train_families, held)
    assert list(splits) == ["2D family (held out)", "in-family 3D", "held-out s", "held-out toys"]
    two_d = splits["2D family (held out)"]
    assert two_d["physics_share"] == 0.0 and "circle" in two_d["shapes"]  # the 2D generator's defaults
    assert splits["held-out s"] == {**two_d, "shapes": ["thin"]}
    assert splits["held-out toys"]["physics"] == {"objects": ["toys"], "floors": ["plain"]}


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"held_out": {"bg": {"backgrounds": ["lava"]}}}, r"held_out\.bg\.backgrounds: unknown family 'lava'"),
        ({"held_out": {"s": {"shapes": ["star"]}}}, r"held_out\.s\.shapes: 'star' is also a training family"),
        ({"held_out": {"s": {"colours": ["red"]}}}, r"held_out\.s\.colours: unknown axis"),
        ({"held_out": {"s": {"shapes": []}}}, r"held_out\.s\.shapes: names no family"),
        ({"held_out": {}}, r"held_out: must be a non-empty mapping"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(spec, field):
    with pytest.raises(ConfigError, match=field):
        validate_spec(spec, training_families(TRAIN_OPTIONS))


def test_an_empty_training_split_is_refused():
    families = training_families({**TRAIN_OPTIONS, "textures": []})
    with pytest.raises(ConfigError, match=r"data\.options\.textures: the training split is empty"):
        validate_spec({"held_out": {"s": {"shapes": ["thin"]}}}, families)


def test_cli_scores_every_split(tmp_path, capsys):
    run = train(load_config(TINY, {"train.out_dir": str(tmp_path / "run"), "train.steps": 1}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"held_out": {"shape": {"shapes": ["cross"]}}}))
    assert (
        main(
            [
                "--checkpoint",
                str(run),
                "--spec",
                str(spec),
                "--num-videos",
                "1",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for split in ("in-family 2D", "3D family (held out)", "held-out shape"):
        assert split in printed
    assert (tmp_path / "out" / "generalization.json").is_file()
    # Another run's families define the splits: two models can be scored on the same videos.
    other = yaml.safe_load(TINY.read_text())
    other["data"]["options"] = {"shapes": ["star", "blob"]}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    assert (
        main(
            [
                "--checkpoint",
                str(run),
                "--spec",
                str(spec),
                "--num-videos",
                "1",
                "--device",
                "cpu",
                "--families-from",
                str(tmp_path / "other.yaml"),
                "--out",
                str(tmp_path / "out2"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "out2" / "generalization.json").read_text())
    assert result["training_families"]["shapes"] == ["star", "blob"]
    assert result["splits"]["held-out shape"]["options"]["shapes"] == ["cross"]
    # A camera's frame size: every split rendered at it and resized by the Tracker; a bad size is refused.
    assert (
        main(
            [
                "--checkpoint",
                str(run),
                "--spec",
                str(spec),
                "--num-videos",
                "1",
                "--device",
                "cpu",
                "--frame-size",
                "40x24",
                "--out",
                str(tmp_path / "out3"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "out3" / "generalization.json").read_text())["frame_size"] == [24, 40]
    assert main(["--checkpoint", str(run), "--spec", str(spec), "--frame-size", "320x"]) == 1
    assert "--frame-size: expected WxH" in capsys.readouterr().err


def test_a_mixed_run_with_every_2d_axis_emptied_is_refused_not_taken_for_3d_only():
    families = training_families({**TRAIN_OPTIONS, "shapes": [], "backgrounds": [], "textures": []})
    with pytest.raises(ConfigError, match=r"data\.options\.shapes: the training split is empty"):
        validate_spec({"held_out": {"s": {"shapes": ["thin"]}}}, families)


def test_scene_cache_scores_a_second_run_on_the_same_videos_without_rendering_them(tmp_path):
    run = train(load_config(TINY, {"train.out_dir": str(tmp_path / "run"), "train.steps": 1}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"held_out": {"shape": {"shapes": ["cross"]}}}))
    cache = tmp_path / "scenes"
    args = ["--checkpoint", str(run), "--spec", str(spec), "--num-videos", "2", "--device", "cpu"]
    args += ["--no-prototype-baseline", "--scene-cache", str(cache)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    files = sorted(cache.glob("scene_*.npz"))
    assert len(files) == 3 * 2  # in-family 2D, the held-out 3D family, held-out shape: 2 videos each
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert sorted(cache.glob("scene_*.npz")) == files and [f.stat().st_mtime_ns for f in files] == stamps
    first, second = (json.loads((tmp_path / d / "generalization.json").read_text()) for d in ("a", "b"))
    for split, entry in first["splits"].items():  # the same videos, the same scores
        for key in ("fg_ari", "miou", "j_and_f", "idf1"):
            assert entry["methods"]["savi"][key] == second["splits"][split]["methods"]["savi"][key], (split, key)
    assert "cache_dir" not in first["splits"]["held-out shape"]["options"]


def test_first_appearance_boxes_are_written_into_the_results_with_each_splits_ceilings(tmp_path, capsys):
    run = train(load_config(TINY, {"train.out_dir": str(tmp_path / "run"), "train.steps": 1}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"held_out": {"shape": {"shapes": ["cross"]}}}))
    args = ["--checkpoint", str(run), "--spec", str(spec), "--num-videos", "1", "--device", "cpu"]
    args += ["--no-prototype-baseline", "--boxes", "first-appearance"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert "boxes: first-appearance" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "generalization.json").read_text())
    assert result["boxes"] == "first-appearance"
    for entry in result["splits"].values():
        ceiling = entry["ceiling_miou"]
        assert set(ceiling) == {"first-frame", "first-appearance", CEILING}
        assert ceiling[CEILING] is None or ceiling[CEILING] <= ceiling["first-appearance"]
    assert main([*args, "--points"]) == 1  # points are first-frame prompts
    assert "--boxes first-frame" in capsys.readouterr().err
