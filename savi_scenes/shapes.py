"""Object outlines as polygons around the origin, in pixels, (row, col) per vertex.

Objects only translate over a video, so an outline is built once per object and its rasterisation
at each frame is the same polygon shifted: that is what makes the flow exact.
"""
from __future__ import annotations

import numpy as np

SHAPES = ("circle", "ellipse", "rectangle", "triangle", "star", "hexagon")


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    angles = phase + np.arange(n) * (2.0 * np.pi / n)
    return np.stack([radius * np.sin(angles), radius * np.cos(angles)], -1)


def make_outline(shape: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices ``[V,2]`` (row, col) of a ``shape`` whose extent is about ``size`` pixels.

    Each shape gets a random orientation (fixed for the video) and, where it has one, aspect ratio.
    """
    radius = size / 2.0
    phase = float(rng.uniform(0.0, 2.0 * np.pi))
    if shape == "circle":
        pts = _regular(32, radius, 0.0)
    elif shape == "ellipse":
        pts = _regular(32, radius, 0.0) * np.array([float(rng.uniform(0.45, 0.75)), 1.0])
    elif shape == "rectangle":
        aspect = float(rng.uniform(0.5, 1.0))
        half = radius / np.sqrt(1.0 + aspect**2)
        pts = np.array([[-aspect, -1.0], [-aspect, 1.0], [aspect, 1.0], [aspect, -1.0]]) * half
    elif shape == "triangle":
        pts = _regular(3, radius, 0.0)
    elif shape == "star":
        outer = _regular(5, radius, 0.0)
        inner = _regular(5, radius * 0.45, np.pi / 5)
        pts = np.stack([outer, inner], 1).reshape(10, 2)
    elif shape == "hexagon":
        pts = _regular(6, radius, 0.0)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    c, s = np.cos(phase), np.sin(phase)
    rot = np.array([[c, -s], [s, c]])
    pts = pts @ rot.T
    # Centre the outline on its bounding box so bouncing limits are symmetric.
    pts -= (pts.min(0) + pts.max(0)) / 2.0
    return pts.astype(np.float64)
