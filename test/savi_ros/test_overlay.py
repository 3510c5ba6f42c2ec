"""Overlay drawing on numpy arrays: colours per id, masks, outlines, boxes, contact sheets."""

import cv2
import numpy as np
import pytest

from savi_ros.overlay import PALETTE, colorize_labels, contact_sheet, draw_overlay, track_color


def test_track_colours_are_fixed_distinct_and_cycle():
    assert track_color(1) == PALETTE[0] and track_color(3) == PALETTE[2]
    assert len({track_color(i) for i in range(1, len(PALETTE) + 1)}) == len(PALETTE)
    assert track_color(len(PALETTE) + 1) == track_color(1)
    with pytest.raises(ValueError, match="start at 1"):
        track_color(0)


def test_colorize_labels_maps_ids_to_palette():
    labels = np.array([[0, 1], [2, 300]], np.uint16)
    colours, fg = colorize_labels(labels)
    assert fg.tolist() == [[False, True], [True, True]]
    assert tuple(colours[0, 0]) == (0, 0, 0)
    assert tuple(colours[0, 1]) == track_color(1)
    assert tuple(colours[1, 1]) == track_color(300)


def test_masks_blend_only_where_tracks_are_and_input_is_untouched():
    image = np.full((40, 60, 3), 100, np.uint8)
    labels = np.zeros((40, 60), np.uint16)
    labels[10:30, 20:50] = 2
    out = draw_overlay(image, labels, alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 100).all()  # not drawn in place
    assert (out[:5] == 100).all() and (out[:, :15] == 100).all()  # background unchanged
    expected = np.round((100 + np.array(track_color(2))) / 2).astype(np.uint8)
    np.testing.assert_array_equal(out[20, 35], expected)  # interior: blended colour
    np.testing.assert_array_equal(out[29, 35], track_color(2))  # lower outline: solid colour


def test_boxes_and_ids_are_drawn_in_track_colour():
    image = np.zeros((120, 160, 3), np.uint8)
    out = draw_overlay(image, None, boxes={5: (30.0, 40.0, 110.0, 100.0)})
    colour = np.array(track_color(5))
    assert (out[70, 30] == colour).all() and (out[70, 110] == colour).all()  # left and right edges
    assert (out[100, 70] == colour).all()  # bottom edge
    assert (out[70, 70] == 0).all()  # inside stays clear
    assert (out[:40, 30:60] != 0).any()  # id label above the box


def test_banner_is_written():
    """White text outlined in black, in the top-left corner, as wide as the text, nowhere else; another text
    draws other pixels."""
    image = np.full((60, 200, 3), 100, np.uint8)
    labels = np.zeros((60, 200), np.uint16)
    labels[40:55, 150:190] = 1
    banner = "scene 0 frame 3"
    plain = draw_overlay(image, labels)
    written = draw_overlay(image, labels, banner=banner)
    changed = (written != plain).any(axis=2)
    rows, cols = np.nonzero(changed)
    (text_width, text_height), baseline = cv2.getTextSize(banner, cv2.FONT_HERSHEY_SIMPLEX, 0.3, 1)
    assert rows.max() < 4 + text_height + baseline + 4 and cols.min() <= 6
    assert 4 + text_width - 4 <= cols.max() <= 4 + text_width + 4
    grey = written[changed].astype(int).sum(axis=1) // 3  # anti-aliased: few pixels are pure white or black
    assert (grey > 180).sum() >= 30 and grey.max() == 255  # the text: white
    assert (grey < 40).sum() >= 30 and grey.min() == 0  # its outline: black
    assert (written[~changed] == plain[~changed]).all() and (written[45, 160] == plain[45, 160]).all()
    assert (draw_overlay(image, labels, banner="scene 0 frame 4") != written).any()


@pytest.mark.parametrize(
    "image,labels,match",
    [
        (np.zeros((4, 4), np.uint8), None, "uint8 \\[H,W,3\\]"),
        (np.zeros((4, 4, 3), np.float32), None, "uint8 \\[H,W,3\\]"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint16), "differs from image size"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), "integer"),
    ],
)
def test_bad_inputs_are_refused(image, labels, match):
    with pytest.raises(ValueError, match=match):
        draw_overlay(image, labels)


def test_contact_sheet_layout_and_padding():
    a = np.full((10, 20, 3), 50, np.uint8)
    b = np.full((10, 20, 3), 200, np.uint8)
    sheet = contact_sheet([[a, b, a], [b]], gap=2)
    assert sheet.shape == (2 * 10 + 2, 3 * 20 + 2 * 2, 3)
    assert (sheet[0:10, 0:20] == 50).all() and (sheet[0:10, 22:42] == 200).all()
    assert (sheet[12:22, 0:20] == 200).all() and (sheet[12:22, 22:] == 0).all()  # short row padded black
    with pytest.raises(ValueError, match="one size"):
        contact_sheet([[a, np.zeros((11, 20, 3), np.uint8)]])
    with pytest.raises(ValueError, match="at least one tile"):
        contact_sheet([[]])
