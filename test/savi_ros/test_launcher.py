"""The tracker's console script makes OpenMP wait passively unless the user chose otherwise."""

import os

from savi_ros import launcher


def test_tracker_entry_point_sets_passive_openmp_waiting_unless_set(monkeypatch):
    started = []
    monkeypatch.setattr(launcher, "_run", lambda module: started.append(module) or 0)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert launcher.tracker() == 0
    assert started == ["savi_ros.tracker_node"]
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    launcher.tracker()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
