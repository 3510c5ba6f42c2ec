"""Fitting the prototype model's metric (the encoder's projection) by matching looks across frames: grid labels
on a known answer, a loss that ranks a separating metric above a confusing one, a fit that lowers the
kept-aside loss and writes a checkpoint that loads and that ``fit_prototypes --init`` starts from."""

import copy

import pytest
import torch
import yaml

from savi_core.model.checkpoint import load_checkpoint
from training import fit_metric
from training import fit_prototypes

from test.training.test_fit_prototypes import CONFIG as PROTOTYPE_CONFIG

CONFIG = copy.deepcopy(PROTOTYPE_CONFIG)
CONFIG["model"]["encoder"]["projection"] = True
CONFIG["data"].update(num_videos=6, num_frames=4, options={"physics_share": 0.0})


def test_grid_labels_are_each_cells_share_of_every_segment():
    seg = torch.zeros(1, 8, 8, dtype=torch.long)
    seg[0, :4, :4] = 1  # one whole cell
    seg[0, 4:6, 4:8] = 2  # half of another
    labels = fit_metric.grid_labels(seg, 3, 4)
    assert labels.shape == (1, 3, 2, 2)
    assert labels[0, 1, 0, 0] == 1 and labels[0, 0, 0, 0] == 0
    assert labels[0, 2, 1, 1] == 0.5 and labels[0, 0, 1, 1] == 0.5
    assert torch.allclose(labels.sum(1), torch.ones(1, 2, 2))


def _scene(separation: float) -> tuple[torch.Tensor, ...]:
    """Two frames of 64 cells: an object (segment 1) on the left half, background on the right; the object
    differs from the background along axis 0 by ``separation``, and both vary strongly along axis 1."""
    generator = torch.Generator().manual_seed(0)
    frames = []
    for _ in range(2):
        noise = torch.randn(64, 4, generator=generator)
        x = torch.zeros(64, 4)
        x[:, 1] = 3 * noise[:, 1]
        x[:, 2] = 1.0
        x[:32, 0] = separation
        frames.append(torch.nn.functional.normalize(x, dim=-1))
    labels = torch.zeros(2, 64)
    labels[1, :32] = 1
    labels[0, 32:] = 1
    return frames[0], labels, frames[1], labels


def test_pair_loss_prefers_a_metric_that_separates_the_object():
    scene = _scene(0.5)
    temperature = torch.tensor(2.0)
    confusing = fit_metric.pair_loss(torch.eye(4), temperature, *scene)
    separating = fit_metric.pair_loss(torch.diag(torch.tensor([10.0, 0.1, 1.0, 1.0])), temperature, *scene)
    assert confusing is not None and separating is not None
    assert separating[0] < confusing[0]
    assert separating[1] == 1.0
    # Nothing to score without an object look at the reference frame.
    reference, labels, target, _ = scene
    empty = labels.clone()
    empty[1] = 0
    assert fit_metric.pair_loss(torch.eye(4), temperature, reference, empty, target, labels) is None


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("metric")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "metric"
    result = fit_metric.fit(str(config), out, videos=6, first=0, steps=40, batch=4, lr=1e-2)
    return config, out, result


def test_fit_lowers_the_kept_aside_loss_and_writes_a_loadable_checkpoint(fitted):
    _, out, result = fitted
    assert result["aside_after"]["loss"] < result["aside_before"]["loss"]
    model, meta = load_checkpoint(out)
    projection = model.encoder.projection
    assert projection is not None and projection.shape == (176, 176)
    assert not torch.allclose(projection, torch.eye(176))
    assert meta["extra"]["metric"]["videos"] == 6


def test_fit_prototypes_starts_from_the_fitted_metric(fitted, tmp_path):
    config, out, _ = fitted
    refit = tmp_path / "refit"
    args = ["--config", str(config), "--videos", "1", "--out", str(refit), "--init", str(out)]
    assert fit_prototypes.main(args) == 0
    metric, _ = load_checkpoint(out)
    model, _ = load_checkpoint(refit)
    assert torch.equal(model.encoder.projection, metric.encoder.projection)
    # A checkpoint of another model is refused.
    other = tmp_path / "other.yaml"
    plain = copy.deepcopy(CONFIG)
    plain["model"]["encoder"]["projection"] = False
    other.write_text(yaml.safe_dump(plain))
    assert (
        fit_prototypes.main(["--config", str(other), "--videos", "1", "--out", str(tmp_path / "x"), "--init", str(out)])
        == 1
    )


def test_fit_refuses_a_model_without_a_projection_and_single_frame_videos(tmp_path):
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(PROTOTYPE_CONFIG))
    assert fit_metric.main(["--config", str(config), "--out", str(tmp_path / "m"), "--videos", "4"]) == 1
    single = copy.deepcopy(CONFIG)
    single["data"]["num_frames"] = 1
    config.write_text(yaml.safe_dump(single))
    assert fit_metric.main(["--config", str(config), "--out", str(tmp_path / "m"), "--videos", "4"]) == 1
