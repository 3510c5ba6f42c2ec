"""Multi-process training: torchrun, 2 CPU processes, gloo; both ranks train and end with the same weights."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from training.config import load_config
from training.train import train

ROOT = Path(__file__).resolve().parents[2]
TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"
TORCHRUN = Path(sys.executable).parent / "torchrun"
# A worker once aborted in CI (twice over many runs, never reproduced here in 23 repeats) with only
# "terminate called without an active exception" from C++: no Python traceback, no sign of where.
ABORT = "terminate called without an active exception"


def torchrun(config: Path, out: Path, steps: int) -> subprocess.CompletedProcess:
    """Two gloo CPU workers. Python's fault handler prints every worker's stack on an abort, so a repeat of
    the abort above says where it happened; that one failure is run once more (with a warning carrying
    the first run's output) instead of failing the suite; every other failure fails the test."""
    command = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "training.train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and ABORT in proc.stderr:
        warnings.warn(f"a DDP worker aborted; running again. Its output:\n{proc.stderr[-6000:]}")
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return proc


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch next to the interpreter")
def test_two_process_gloo_run_matches_the_single_process_run(tmp_path):
    steps = 3
    out = tmp_path / "ddp"
    proc = torchrun(TINY, out, steps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((out / "final.json").read_text())
    assert final["world_size"] == 2
    assert final["samples_seen_per_rank"] == [steps, steps]  # global batch 2 = 1 per rank, both ranks ran
    assert len(final["param_digests"]) == 2 and final["param_digests"][0] == final["param_digests"][1]
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step_{steps:07d}"
    assert proc.stdout.count("done:") == 1  # only rank 0 reports / writes

    # Same global batch, same videos: the all-reduced losses equal the single-process run's.
    single = train(load_config(TINY, {"train.out_dir": str(tmp_path / "single"), "train.steps": steps}))
    ddp_losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    one_losses = [json.loads(line)["loss"] for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert ddp_losses == pytest.approx(one_losses, rel=1e-5)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch next to the interpreter")
def test_two_process_run_with_burn_in_matches_the_single_process_run(tmp_path):
    """Ranks draw the same burn-in per step, and the initialiser's missing gradient after a burn-in
    does not stall DDP's all-reduce."""
    steps = 4
    overrides = {"data.burn_in": 2, "data.num_frames": 6}
    config = tmp_path / "burn_in.yaml"
    data = yaml.safe_load(TINY.read_text())
    data["data"].update({k.split(".")[1]: v for k, v in overrides.items()})
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "ddp"
    proc = torchrun(config, out, steps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((out / "final.json").read_text())
    assert final["param_digests"][0] == final["param_digests"][1]
    single = train(load_config(config, {"train.out_dir": str(tmp_path / "single"), "train.steps": steps}))
    ddp_losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    one_losses = [json.loads(line)["loss"] for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert ddp_losses == pytest.approx(one_losses, rel=1e-5)
