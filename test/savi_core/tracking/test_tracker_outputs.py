"""bench/tracker_outputs.py, the before/after check of Tracker refactors: two recordings of the same code
compare identical, and one changed pixel of one label map is reported with the case and frame."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "tracker_outputs.py"


def tool(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True)


def test_same_code_records_identically_and_one_changed_pixel_is_found(tmp_path):
    for name in ("a", "b"):
        done = tool("record", str(tmp_path / name), "--cases", "tiny_com", "tiny_segmentation")
        assert done.returncode == 0, done.stderr
    same = tool("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert same.returncode == 0 and "identical" in same.stdout, same.stdout + same.stderr
    with np.load(tmp_path / "b.npz") as b:
        maps = {k: b[k] for k in b.files}
    assert any(m.any() for m in maps.values()), "the cases should track something"
    maps["tiny_com/5"] = maps["tiny_com/5"].copy()
    maps["tiny_com/5"][0, 0] += 1
    np.savez_compressed(tmp_path / "b.npz", **maps)
    changed = tool("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert changed.returncode == 1 and "label map tiny_com/5" in changed.stdout, changed.stdout + changed.stderr
