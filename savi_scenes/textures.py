"""Object and background textures.

An object texture is a function of object-local coordinates, evaluated on the separable row and
column coordinates of a crop (cheap outer sums / index products), returning palette indices. It
moves rigidly with the object, so the rendered pixels follow the ground-truth flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: The original generator's families, then the ones added for randomized worlds.
OBJECT_TEXTURES = ("solid", "stripes", "checker", "noise")
MORE_OBJECT_TEXTURES = ("dots", "ramp")
BACKGROUNDS = ("noise", "gradient", "checker", "stripes")
MORE_BACKGROUNDS = ("plain", "multicolour", "bold_stripes", "multiscale_noise", "photo")
#: Photographs shipped inside scikit-image, with the licences its documentation gives them.
PHOTOS = {
    "astronaut": "public domain (NASA)",
    "coffee": "CC0 (Rachel Michetti)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "rocket": "public domain (SpaceX)",
}
_NOISE_LEVELS = 8
_NOISE_TILE = 64


def random_color(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """An RGB uint8 colour with random hue and saturation/value drawn from the given ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0]


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth value noise in [0, 1] of shape [height, width] with features about ``cell`` px wide."""
    gh, gw = max(2, int(np.ceil(height / cell)) + 1), max(2, int(np.ceil(width / cell)) + 1)
    grid = rng.random((gh, gw)).astype(np.float32)
    noise = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(noise.min()), float(noise.max())
    return (noise - lo) / max(hi - lo, 1e-6)


@dataclass
class ObjectTexture:
    """Palette-indexed texture in object-local pixel coordinates."""

    kind: str
    palette: np.ndarray  # uint8 [L,3]
    period: float = 1.0  # stripes / checker period in pixels
    angle: float = 0.0  # stripes direction
    tile: np.ndarray | None = None  # noise: int levels [S,S]

    def levels(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Palette indices ``[len(rows), len(cols)]`` at local coordinates (1-D row / col arrays)."""
        return self.levels_at(rows[:, None], cols[None, :])

    def levels_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Palette indices at local coordinates given as broadcastable arrays (a rotated or scaled object
        samples its texture on a grid that is not axis-aligned)."""
        shape = np.broadcast_shapes(np.shape(rows), np.shape(cols))
        if self.kind == "solid":
            return np.zeros(shape, np.intp)
        if self.kind == "stripes":
            s = rows * np.cos(self.angle) + cols * np.sin(self.angle)
            return np.floor(s / self.period).astype(np.intp) & 1
        if self.kind == "checker":
            r = np.floor(rows / self.period).astype(np.intp)
            c = np.floor(cols / self.period).astype(np.intp)
            return (r + c) & 1
        if self.kind == "noise":
            size = self.tile.shape[0]
            r = np.floor(rows).astype(np.intp) % size
            c = np.floor(cols).astype(np.intp) % size
            return self.tile[np.broadcast_to(r, shape), np.broadcast_to(c, shape)]
        if self.kind == "dots":
            r = (rows / self.period) % 1.0 - 0.5
            c = (cols / self.period) % 1.0 - 0.5
            return ((r**2 + c**2) < 0.09).astype(np.intp)
        if self.kind == "ramp":
            s = rows * np.cos(self.angle) + cols * np.sin(self.angle)
            levels = len(self.palette)
            return np.clip(np.floor((s / self.period + 0.5) * levels), 0, levels - 1).astype(np.intp)
        raise ValueError(f"unknown object texture {self.kind!r}")


def random_object_texture(
    rng: np.random.Generator,
    size: float,
    textured: bool,
    kinds: tuple[str, ...] = OBJECT_TEXTURES,
    saturation: tuple[float, float] = (0.55, 1.0),
) -> ObjectTexture:
    """A texture for an object of extent ``size`` px: solid when untextured, else one of ``kinds``."""
    base = random_color(rng, saturation, (0.55, 1.0))
    kind = str(rng.choice(kinds)) if textured else "solid"
    if kind == "solid":
        return ObjectTexture(kind, base[None])
    other = np.clip(base.astype(np.int32) * rng.uniform(0.35, 0.65), 0, 255).astype(np.uint8)
    if kind == "ramp":
        t = np.linspace(0.0, 1.0, _NOISE_LEVELS)[:, None]
        palette = np.round(base * (1 - t) + random_color(rng, saturation, (0.3, 1.0)) * t).astype(np.uint8)
        return ObjectTexture(kind, palette, period=max(2.0, float(size)), angle=float(rng.uniform(0, 2 * np.pi)))
    if kind == "noise":
        t = np.linspace(0.0, 1.0, _NOISE_LEVELS)[:, None]
        palette = np.round(base * (1 - t) + other * t).astype(np.uint8)
        tile = _smooth_noise(rng, _NOISE_TILE, _NOISE_TILE, max(2.0, size / 4.0))
        levels = np.minimum((tile * _NOISE_LEVELS).astype(np.intp), _NOISE_LEVELS - 1)
        return ObjectTexture(kind, palette, tile=levels)
    period = max(1.5, float(size) * float(rng.uniform(0.12, 0.3)))
    return ObjectTexture(kind, np.stack([base, other]), period=period, angle=float(rng.uniform(0, np.pi)))


def _photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of one of the PHOTOS, resized to ``[height, width]``, randomly mirrored."""
    import skimage.data

    image = getattr(skimage.data, str(rng.choice(sorted(PHOTOS))))()
    ih, iw = image.shape[:2]
    frac = float(rng.uniform(0.35, 1.0))
    ch = max(8, min(ih, int(round(ih * frac))))
    cw = max(8, min(iw, int(round(ch * width / height))))
    ch = min(ch, int(round(cw * height / width))) if cw == iw else ch
    r0, c0 = int(rng.integers(0, ih - ch + 1)), int(rng.integers(0, iw - cw + 1))
    crop = np.ascontiguousarray(image[r0 : r0 + ch, c0 : c0 + cw])
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def _bold_background(rng: np.random.Generator, kind: str, height: int, width: int, scale: float) -> np.ndarray:
    """The randomized-world backgrounds: as saturated and multi-coloured as objects can be."""
    if kind == "photo":
        return _photo(rng, height, width)
    colors = np.stack([random_color(rng, (0.0, 1.0), (0.2, 1.0)) for _ in range(4)]).astype(np.float32)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    if kind == "plain":
        return np.broadcast_to(colors[0].astype(np.uint8), (height, width, 3)).copy()
    if kind == "bold_stripes":
        p, a = scale * float(rng.uniform(0.03, 0.5)), float(rng.uniform(0, np.pi))
        t = (np.floor((rows * np.sin(a) + cols * np.cos(a)) / p) % 2).astype(np.float32)
        t = np.broadcast_to(t, (height, width))[..., None]
        return np.round(colors[0] * (1 - t) + colors[1] * t).astype(np.uint8)
    if kind == "multicolour":  # smooth fields of 4 colours, each weighting where its noise is high
        weights = (
            np.stack([_smooth_noise(rng, height, width, scale * float(rng.uniform(0.2, 0.6))) for _ in range(4)], -1)
            ** 3
        )
    else:  # multiscale_noise: fine to coarse noise mixing three colours
        weights = np.stack([_smooth_noise(rng, height, width, scale * f) for f in (0.04, 0.15, 0.5)], -1) ** 2
        colors = colors[:3]
    weights /= weights.sum(-1, keepdims=True) + 1e-6
    return np.round(weights @ colors).clip(0, 255).astype(np.uint8)


