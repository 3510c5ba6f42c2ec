"""Run configs: the shipped YAMLs load with the paper's values, and bad input names the bad key."""

from pathlib import Path

import pytest
import yaml

from savi_core.model.config import ConfigError
from training.config import config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "training" / "configs"
TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"


def tiny_dict() -> dict:
    return yaml.safe_load(TINY.read_text())


@pytest.mark.parametrize(
    "name", ["movi_a_s_bbox", "movi_c_m_bbox", "movi_l_resnet_bbox", "sketchy_uncond_rgb", "synthetic_cpu"]
)
def test_shipped_configs_load_with_paper_optimisation(name):
    overrides = None if name == "synthetic_cpu" else {"data.root": "/data/somewhere"}
    cfg = load_config(CONFIGS / f"{name}.yaml", overrides)
    assert cfg.train.lr == 2e-4
    assert cfg.train.clip_norm == 0.05
    assert cfg.data.window == 6
    assert cfg.data.max_instances == cfg.model.num_object_slots
    assert tuple(cfg.data.resolution) == tuple(cfg.model.resolution)


def test_shipped_configs_match_their_names():
    movi_a = load_config(CONFIGS / "movi_a_s_bbox.yaml", {"data.root": "/d"})
    assert (movi_a.model.preset, movi_a.model.resolution, movi_a.model.initializer.kind) == ("S", (64, 64), "bbox")
    assert (movi_a.train.batch_size, movi_a.train.steps, movi_a.train.warmup_steps) == (64, 100_000, 2500)
    assert movi_a.data.target == "flow"
    assert load_config(CONFIGS / "movi_c_m_bbox.yaml", {"data.root": "/d"}).model.resolution == (128, 128)
    assert load_config(CONFIGS / "movi_l_resnet_bbox.yaml", {"data.root": "/d"}).model.encoder.kind == "resnet34"
    sketchy = load_config(CONFIGS / "sketchy_uncond_rgb.yaml", {"data.root": "/d"})
    assert sketchy.model.initializer.kind == "learned" and not sketchy.model.initializer.conditional
    assert sketchy.model.predictor.kind == "mlp"
    assert (sketchy.data.kind, sketchy.data.target) == ("sketchy", "rgb")
    cpu = load_config(CONFIGS / "synthetic_cpu.yaml")
    assert (cpu.model.num_slots, cpu.train.batch_size, cpu.data.kind) == (7, 8, "synthetic")
    assert (
        cpu.model.initializer.kind == "bbox" and cpu.train.mask_loss_weight > 0 and cpu.train.attention_loss_weight > 0
    )
    assert cpu.data.num_frames == 24 and cpu.data.min_objects >= 2
    assert cpu.data.window + cpu.data.burn_in <= cpu.data.num_frames


def test_mask_losses_need_a_source_with_segmentations():
    with pytest.raises(ConfigError, match=r"train\.attention_loss_weight: needs ground-truth segmentations"):
        load_config(CONFIGS / "sketchy_uncond_rgb.yaml", {"data.root": "/d", "train.attention_loss_weight": 1.0})
    cfg = load_config(CONFIGS / "movi_a_s_bbox.yaml", {"data.root": "/d", "train.mask_loss_weight": 1.0})
    assert cfg.train.mask_loss_weight == 1.0


def test_dataset_path_is_required_for_real_datasets():
    with pytest.raises(ConfigError, match="data.root"):
        load_config(CONFIGS / "movi_a_s_bbox.yaml")


