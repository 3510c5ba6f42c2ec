"""Object outlines as polygons around the origin, in pixels, (row, col) per vertex.

Objects only translate over a video, so an outline is built once per object and its rasterisation
at each frame is the same polygon shifted: that is what makes the flow exact.
"""

from __future__ import annotations

import numpy as np

#: The primitive family (the original generator's) and the families added for randomized worlds.
PRIMITIVES = ("circle", "ellipse", "rectangle", "triangle", "star", "hexagon")
SHAPES = PRIMITIVES + ("polygon", "blob", "thin", "cross")


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
    elif shape == "polygon":  # random star-convex polygon, 5 to 9 corners
        n = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0.0, 2.0 * np.pi, n))
        radii = radius * rng.uniform(0.45, 1.0, n)
        pts = np.stack([radii * np.sin(angles), radii * np.cos(angles)], -1)
    elif shape == "blob":  # smooth radial profile: a few low harmonics
        angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        profile = np.ones_like(angles)
        for k in (2, 3, 4):
            profile += rng.uniform(0.0, 0.35 / k * 2) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
        radii = radius * profile / profile.max()
        pts = np.stack([radii * np.sin(angles), radii * np.cos(angles)], -1)
    elif shape == "thin":  # a stick: long and narrow
        width = radius * float(rng.uniform(0.12, 0.3))
        pts = np.array([[-width, -radius], [-width, radius], [width, radius], [width, -radius]])
    elif shape == "cross":
        arm = radius * float(rng.uniform(0.25, 0.4))
        r, a = radius, arm
        pts = np.array(
            [[-a, -r], [-a, -a], [-r, -a], [-r, a], [-a, a], [-a, r], [a, r], [a, a], [r, a], [r, -a], [a, -a], [a, -r]]
        )
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    c, s = np.cos(phase), np.sin(phase)
    rot = np.array([[c, -s], [s, c]])
    pts = pts @ rot.T
    # Centre the outline on its bounding box so bouncing limits are symmetric.
    pts -= (pts.min(0) + pts.max(0)) / 2.0
    return pts.astype(np.float64)
