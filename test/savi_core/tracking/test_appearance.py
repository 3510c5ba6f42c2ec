"""Track appearance memory: references, watched pairs, and the trade test on painted label maps."""

import numpy as np
import pytest

from savi_core.tracking.appearance import APART_FRAMES, AppearanceMemory, colour_histogram

RED, BLUE, OTHER_RED = (220, 30, 30), (30, 40, 220), (205, 20, 10)


def scene(left_colour, right_colour, gap: int = 0):
    """Two 20x20 squares side by side (touching when ``gap`` is 0), labelled 1 (left) and 2 (right)."""
    image = np.full((40, 80, 3), 128, np.uint8)
    labels = np.zeros((40, 80), np.uint16)
    image[10:30, 10:30], labels[10:30, 10:30] = left_colour, 1
    image[10:30, 30 + gap : 50 + gap], labels[10:30, 30 + gap : 50 + gap] = right_colour, 2
    boxes = {1: np.array([10.0, 10, 30, 30]), 2: np.array([30.0 + gap, 10, 50 + gap, 30])}
    return image, labels, boxes


def swapped(labels):
    """The label map of two slots that traded objects."""
    out = labels.copy()
    out[labels == 1], out[labels == 2] = 2, 1
    return out


def flip(boxes):
    return {1: boxes[2], 2: boxes[1]}


def trades(memory, image, labels, boxes, margin, anchor_area=400.0):
    """The trades found, with each mask's area counted and every track anchored by a box of ``anchor_area``."""
    areas = {k: float((labels == k).sum()) for k in boxes}
    return memory.trades(image, labels, boxes, areas, {k: anchor_area for k in boxes}, margin)


def test_colour_histogram_is_normalised_and_none_without_pixels():
    image, labels, boxes = scene(RED, BLUE)
    hist = colour_histogram(image, labels, 1, boxes[1])
    assert hist.shape == (8, 8, 8) and hist.sum() == pytest.approx(1.0) and hist.max() == pytest.approx(1.0)
    assert colour_histogram(image, labels, 3, boxes[1]) is None


def test_tracks_that_traded_objects_are_found_and_right_ones_are_not():
    memory = AppearanceMemory()
    image, labels, boxes = scene(RED, BLUE)
    memory.update(image, labels, boxes, whole={1, 2}, live={1, 2})
    assert set(memory.references) == {1, 2} and memory.watched == {(1, 2): 0}  # touching boxes: watched
    assert trades(memory, image, labels, boxes, 0.5) == []
    assert trades(memory, image, swapped(labels), flip(boxes), 0.5) == [(1, 2)]
    assert trades(memory, image, swapped(labels), flip(boxes), 2.0) == []  # the margin is the bar


def test_a_mask_too_large_for_the_other_object_does_not_trade():
    """A slot spread over the background matches any reference; its track keeps its id."""
    memory = AppearanceMemory()
    image, labels, boxes = scene(RED, BLUE)
    memory.update(image, labels, boxes, whole={1, 2}, live={1, 2})
    assert trades(memory, image, swapped(labels), flip(boxes), 0.5, anchor_area=400.0) == [(1, 2)]
    assert trades(memory, image, swapped(labels), flip(boxes), 0.5, anchor_area=199.0) == []  # 400 px > 2 x 199


def test_objects_of_the_same_colours_never_trade():
    memory = AppearanceMemory()
    image, labels, boxes = scene(RED, OTHER_RED)
    memory.update(image, labels, boxes, whole={1, 2}, live={1, 2})
    assert trades(memory, image, swapped(labels), flip(boxes), 0.5) == []


def test_pairs_are_watched_only_after_touching_until_apart_long_enough():
    memory = AppearanceMemory()
    image, labels, boxes = scene(RED, BLUE, gap=10)
    memory.update(image, labels, boxes, whole={1, 2}, live={1, 2})
    assert memory.watched == {}
    assert trades(memory, image, swapped(labels), flip(boxes), 0.5) == []  # never touched: no trade
    touching = scene(RED, BLUE)
    memory.update(*touching, whole={1, 2}, live={1, 2})
    for frame in range(APART_FRAMES):
        assert (1, 2) in memory.watched
        memory.update(image, labels, boxes, whole={1, 2}, live={1, 2})
    assert memory.watched == {}


def test_references_stay_fixed_while_watched_and_ended_tracks_are_forgotten():
    memory = AppearanceMemory()
    image, labels, boxes = scene(RED, BLUE)
    memory.update(image, labels, boxes, whole={1, 2}, live={1, 2})
    before = memory.references[1].copy()
    memory.update(image, swapped(labels), flip(boxes), whole={1, 2}, live={1, 2})  # watched: no learning
    np.testing.assert_array_equal(memory.references[1], before)
    memory.update(image, labels, {2: boxes[2]}, whole={2}, live={2})
    assert set(memory.references) == {2} and memory.watched == {}
