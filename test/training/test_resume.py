"""Exact resume: an interrupted run (stopped, or SIGKILLed) continued with --resume logs the same losses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from training.config import load_config
from training.state import latest_checkpoint
from training.train import train

ROOT = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"


def _config_file(tmp_path: Path, **train_overrides) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["train"].update(train_overrides)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _losses(out: Path) -> list[tuple[int, float, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in records]


def _digest(out: Path) -> str:
    return json.loads((out / "final.json").read_text())["param_digests"][0]


def test_stop_then_resume_reproduces_the_uninterrupted_run(tmp_path):
    config = _config_file(tmp_path, steps=10, checkpoint_every=4)
    reference = train(load_config(config, {"train.out_dir": str(tmp_path / "ref")}))
    cfg = load_config(config, {"train.out_dir": str(tmp_path / "split")})
    train(cfg, stop_at=5)  # 8 videos / batch 2: step 5 is inside the second epoch
    assert latest_checkpoint(cfg.train.out_dir).name == "step_0000005"
    state = json.loads((latest_checkpoint(cfg.train.out_dir) / "trainer_state.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 1)
    with (Path(cfg.train.out_dir) / "metrics.jsonl").open("a") as log:  # as if killed mid-write
        log.write('{"step": 6, "loss": 1.0, "grad_norm": 1.0}\n{"step": 7, "lo')
    resumed = train(cfg, resume=True)
    assert _losses(resumed) == _losses(reference)  # bit-identical, not just close
    assert _digest(resumed) == _digest(reference)


def test_sigkill_after_a_checkpoint_then_resume_matches(tmp_path):
    steps = 24
    config = _config_file(tmp_path, steps=steps, checkpoint_every=2, num_workers=1)
    out = tmp_path / "killed"
    # The child must sum in the same order as this process's reference run: same thread count.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--config", str(config), "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    pointer = out / "checkpoints" / "latest"
    deadline = time.monotonic() + 60
    while not pointer.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended on its own before the kill: {err.decode()[-2000:]}"
    killed_at = int(latest_checkpoint(out).name.split("_")[1])
    assert 2 <= killed_at < steps and not (out / "final.json").exists()

    reference = train(load_config(config, {"train.out_dir": str(tmp_path / "ref")}))
    resumed = train(load_config(config, {"train.out_dir": str(out)}), resume=True)
    assert _losses(resumed) == _losses(reference)  # lines logged after the checkpoint were replaced
    assert _digest(resumed) == _digest(reference)


def test_resume_refusals_name_the_reason(tmp_path):
    """A checkpoint is only continued by the run that wrote it: each mismatch is refused with its reason."""
    import pytest

    from training.state import ResumeError, checkpoint_dir

    config = _config_file(tmp_path, steps=6, checkpoint_every=2)
    out = tmp_path / "run"
    cfg = load_config(config, {"train.out_dir": str(out)})
    train(cfg, stop_at=2)
    with pytest.raises(ResumeError, match="already holds checkpoints: pass --resume"):
        train(cfg)
    changed = load_config(config, {"train.out_dir": str(out), "train.lr": 1e-3})
    with pytest.raises(ResumeError, match="different configuration"):
        train(changed, resume=True)
    with pytest.raises(ResumeError, match="no checkpoint in"):
        train(load_config(config, {"train.out_dir": str(tmp_path / "empty")}), resume=True)
    # Same config, but the saved state says what another dataset length or process count would have.
    state_file = latest_checkpoint(out) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["batch_in_epoch"] = 99
    state_file.write_text(json.dumps(state))
    with pytest.raises(ResumeError, match="data position 99 but an epoch now has 4 batches"):
        train(cfg, resume=True)
    state["batch_in_epoch"], state["world_size"] = 1, 2
    state_file.write_text(json.dumps(state))
    with pytest.raises(ResumeError, match="written with 2 processes, this run has 1"):
        train(cfg, resume=True)
    (checkpoint_dir(out) / "latest").write_text("step_9999999\n")
    with pytest.raises(ResumeError, match="names step_9999999, which is not a complete trainer checkpoint"):
        train(cfg, resume=True)