@pytest.mark.parametrize(
    "section,key,value,match",
    [
        ("train", "bogus", 1, r"train\.bogus: unknown key"),
        ("train", "steps", "many", r"train\.steps: expected an integer"),
        ("train", "lr", -1.0, r"train\.lr: must be positive"),
        ("train", "lr", "fast", r"train\.lr: expected a number"),
        ("train", "amp", "fp8", r"train\.amp: must be one of"),
        ("train", "mask_loss_weight", -1.0, r"train\.mask_loss_weight: must be >= 0"),
        ("train", "attention_loss_weight", -0.5, r"train\.attention_loss_weight: must be >= 0"),
        ("train", "camera_resample", 1.5, r"train\.camera_resample: must be a probability in \[0, 1\]"),
        ("train", "camera_resample_max_scale", 0.5, r"train\.camera_resample_max_scale: must be >= 1"),
        ("data", "kind", "kitti", r"data\.kind: must be one of"),
        ("data", "burn_in", -1, r"data\.burn_in: must be 0 or more"),
        ("data", "resolution", [16], r"data\.resolution: expected 2 entries"),
        ("data", "max_instances", 5, r"data\.max_instances: must equal the model's object slots"),
        ("data", "resolution", [32, 32], r"data\.resolution: \(32, 32\) differs from model\.resolution"),
        ("eval", "mask_source", "slots", r"eval\.mask_source: must be one of"),
        ("model", "encoder", {"depth": 3}, r"model\.encoder\.depth: unknown key"),
    ],
)
def test_bad_values_name_the_key(section, key, value, match):
    data = tiny_dict()
    data[section][key] = value
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_exponent_without_dot_is_a_number():
    data = yaml.safe_load(TINY.read_text().replace("train:\n", "train:\n  lr: 2e-4\n"))
    assert data["train"]["lr"] == "2e-4"  # PyYAML's YAML 1.1 reading
    assert config_from_dict(data).train.lr == 2e-4


def test_unknown_section_and_missing_model_are_errors():
    data = tiny_dict()
    data["optimizer"] = {}
    with pytest.raises(ConfigError, match="optimizer: unknown section"):
        config_from_dict(data)
    with pytest.raises(ConfigError, match="model: section is required"):
        config_from_dict({"train": {}})


def test_a_key_defined_twice_is_an_error(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text(TINY.read_text() + "\nmodel: {preset: S}\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: model: defined twice \(lines \d+ and \d+\)"):
        load_config(twice)
    nested = tmp_path / "nested.yaml"
    nested.write_text(TINY.read_text().replace("train:\n", "train:\n  steps: 3\n  steps: 4\n"))
    with pytest.raises(ConfigError, match="steps: defined twice"):
        load_config(nested)


def test_overrides_and_round_trip(tmp_path):
    cfg = load_config(TINY, {"train.steps": 9, "train.out_dir": str(tmp_path)})
    assert cfg.train.steps == 9 and cfg.train.out_dir == str(tmp_path)
    again = config_from_dict(cfg.to_dict())  # what a checkpoint stores must load back
    assert again.to_dict() == cfg.to_dict()


def test_hash_ignores_bookkeeping_only():
    base = config_from_dict(tiny_dict())
    moved = tiny_dict()
    moved["train"].update(out_dir="elsewhere", log_every=7, checkpoint_every=3, num_workers=2)
    assert config_from_dict(moved).hash() == base.hash()
    changed = tiny_dict()
    changed["train"]["lr"] = 1e-3
    assert config_from_dict(changed).hash() != base.hash()


def test_set_overrides_reach_nested_keys_typed_and_validated(tmp_path):
    from training.config import parse_overrides

    tiny = Path(__file__).parent / "fixtures" / "tiny.yaml"
    overrides = parse_overrides(["train.batch_size=4", "model.encoder.channels=[4, 4]", "data.options.effects=true"])
    assert overrides == {"train.batch_size": 4, "model.encoder.channels": [4, 4], "data.options.effects": True}
    cfg = load_config(tiny, overrides)
    assert cfg.train.batch_size == 4 and cfg.model.encoder.channels == (4, 4) and cfg.data.options["effects"] is True
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(tiny, parse_overrides(["train.batch_size=0"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.batch_size"])
    with pytest.raises(ConfigError, match="dotted key"):
        load_config(tiny, parse_overrides(["steps=3"]))


def test_pretrained_configs_load_with_the_backbone_and_refuse_pixel_augmentation_with_a_cache():
    from savi_core.model.backbone import WEIGHT_SHA256

    movi = load_config(CONFIGS / "movi_pretrained_bbox.yaml", {"data.root": "/d"})
    cpu = load_config(CONFIGS / "pretrained_cpu.yaml")
    for cfg in (movi, cpu):
        assert cfg.model.encoder.kind == "efficientnet_lite0" and cfg.model.encoder.backbone_sha256 == WEIGHT_SHA256
        assert cfg.model.corrector.kind == "prototype" and cfg.data.max_instances == cfg.model.num_object_slots
    assert movi.data.feature_cache == "" and cpu.data.feature_cache
    with pytest.raises(ConfigError, match="train.camera_resample"):
        load_config(CONFIGS / "pretrained_cpu.yaml", {"train.camera_resample": 0.5})