def random_background(
    rng: np.random.Generator,
    height: int,
    width: int,
    textured: bool,
    scale: float,
    kinds: tuple[str, ...] = BACKGROUNDS,
    saturation: tuple[float, float] = (0.0, 0.45),
) -> np.ndarray:
    """A uint8 RGB canvas ``[height, width, 3]`` of one of ``kinds``; ``scale`` (px) sets the size of
    its features. The original kinds are less saturated than objects (as in MOVi) unless ``saturation``
    says otherwise; the randomized-world kinds (MORE_BACKGROUNDS) are not."""
    c1 = random_color(rng, saturation, (0.25, 0.85)).astype(np.float32)
    if not textured:
        return np.broadcast_to(c1.astype(np.uint8), (height, width, 3)).copy()
    c2 = random_color(rng, saturation, (0.25, 0.85)).astype(np.float32)
    kind = str(rng.choice(kinds))
    if kind in MORE_BACKGROUNDS:
        return _bold_background(rng, kind, height, width, scale)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    if kind == "noise":
        t = _smooth_noise(rng, height, width, scale * float(rng.uniform(0.1, 0.3)))
    elif kind == "gradient":
        a = float(rng.uniform(0, 2 * np.pi))
        s = rows * np.sin(a) + cols * np.cos(a)
        t = (s - s.min()) / max(float(s.max() - s.min()), 1e-6)
        # A little fine noise so the flow of a panning gradient is observable everywhere.
        t = 0.8 * t + 0.2 * _smooth_noise(rng, height, width, scale * 0.05)
    elif kind == "checker":
        p = scale * float(rng.uniform(0.08, 0.2))
        t = ((np.floor(rows / p) + np.floor(cols / p)) % 2).astype(np.float32)
    else:  # stripes
        p, a = scale * float(rng.uniform(0.06, 0.15)), float(rng.uniform(0, np.pi))
        t = (np.floor((rows * np.sin(a) + cols * np.cos(a)) / p) % 2).astype(np.float32)
    t = np.broadcast_to(t, (height, width))[..., None]
    return np.round(c1 * (1 - t) + c2 * t).astype(np.uint8)
