"""Memory handed back after large frames: when the node trims, and the DDS profile that frees message buffers."""

from __future__ import annotations

import os

from savi_ros import dds
from savi_ros.memory import Trimmer, mmap_large_buffers


def test_trims_once_when_frames_shrink_below_half_the_largest_seen():
    calls = []
    trimmer = Trimmer(trim=lambda pad: calls.append(pad) or 1)
    steady, large = 640 * 480, 4000 * 3000
    assert not trimmer.processed(steady) and not trimmer.processed(steady)
    trimmer.saw(large)  # received (maybe dropped unprocessed): its buffers were allocated
    assert not trimmer.processed(large)  # large frames in a row: nothing to hand back yet
    assert trimmer.processed(steady)  # the first smaller frame after them
    assert not trimmer.processed(steady)  # once
    assert not trimmer.processed(int(steady * 1.5)) and not trimmer.processed(steady)  # within 2x: no trim
    assert calls == [0]


def test_without_malloc_trim_nothing_is_trimmed(monkeypatch):
    monkeypatch.setattr("savi_ros.memory._malloc_trim", lambda: None)
    trimmer = Trimmer()
    trimmer.saw(4000 * 3000)
    assert not trimmer.processed(640 * 480)


def test_the_profile_frees_history_buffers_and_rmw_is_told_to_read_it(monkeypatch):
    for name in (*dds.PROFILE_VARIABLES, dds.QOS_FROM_XML, "RMW_IMPLEMENTATION"):
        monkeypatch.delenv(name, raising=False)
    assert dds.use_large_message_profile() == dds.PROFILE
    assert os.environ[dds.QOS_FROM_XML] == "1"
    text = dds.PROFILE.read_text()
    assert text.count("<historyMemoryPolicy>DYNAMIC</historyMemoryPolicy>") == 2  # writers and readers
    assert text.count("<kind>OFF</kind>") == 2  # data sharing off, as rmw_fastrtps sets it without the variable


def test_a_users_mmap_threshold_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not mmap_large_buffers()
