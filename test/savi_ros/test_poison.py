"""The poison-stamp rule alone, with explicit clocks (ns): ahead of the newest image by more than
time_jump_reset and ahead of the node's clock (beyond the camera's lead) by more than future_tolerance."""

from __future__ import annotations

from savi_ros.poison import Newest, ahead_of_clock_ns, is_poison

S = 10**9
T0 = 1_800_000_000 * S  # the node's clock: wall time
J, F = 1.0, 5.0  # time_jump_reset, future_tolerance


def poison(stamp: int, clock: int, newest: Newest | None) -> bool:
    return is_poison(stamp, clock, newest, J, F)


def test_the_first_image_is_never_poison():
    assert not poison(T0 + 3600 * S, T0, None)


def test_a_gap_alone_is_not_poison_whatever_its_length():
    newest = Newest(T0, T0)
    for gap in (5, 30, 3600):  # a 0.2 Hz camera, a 30 s pause, an hour's pause
        assert not poison(T0 + gap * S, T0 + gap * S, newest)


def test_a_camera_clock_behind_or_ahead_of_the_nodes_is_not_poison_after_a_pause():
    for offset in (-60, 60):
        newest = Newest(T0 + offset * S, T0)
        assert ahead_of_clock_ns(T0 + (30 + offset) * S, T0 + 30 * S, newest) == min(offset, 0) * S
        assert not poison(T0 + (30 + offset) * S, T0 + 30 * S, newest)


def test_a_stamp_an_hour_ahead_is_poison_for_any_camera_offset():
    for offset in (-60, 0, 60):
        newest = Newest(T0 + offset * S, T0)
        assert poison(T0 + (3600 + offset) * S, T0 + S // 30, newest)


def test_both_conditions_are_needed_and_each_limit_is_exclusive():
    newest = Newest(T0, T0)
    assert not poison(T0 + 6 * S, T0 + 5 * S, newest)  # 6 s ahead of the newest, 1 s ahead of the clock
    assert not poison(T0 + S // 2, T0 - 10 * S, newest)  # 10.5 s ahead of a clock that went back, 0.5 s gap
    assert not poison(T0 + 5 * S, T0, newest)  # exactly future_tolerance ahead: kept
    assert poison(T0 + 5 * S + 1, T0, newest)


def test_a_clock_that_stands_still_judges_by_how_far_the_stamps_ran_ahead():
    """Sim time before the first /clock message is 0: the camera's lead is then the whole stamp, so only a
    stamp more than future_tolerance beyond the newest one is poison."""
    newest = Newest(T0, 0)
    assert not poison(T0 + 5 * S, 0, newest)
    assert poison(T0 + 3600 * S, 0, newest)
