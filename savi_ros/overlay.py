"""Drawing of track masks, boxes and ids over RGB frames (numpy in, numpy out; no ROS).

Kept free of ROS so the demo orchestrator and the tracker node's ``debug_image`` can share it.
Colours come from a fixed palette indexed by track id, so an object keeps its colour through
occlusions and across runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

# Well separated RGB colours (hand picked); id 1 gets the first one.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)

BoxXYXY = tuple[float, float, float, float]


def track_color(track_id: int) -> tuple[int, int, int]:
    """RGB colour of a track id (>= 1); the same id always gets the same colour."""
    if track_id < 1:
        raise ValueError(f"track ids start at 1, got {track_id}")
    return PALETTE[(track_id - 1) % len(PALETTE)]


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be a uint8 [H,W,3] RGB array, got {desc}")


def colorize_labels(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB colour image of a label map (0 = black) and the boolean foreground mask."""
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"label_map must be an integer [H,W] array, got {label_map.dtype} {label_map.shape}")
    if label_map.size and int(label_map.min()) < 0:
        raise ValueError("label_map holds negative ids")
    ids = label_map.astype(np.int64)
    lut = np.zeros((len(PALETTE) + 1, 3), np.uint8)
    lut[1:] = np.asarray(PALETTE, np.uint8)
    foreground = ids > 0
    colours = lut[np.where(foreground, (ids - 1) % len(PALETTE) + 1, 0)]
    return colours, foreground


def _boundaries(label_map: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (mask outlines)."""
    edge = np.zeros(label_map.shape, bool)
    edge[:, :-1] |= label_map[:, :-1] != label_map[:, 1:]
    edge[:-1, :] |= label_map[:-1, :] != label_map[1:, :]
    return edge


def draw_overlay(
    image: np.ndarray,
    label_map: np.ndarray | None = None,
    boxes: Mapping[int, BoxXYXY] | None = None,
    captions: Mapping[int, str] | None = None,
    alpha: float = 0.45,
    banner: str = "",
) -> np.ndarray:
    """New RGB image: ``image`` with track masks blended in, outlined, and boxes labelled with ids.

    ``label_map`` [H,W] holds track ids (0 = none); ``boxes`` maps track id -> (x0, y0, x1, y1) in
    pixels; ``captions`` overrides the text drawn at a box (default: the id). ``banner`` is written
    in the top-left corner (e.g. scene/frame or a warning).
    """
    _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    out = image.copy()
    height, width = image.shape[:2]
    if label_map is not None:
        if label_map.shape != (height, width):
            raise ValueError(f"label_map shape {label_map.shape} differs from image size {(height, width)}")
        colours, foreground = colorize_labels(label_map)
        blended = (out.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha).round()
        out[foreground] = blended[foreground].astype(np.uint8)
        edge = _boundaries(label_map) & foreground
        out[edge] = colours[edge]
    scale = max(0.3, min(height, width) / 480.0)
    thickness = max(1, int(round(scale * 2)))
    for track_id, box in (boxes or {}).items():
        if len(box) != 4:
            raise ValueError(f"box of track {track_id} must be (x0, y0, x1, y1), got {box}")
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        colour = track_color(int(track_id))
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thickness)
        text = (captions or {}).get(track_id, str(track_id))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y0 - 2 if y0 - th - base - 2 >= 0 else min(height - 1, y0 + th + 2)
        cv2.rectangle(out, (x0, ty - th - 1), (x0 + tw + 2, ty + base - 1), colour, -1)
        cv2.putText(out, text, (x0 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if banner:
        cv2.putText(out, banner, (4, int(14 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            out, banner, (4, int(14 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Grid image of RGB tiles (one list per row, all tiles the same size); short rows are padded black."""
    if not rows or not any(rows):
        raise ValueError("contact_sheet needs at least one tile")
    first = next(tile for row in rows for tile in row)
    _check_image(first)
    tile_h, tile_w = first.shape[:2]
    for row in rows:
        for tile in row:
            _check_image(tile)
            if tile.shape != first.shape:
                raise ValueError(f"all tiles must share one size, got {tile.shape} and {first.shape}")
    columns = max(len(row) for row in rows)
    sheet = np.zeros((len(rows) * (tile_h + gap) - gap, columns * (tile_w + gap) - gap, 3), np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = r * (tile_h + gap), c * (tile_w + gap)
            sheet[y : y + tile_h, x : x + tile_w] = tile
    return sheet
