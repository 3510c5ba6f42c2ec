"""Checkpoints round-trip exactly, and every kind of broken file is refused with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from savi_core.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_config, save_checkpoint
from savi_core.model.config import ModelConfig, preset
from savi_core.model.savi import SAVi


@pytest.fixture
def ckpt(tmp_path: Path) -> tuple[Path, SAVi]:
    torch.manual_seed(0)
    model = SAVi(
        ModelConfig.from_dict(
            {
                "preset": "S",
                "resolution": [32, 32],
                "num_slots": 3,
                "slot_dim": 32,
                "decoder": {"broadcast_size": [4, 4]},
            }
        )
    )
    return save_checkpoint(tmp_path / "ckpt", model, extra={"trained": False}), model


def test_round_trip_is_exact(ckpt) -> None:
    path, model = ckpt
    loaded, meta = load_checkpoint(path)
    assert meta["extra"] == {"trained": False} and meta["format_version"] == 2
    assert loaded.config == model.config and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    # A path to either file works too.
    load_checkpoint(path / "config.json")
    load_checkpoint(path / "model.safetensors")


def test_no_pickle_anywhere(ckpt) -> None:
    path, _ = ckpt
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in path.iterdir()), "checkpoint files must be world-readable"
    assert json.loads((path / "config.json").read_text())["format"] == "savi_core.checkpoint"


def test_version_1_checkpoint_loads_as_the_paper_variant(ckpt) -> None:
    """A checkpoint written before the paper/official fields existed keeps computing what it computed."""
    path, _ = ckpt
    meta = json.loads((path / "config.json").read_text())
    legacy_model = {
        k: v for k, v in meta["model"].items() if k not in ("layer_norm_eps", "position_embedding", "conv_padding")
    }
    for section, keys in (
        ("encoder", ("final_activation", "resnet_root_kernel", "resnet_root_activation")),
        ("decoder", ("final_activation",)),
        ("initializer", ("unconditioned_value",)),
    ):
        legacy_model[section] = {k: v for k, v in legacy_model[section].items() if k not in keys}
    (path / "config.json").write_text(
        json.dumps({**meta, "format": "savi_ros.checkpoint", "format_version": 1, "model": legacy_model})
    )
    cfg, _ = read_checkpoint_config(path)
    assert (cfg.layer_norm_eps, cfg.position_embedding, cfg.conv_padding) == (1e-5, "ramps4", "symmetric")
    assert not cfg.encoder.final_activation and not cfg.decoder.final_activation
    assert cfg.initializer.unconditioned_value == -1.0
    # Its weights (2-ramp position embedding) do not fit the 4-ramp paper variant: refused, not misread.
    with pytest.raises(CheckpointError, match="shape mismatch for .*pos.proj.weight"):
        load_checkpoint(path)
    # A version-2 file with the same partial config takes the official values instead.
    (path / "config.json").write_text(json.dumps({**meta, "model": legacy_model}))
    assert read_checkpoint_config(path)[0].conv_padding == "flax_same"


def test_missing(tmp_path: Path, ckpt) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    path, _ = ckpt
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(path)


def test_truncated_weights(ckpt) -> None:
    path, _ = ckpt
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_weights(ckpt) -> None:
    path, _ = ckpt
    (path / "model.safetensors").write_bytes(b"\x80\x04\x95not a safetensors file at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_bad_json_and_versions(ckpt) -> None:
    path, _ = ckpt
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="unknown format_version 99"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(CheckpointError, match="not a savi checkpoint"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({**meta, "model": {**meta["model"], "num_slots": -1}}))
    with pytest.raises(CheckpointError, match="invalid model config: num_slots"):
        load_checkpoint(path)


def test_a_wrongly_typed_model_value_is_named_once_with_one_prefix(ckpt) -> None:
    """A value of the wrong type fails a comparison inside validation: the message names the field, and says
    "invalid model config" once (it used to say it twice)."""
    path, _ = ckpt
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**meta, "model": {**meta["model"], "slot_dim": "wide"}}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.count("invalid model config") == 1, message
    assert "invalid model config: slot_dim: a value of the wrong type" in message


def test_shape_mismatch_names_the_tensor(ckpt) -> None:
    path, _ = ckpt
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["slot_dim"] = 64
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatch for .*given .*expected"):
        load_checkpoint(path)


def test_missing_tensor_and_wrong_preset(ckpt) -> None:
    path, _ = ckpt
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["predictor"]["kind"] = "identity"
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_checkpoint(path)
    meta["model"]["predictor"]["kind"] = "transformer"
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="preset 'S', expected 'M'"):
        load_checkpoint(path, expected_preset="M")


def test_non_finite_weights_refused(tmp_path: Path) -> None:
    model = SAVi(preset("S"))
    with torch.no_grad():
        model.decoder.head.bias.fill_(float("nan"))
    path = save_checkpoint(tmp_path / "nan", model)
    with pytest.raises(CheckpointError, match="decoder.head.bias is not finite"):
        load_checkpoint(path)
