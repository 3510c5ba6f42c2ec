"""Image age on arrival and the slow-transport warning (savi_ros.transport), with explicit times."""

from __future__ import annotations

from savi_ros.transport import FIX, MAX_PUBLISHERS, ImageAges, PublisherGaps

MS = 1_000_000
T0 = 1_700_000_000 * 10**9  # the system clock, ns
LARGE, SMALL = 921_600, 400_000  # 640x480 rgb8; an image that fits Fast DDS's default segment


def arrive(
    ages: ImageAges, n: int, transport_ms: float, nbytes: int = LARGE, exposure_ms: float = 0.0, sim_time: bool = False
) -> list:
    """``n`` images published ``exposure_ms`` after their stamp and received ``transport_ms`` later."""
    warnings = []
    for i in range(n):
        stamp = T0 + i * 33 * MS
        source = stamp + int(exposure_ms * MS)
        warnings.append(ages.add(stamp, source + int(transport_ms * MS), source, nbytes, sim_time))
    return warnings


def test_large_images_slower_than_15_ms_warn_once_with_the_fix_after_30_of_them():
    ages = ImageAges()
    warnings = arrive(ages, 60, transport_ms=20.0)
    assert warnings[:29] == [None] * 29
    assert "take 20.0 ms (median of the last 30)" in warnings[29] and FIX in warnings[29]
    assert warnings[30:] == [None] * 30  # once
    assert ages.values() == {
        "image_age_ms_p50": "20.0",
        "image_age_ms_max": "20.0",
        "large_image_transport_ms_p50": "20.0",
    }


def test_fast_transport_small_images_and_a_few_stalls_do_not_warn():
    ages = ImageAges()
    assert arrive(ages, 100, transport_ms=3.0) == [None] * 100  # the project's profile: a few ms
    assert arrive(ImageAges(), 100, transport_ms=40.0, nbytes=SMALL) == [None] * 100  # not a large image
    mixed = ImageAges()
    assert arrive(mixed, 60, transport_ms=3.0) == [None] * 60
    assert arrive(mixed, 40, transport_ms=500.0) == [None] * 40  # 40 stalls of 100: the median is 3 ms
    assert mixed.values()["large_image_transport_ms_p50"] == "3.0"
    assert mixed.values()["image_age_ms_max"] == "500.0"


def test_a_camera_stamping_at_exposure_is_not_blamed_on_the_transport():
    ages = ImageAges()
    assert arrive(ages, 100, transport_ms=2.0, exposure_ms=40.0) == [None] * 100
    assert ages.values() == {
        "image_age_ms_p50": "42.0",
        "image_age_ms_max": "42.0",
        "large_image_transport_ms_p50": "2.0",
    }


def test_age_only_where_the_clocks_compare():
    sim = ImageAges()
    arrive(sim, 5, transport_ms=2.0, sim_time=True)  # stamps are sim time
    assert sim.values()["image_age_ms_p50"] == "n/a" and sim.values()["large_image_transport_ms_p50"] == "2.0"
    offset = ImageAges()
    offset.add(T0 - 60 * 10**9, T0 + 2 * MS, T0, LARGE, False)  # a camera clock a minute behind
    offset.add(T0 + 60 * 10**9, T0 + 2 * MS, T0, LARGE, False)  # and one a minute ahead
    offset.add(T0, T0 + 2 * MS, 0, LARGE, False)  # no source timestamp from the rmw
    assert offset.values() == {
        "image_age_ms_p50": "2.0",
        "image_age_ms_max": "2.0",
        "large_image_transport_ms_p50": "2.0",
    }


def test_gaps_in_a_publishers_sequence_count_its_missed_images():
    gaps = PublisherGaps()
    assert gaps.add(b"a", 7) == 0  # first heard of: a late start is no gap
    assert [gaps.add(b"a", n) for n in (8, 11, 12)] == [0, 2, 0]
    assert gaps.add(b"b", 1) == 0 and gaps.add(b"b", 3) == 1  # per publisher
    assert gaps.add(b"a", 2) == 0 and gaps.add(b"a", 4) == 1  # restarted: counts from its new sequence
    assert gaps.add(b"a", None) == 0 and gaps.add(b"a", 2**64 - 1) == 0  # rmw without sequence numbers
    gaps.clear()
    assert gaps.add(b"a", 100) == 0  # a pause of the subscription is no gap


def test_gaps_remember_a_bounded_number_of_publishers():
    gaps = PublisherGaps()
    for n in range(MAX_PUBLISHERS + 1):
        gaps.add(bytes([n]), 1)
    assert gaps.add(bytes([0]), 5) == 0  # forgotten: the oldest
    assert gaps.add(bytes([MAX_PUBLISHERS]), 5) == 3
