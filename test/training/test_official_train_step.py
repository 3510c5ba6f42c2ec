"""Parity of one training step with the official SAVi's ``train_step`` (fixtures/official_train_step.npz, written
by scripts/official_train_step_fixture.py with the official code on a shrunk MOVi "S" config): from the official
initial parameters and batch, ``training.step.train_step`` gives the official loss, gradient norm, learning rate,
Adam moments and updated parameters within 1e-4; each optimisation setting taken alone off the official one
breaks it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from savi_core.model.config import ModelConfig, preset
from savi_core.model.import_flax import read_params, state_dict_from_flax
from savi_core.model.savi import SAVi
from training.config import DataConfig, RunConfig, TrainConfig
from training.distributed import Distributed
from training.step import learning_rate, make_optimizer, train_step

FIXTURE = Path(__file__).parent / "fixtures" / "official_train_step.npz"
TOL = 1e-4
# The first Adam step moves each parameter by lr * g / (|g| + 1e-8): where the gradient is analytically zero
# (the alpha-logit bias, shared by all slots) its float32 noise of ~1e-12 is amplified to ~1e-4 lr.
UPDATE_TOL = 1e-3


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def tiny_config() -> ModelConfig:
    """Preset S with the widths the fixture's official config was shrunk to (its meta/tiny_overrides)."""
    data = preset("S").to_dict()
    data.update(resolution=[32, 32], num_slots=4, slot_dim=32)
    data["encoder"].update(channels=[16] * 4, mlp_dims=[32, 16])
    data["initializer"]["hidden_dim"] = 64
    data["corrector"]["qkv_dim"] = 32
    data["predictor"].update(qkv_dim=32, mlp_hidden=64)
    data["decoder"].update(broadcast_size=[4, 4], channels=[16] * 4)
    return ModelConfig.from_dict(data)


def run_config(official: dict[str, np.ndarray], **train: object) -> RunConfig:
    """The project's default optimisation settings (the fixture test checks they are the official ones)."""
    tc = TrainConfig(batch_size=int(official["input/video"].shape[0]))
    model = tiny_config()
    data = DataConfig(resolution=model.resolution, max_instances=model.num_object_slots, window=2)
    return RunConfig(model=model, data=data, train=dataclasses.replace(tc, **train))


def flax_tree(official: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in official.items() if k.startswith(prefix)}


def batch_from(official: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The official NTHWC batch in the project's layout; all-zero (padding) boxes are unconditioned slots."""
    video = torch.from_numpy(official["input/video"]).permute(0, 1, 4, 2, 3).contiguous()
    boxes = torch.from_numpy(official["input/boxes"][:, 0])
    return {
        "video": video,
        "target": torch.from_numpy(official["input/flow"]).permute(0, 1, 4, 2, 3).contiguous(),
        "frame_mask": torch.ones(video.shape[:2], dtype=torch.bool),
        "cond_boxes": boxes,
        "conditioned": (boxes.abs().sum(-1) > 0).float(),
    }


@dataclasses.dataclass
class Stepped:
    result: object
    model: SAVi
    optimizer: torch.optim.Optimizer
    before: dict[str, torch.Tensor]


def project_step(
    official: dict[str, np.ndarray], cfg: RunConfig, optimizer_options: dict | None = None, torch_gru: bool = False
) -> Stepped:
    """One ``train_step`` of the project at the fixture's step, from the official initial parameters;
    ``torch_gru`` trains all of ``nn.GRUCell``'s hidden biases instead of the official ones."""
    model = SAVi(cfg.model).train()
    model.load_state_dict(state_dict_from_flax(read_params(FIXTURE), cfg.model))
    if torch_gru:
        model.corrector._gru = model.corrector.gru.forward
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, cfg.train)
    for group in optimizer.param_groups:
        group.update(optimizer_options or {})
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    step = int(official["meta/step"]) - 1  # the official trainer counts from 1, its schedule from 0
    result = train_step(model, model, optimizer, scaler, batch_from(official), cfg, step, None, Distributed())
    return Stepped(result, model, optimizer, before)


def moment(stepped: Stepped, name: str) -> dict[str, torch.Tensor]:
    """The optimizer's Adam moment ``exp_avg`` / ``exp_avg_sq`` by state-dict key."""
    params = dict(stepped.model.named_parameters())
    return {k: stepped.optimizer.state[params[k]][name] for k in params}


