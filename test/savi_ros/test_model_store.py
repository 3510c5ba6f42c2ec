"""`checkpoint` parameter resolution."""

from pathlib import Path

import pytest

from savi_core.model.checkpoint import load_checkpoint
from savi_ros import model_store


def test_default_is_the_packaged_model_beside_the_code():
    path = model_store.resolve_checkpoint("default")
    assert path == Path(model_store.__file__).resolve().parent / "models" / "default"
    from savi_core.model.checkpoint import read_checkpoint_config

    cfg, _ = read_checkpoint_config(path)
    assert cfg.initializer.conditional  # the Tracker needs a box-conditioned model


def test_paths_are_expanded_and_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SAVI_MODELS", "/models")
    assert model_store.resolve_checkpoint("~/ckpt") == tmp_path / "ckpt"
    assert model_store.resolve_checkpoint("$SAVI_MODELS/m1") == Path("/models/m1")
    monkeypatch.chdir(tmp_path)
    assert model_store.resolve_checkpoint(" rel/dir ") == tmp_path / "rel" / "dir"


def test_empty_value_is_refused_by_name():
    with pytest.raises(ValueError, match="^checkpoint: empty"):
        model_store.resolve_checkpoint("  ")


@pytest.mark.parametrize("name", ["v6", "v7"])
def test_earlier_packaged_models_load_by_name(name):
    assert name in model_store.packaged_model_names()
    path = model_store.resolve_checkpoint(name)
    assert path == Path(model_store.__file__).resolve().parent / "models" / name
    model, _ = load_checkpoint(path)
    assert model.config.initializer.conditional
    assert model_store.resolve_checkpoint("no_such_model") == Path("no_such_model").absolute()