def official_as_torch(official: dict[str, np.ndarray], prefix: str, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """An official tree mapped like the parameters (every conversion is a linear re-layout, so it maps moments too)."""
    tree = flax_tree(official, prefix)
    for path in tree:
        if path.endswith("/pos_embedding"):  # fixed grids (zero moments), checked by the importer
            tree[path] = official["params/" + path]
    return state_dict_from_flax(tree, cfg)


def worst(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    """Largest difference over every tensor, relative to the largest official magnitude."""
    scale = max(v.abs().max().item() for v in theirs.values())
    return max((ours[k] - theirs[k]).abs().max().item() for k in ours) / scale


def beyond_rounding(difference: torch.Tensor, param: torch.Tensor) -> float:
    allowance = torch.finfo(torch.float32).eps * param.abs()
    return (difference.abs() - allowance).clamp_min(0).max().item()


def discrepancies(official: dict[str, np.ndarray], stepped: Stepped) -> dict[str, float]:
    cfg = tiny_config()
    result = stepped.result
    after = stepped.model.state_dict()
    official_after = official_as_torch(official, "out/params/", cfg)
    lr = float(official["out/lr"])
    update = {k: after[k] - stepped.before[k] for k in official_after}
    official_update = {k: official_after[k] - stepped.before[k] for k in official_after}
    return {
        "loss": abs(result.loss - float(official["out/loss"])) / float(official["out/loss"]),
        "grad_norm": abs(result.grad_norm - float(official["out/grad_norm"])) / float(official["out/grad_norm"]),
        "lr": abs(result.lr - lr) / lr,
        "exp_avg": worst(moment(stepped, "exp_avg"), official_as_torch(official, "out/mu/", cfg)),
        "exp_avg_sq": worst(moment(stepped, "exp_avg_sq"), official_as_torch(official, "out/nu/", cfg)),
        "params": max((after[k] - official_after[k]).abs().max().item() for k in official_after),
        # Each update is about +-lr: measured in units of lr so that 1e-4 is not vacuous, less the float32
        # rounding of the stored parameters (one unit in the last place of each side's ``p - update``).
        "update": max(beyond_rounding(update[k] - official_update[k], after[k]) for k in update) / lr,
    }


@pytest.fixture(scope="module")
def parity(official) -> dict[str, float]:
    return discrepancies(official, project_step(official, run_config(official)))


def test_fixture_is_the_official_step_on_the_shrunk_s_config(official):
    assert json.loads(str(official["meta/tiny_overrides"]))["corrector.qkv_size"] == tiny_config().corrector.qkv_dim
    assert float(official["meta/max_grad_norm"]) == TrainConfig().clip_norm
    assert float(official["meta/learning_rate"]) == TrainConfig().lr
    assert int(official["meta/warmup_steps"]) == TrainConfig().warmup_steps
    assert int(official["meta/num_train_steps"]) == TrainConfig().steps
    # The official gradient is far above the clipping norm: clipping decides the moments.
    assert float(official["out/grad_norm"]) > 100 * TrainConfig().clip_norm


@pytest.mark.parametrize("quantity", ["loss", "grad_norm", "lr", "exp_avg", "exp_avg_sq", "params", "update"])
def test_step_matches_official(parity, quantity):
    assert parity[quantity] <= (UPDATE_TOL if quantity == "update" else TOL), parity


def test_schedule_matches_official(official):
    tc = run_config(official).train
    for step, lr in zip(official["schedule/steps"].tolist(), official["schedule/lr"].tolist()):
        assert abs(learning_rate(step, tc) - lr) <= TOL * tc.lr, (step, learning_rate(step, tc), lr)


@pytest.mark.parametrize(
    "train, optimizer_options, torch_gru, broken",
    [
        ({"clip_norm": 0.0}, None, False, "exp_avg"),  # no clipping
        ({"clip_norm": 0.1}, None, False, "exp_avg"),  # another clipping norm
        ({"warmup_steps": 0}, None, False, "lr"),  # the schedule
        ({}, {"eps": 1e-6}, False, "update"),  # Adam's epsilon
        ({}, {"betas": (0.9, 0.99)}, False, "exp_avg_sq"),  # Adam's second-moment decay
        ({}, None, True, "update"),  # reset/update gates' hidden biases trained as well
    ],
)
def test_each_setting_off_the_official_breaks_parity(official, train, optimizer_options, torch_gru, broken):
    off = discrepancies(official, project_step(official, run_config(official, **train), optimizer_options, torch_gru))
    assert off[broken] > (UPDATE_TOL if broken == "update" else TOL), off
