"""MOVi-like synthetic videos with exact ground truth, in numpy/OpenCV, deterministic per seed.

Objects are textured polygons that translate (sub-pixel) and bounce off the image borders; a fixed
random depth order makes them occlude each other; the background is a textured canvas that may pan.
Because every object moves rigidly by a known displacement and is rasterised from the same polygon
shifted by it, flow is exact: a pixel of object i at frame t has forward flow
``position_i(t+1) - position_i(t)``, a background pixel the background's displacement.

Coordinates: a pixel at (row r, col c) covers [r, r+1] x [c, c+1]; flow channels are (d_row, d_col)
in pixels, MOVi's convention; boxes are MOVi's normalised [ymin, xmin, ymax, xmax].
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple, Self

import cv2
import numpy as np

from savi_scenes.shapes import PRIMITIVES, SHAPES, make_outline
from savi_scenes.textures import (
    BACKGROUNDS,
    MORE_BACKGROUNDS,
    MORE_OBJECT_TEXTURES,
    OBJECT_TEXTURES,
    ObjectTexture,
    random_background,
    random_object_texture,
)

ALL_BACKGROUNDS = BACKGROUNDS + MORE_BACKGROUNDS
ALL_TEXTURES = OBJECT_TEXTURES + MORE_OBJECT_TEXTURES

_SHIFT = 4  # cv2 sub-pixel bits: vertices on a 1/16 px grid
_SCALE = float(1 << _SHIFT)
_PLACEMENT_TRIES = 30


@dataclass
class BaseSceneConfig:
    """What every scene family has, with the same defaults: frame size, video length, object count. Each
    family checks them (its own limits) in its ``__post_init__``."""

    height: int = 64
    width: int = 64
    num_frames: int = 24
    min_objects: int = 2
    max_objects: int = 6

    @classmethod
    def from_dict(cls, values: dict) -> Self:
        """Build from a (YAML) dict, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        return cls(**values)


def _pair(value, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"SceneConfig.{name} must be a (low, high) pair, got {value!r}") from None
    if not 0.0 <= lo <= hi:
        raise ValueError(f"SceneConfig.{name} must satisfy 0 <= low <= high, got {value!r}")
    return lo, hi


@dataclass
class SceneConfig(BaseSceneConfig):
    """What a synthetic scene looks like. Sizes and speeds are relative to ``min(height, width)``."""

    size_range: tuple[float, float] = (0.18, 0.4)  # object extent
    speed_range: tuple[float, float] = (0.01, 0.05)  # object displacement per frame
    camera_pan: bool = False  # the background translates over the video
    pan_speed_range: tuple[float, float] = (0.01, 0.03)
    textured: bool = True  # textured objects and background (else solid)
    # Named families, so that any of them can be held out of training. The defaults are the original
    # generator's (muted backgrounds, saturated objects); the same seed then gives the same scene.
    shapes: tuple[str, ...] = field(default=PRIMITIVES)
    backgrounds: tuple[str, ...] = field(default=BACKGROUNDS)
    textures: tuple[str, ...] = field(default=OBJECT_TEXTURES)
    object_saturation: tuple[float, float] = (0.55, 1.0)
    background_saturation: tuple[float, float] = (0.0, 0.45)
    effects: bool = False  # blur, brightness/contrast and sensor noise per video
    rotation_range: tuple[float, float] = (0.0, 0.0)  # |angular speed| of each object, radians per frame
    scale_range: tuple[float, float] = (1.0, 1.0)  # each object's size on the last frame / on the first
    distractors: tuple[int, int] = (0, 0)  # shapes painted on the background (not objects)
    zoom_range: tuple[float, float] = (1.0, 1.0)  # camera zoom: magnification at one end of the video
    # Re-identification families: objects that vanish and come back.
    occluder: bool = False  # a static pillar in front of every object, wide enough
    #                                                   that an object passing behind it is hidden whole
    exits: bool = False  # objects leave the view whole and come back (they
    #                                                   bounce off walls beyond the image instead of its borders)

    def __post_init__(self) -> None:
        for name in ("height", "width", "num_frames", "min_objects", "max_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"SceneConfig.{name} must be an int, got {value!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"SceneConfig height/width must be >= 8, got {self.height}x{self.width}")
        if self.num_frames < 1:
            raise ValueError(f"SceneConfig.num_frames must be >= 1, got {self.num_frames}")
        if not 1 <= self.min_objects <= self.max_objects <= 254:
            raise ValueError(
                f"SceneConfig needs 1 <= min_objects <= max_objects <= 254, got {self.min_objects}..{self.max_objects}"
            )
        self.size_range = _pair(self.size_range, "size_range")
        if self.size_range[0] <= 0.0 or self.size_range[1] > 1.0:
            raise ValueError(f"SceneConfig.size_range must lie in (0, 1], got {self.size_range}")
        self.speed_range = _pair(self.speed_range, "speed_range")
        self.pan_speed_range = _pair(self.pan_speed_range, "pan_speed_range")
        self.rotation_range = _pair(self.rotation_range, "rotation_range")
        self.scale_range = _pair(self.scale_range, "scale_range")
        if self.scale_range[0] <= 0.0:
            raise ValueError(f"SceneConfig.scale_range must be positive, got {self.scale_range}")
        self.zoom_range = _pair(self.zoom_range, "zoom_range")
        if self.zoom_range[0] < 1.0:
            raise ValueError(
                f"SceneConfig.zoom_range must be >= 1 (the camera never sees past the scene), got {self.zoom_range}"
            )
        for name, known in (("shapes", SHAPES), ("backgrounds", ALL_BACKGROUNDS), ("textures", ALL_TEXTURES)):
            values = tuple(getattr(self, name))
            unknown = [v for v in values if v not in known]
            if not values or unknown:
                raise ValueError(f"SceneConfig.{name} must be a non-empty subset of {known}, got {values}")
            setattr(self, name, values)
        for name in ("object_saturation", "background_saturation"):
            lo, hi = _pair(getattr(self, name), name)
            if hi > 1.0:
                raise ValueError(f"SceneConfig.{name} must lie in [0, 1], got {(lo, hi)}")
            setattr(self, name, (lo, hi))
        try:
            lo, hi = (int(v) for v in self.distractors)
        except (TypeError, ValueError):
            raise ValueError(
                f"SceneConfig.distractors must be a (low, high) pair of ints, got {self.distractors!r}"
            ) from None
        if not 0 <= lo <= hi <= 20:
            raise ValueError(f"SceneConfig.distractors must satisfy 0 <= low <= high <= 20, got {(lo, hi)}")
        self.distractors = (lo, hi)
        self.effects = bool(self.effects)
        self.occluder = bool(self.occluder)
        self.exits = bool(self.exits)
        self.camera_pan = bool(self.camera_pan)
        self.textured = bool(self.textured)


@dataclass
class Scene:
    """One rendered video and its ground truth (T frames, N objects)."""

    video: np.ndarray  # uint8 [T,H,W,3] RGB
    segmentations: np.ndarray  # uint8 [T,H,W], 0 background, i+1 object i
    forward_flow: np.ndarray  # float32 [T,H,W,2] (d_row, d_col) t -> t+1, last frame 0
    backward_flow: np.ndarray  # float32 [T,H,W,2] (d_row, d_col) t -> t-1, first frame 0
    boxes: np.ndarray  # float32 [T,N,4] normalised yxyx of visible pixels, 0 if invisible
    visible: np.ndarray  # bool [T,N] any pixel of the object visible
    classes: list[str]  # shape name per object
    positions: np.ndarray  # float32 [T,N,2] object centres (row, col) in pixels
    background_offset: np.ndarray  # float32 [T,2] background displacement since frame 0 (pixels)

    @property
    def num_objects(self) -> int:
        return len(self.classes)

    @classmethod
    def labelled(
        cls,
        video: np.ndarray,
        seg: np.ndarray,
        forward_flow: np.ndarray,
        backward_flow: np.ndarray,
        classes: list[str],
        positions: np.ndarray,
        background_offset: np.ndarray,
    ) -> "Scene":
        """A scene of rendered layers, every family's: boxes and visibility read off the segmentation."""
        boxes, visible = _boxes(seg, len(classes))
        positions, background_offset = positions.astype(np.float32), background_offset.astype(np.float32)
        return cls(video, seg, forward_flow, backward_flow, boxes, visible, classes, positions, background_offset)


@dataclass
class _Object:
    shape: str
    outline: np.ndarray  # [V,2] (row, col) around the centre
    texture: ObjectTexture
    size: float


def _bounce(start: np.ndarray, velocity: np.ndarray, lo: np.ndarray, hi: np.ndarray, num_frames: int) -> np.ndarray:
    """Positions ``[T,N,2]`` moving at ``velocity`` and reflecting off ``[lo, hi]`` per axis."""
    pos = np.empty((num_frames, *start.shape))
    p, v = start.copy(), velocity.copy()
    pos[0] = p
    for t in range(1, num_frames):
        p = p + v
        below, above = p < lo, p > hi
        p = np.where(below, 2 * lo - p, p)
        p = np.where(above, 2 * hi - p, p)
        v = np.where(below | above, -v, v)
        p = np.clip(p, lo, hi)  # an object faster than its free range stays inside
        pos[t] = p
    return pos


def _place(rng: np.random.Generator, objects: list[_Object], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Initial centres, fully in frame, each kept as far as it can from the previous ones."""
    centers = np.zeros((len(objects), 2))
    for i, obj in enumerate(objects):
        best, best_score = None, -np.inf
        for _ in range(_PLACEMENT_TRIES):
            cand = rng.uniform(lo[i], hi[i])
            if i == 0:
                best = cand
                break
            dist = np.linalg.norm(centers[:i] - cand, axis=1)
            reach = np.array([(objects[j].size + obj.size) / 2 for j in range(i)])
            score = float(np.min(dist / reach))
            if score > best_score:
                best, best_score = cand, score
            if score >= 0.8:  # little overlap: good enough
                break
        centers[i] = best
    return centers


def _boxes(seg: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    t, h, w = seg.shape
    boxes = np.zeros((t, num_objects, 4), np.float32)
    visible = np.zeros((t, num_objects), bool)
    for i in range(num_objects):
        m = seg == i + 1
        rows, cols = m.any(2), m.any(1)
        vis = rows.any(1)
        visible[:, i] = vis
        r0 = rows.argmax(1)
        r1 = h - rows[:, ::-1].argmax(1)
        c0 = cols.argmax(1)
        c1 = w - cols[:, ::-1].argmax(1)
        b = np.stack([r0 / h, c0 / w, r1 / h, c1 / w], -1).astype(np.float32)
        boxes[:, i] = np.where(vis[:, None], b, 0.0)
    return boxes, visible


def _render_background(
    canvas: np.ndarray, offsets: np.ndarray, base: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Frames ``[T,H,W,3]``: the canvas seen through a window that moves by -offset (bilinear)."""
    if not np.any(offsets):
        return np.broadcast_to(canvas[:height, :width], (len(offsets), height, width, 3)).copy()
    frames = np.empty((len(offsets), height, width, 3), np.uint8)
    for t, (dr, dc) in enumerate(offsets):
        center = (base[1] - dc + (width - 1) / 2.0, base[0] - dr + (height - 1) / 2.0)
        frames[t] = cv2.getRectSubPix(canvas, (width, height), center)
    return frames


def _paint_distractors(rng: np.random.Generator, canvas: np.ndarray, cfg: SceneConfig, ref: float) -> None:
    """Shapes drawn into the background canvas: object-like but never objects (they move with it)."""
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        shape = str(rng.choice(cfg.shapes))
        size = float(rng.uniform(*cfg.size_range)) * ref
        outline = make_outline(shape, size, rng)
        texture = random_object_texture(rng, size, cfg.textured, cfg.textures, cfg.object_saturation)
        center = rng.uniform((0, 0), canvas.shape[:2])
        mask = np.zeros(canvas.shape[:2], np.uint8)
        pts = np.round((outline + center - 0.5)[:, ::-1] * _SCALE).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, _SHIFT)
        rows = np.arange(canvas.shape[0]) + 0.5 - center[0]
        cols = np.arange(canvas.shape[1]) + 0.5 - center[1]
        np.copyto(canvas, texture.palette[texture.levels(rows, cols)], where=mask.view(bool)[..., None])


def _camera_effects(rng: np.random.Generator, video: np.ndarray, ref: float) -> np.ndarray:
    """A camera's look, drawn per video: defocus blur, brightness / contrast, and sensor noise per frame."""
    out = video.astype(np.float32)
    sigma = float(rng.uniform(0.0, 1.2)) * ref / 64.0
    if sigma > 0.3:
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    contrast, brightness = float(rng.uniform(0.6, 1.3)), float(rng.uniform(-40.0, 40.0))
    out = (out - 128.0) * contrast + 128.0 + brightness
    out += rng.normal(0.0, float(rng.uniform(0.0, 8.0)), out.shape).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _shape_transforms(rng: np.random.Generator, cfg: SceneConfig, n: int) -> np.ndarray | None:
    """Each object's ``[T,N,2,2]`` (row, col) transform from its outline to frame t: rotation at a
    constant angular speed and a constant per-frame growth factor. None when objects keep their shape,
    drawing nothing from ``rng`` (the same seed gives the same scene as without these options)."""
    if cfg.rotation_range == (0.0, 0.0) and cfg.scale_range == (1.0, 1.0):
        return None
    t = np.arange(cfg.num_frames, dtype=np.float64)[:, None]  # [T,1]
    spin = rng.uniform(*cfg.rotation_range, n) * rng.choice([-1.0, 1.0], n)
    angle = rng.uniform(0, 2 * np.pi, n) * (cfg.rotation_range[1] > 0) + spin * t  # [T,N]
    growth = rng.uniform(*cfg.scale_range, n) ** (1.0 / max(cfg.num_frames - 1, 1))
    scale = growth**t  # [T,N]
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)


class _Rendered(NamedTuple):
    """A scene's frames and their ground-truth layers, which the pillar and the zoom edit in place."""

    video: np.ndarray
    seg: np.ndarray
    forward_flow: np.ndarray
    backward_flow: np.ndarray


def _camera_zoom(rng: np.random.Generator, cfg: SceneConfig, rendered: _Rendered, positions: np.ndarray) -> np.ndarray:
    """Zoom the rendered video in place about the image centre, in (magnification 1 -> z) or out
    (z -> 1) at a constant rate, with z from ``zoom_range``; returns the zoomed object positions.

    Frame t shows the rendered frame magnified s_t times (s_t >= 1, so it never samples outside it).
    A point q of the rendered frame t is at c + s_t (q - c); with rendered flow f, the zoomed flow at
    p = c + s_t (q - c) is s_t' f(q) + (s_t' / s_t - 1)(p - c) to frame t' = t +- 1: exact for the
    background and translating objects, the ground truth's nearest sample of q otherwise."""
    video, seg, forward_flow, backward_flow = rendered
    num_t, h, w = seg.shape
    z = float(rng.uniform(*cfg.zoom_range))
    ramp = np.arange(num_t) / max(num_t - 1, 1)
    scale = z ** (ramp if rng.random() < 0.5 else 1.0 - ramp)  # [T]
    center = np.array([h / 2.0, w / 2.0])
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    from_center = np.stack([rows + 0.5 - center[0], cols + 0.5 - center[1]], -1)  # [H,W,2] (row, col)
    forward, backward = forward_flow.copy(), backward_flow.copy()

    def warp(image: np.ndarray, s: float, interpolation: int) -> np.ndarray:
        # cv2 pixel centres are integers, ours at +0.5: source = (p + 0.5 - c) / s + c - 0.5.
        inverse = np.array(
            [[1 / s, 0, (0.5 - center[1]) / s + center[1] - 0.5], [0, 1 / s, (0.5 - center[0]) / s + center[0] - 0.5]]
        )
        return cv2.warpAffine(
            image, inverse, (w, h), flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )

    for t, s in enumerate(scale):
        video[t] = warp(video[t], s, cv2.INTER_LINEAR)
        seg[t] = warp(seg[t], s, cv2.INTER_NEAREST)
        for other, flow, unzoomed in ((t + 1, forward_flow, forward), (t - 1, backward_flow, backward)):
            if 0 <= other < num_t:
                flow[t] = scale[other] * warp(unzoomed[t], s, cv2.INTER_NEAREST) + (scale[other] / s - 1) * from_center
    return center + scale[:, None, None] * (positions - center)


def _paint_pillar(rng: np.random.Generator, cfg: SceneConfig, rendered: _Rendered, widest: float) -> None:
    """A full-height pillar, static in the image, over every object: ``widest`` (the widest object) plus a
    margin wide, so an object behind it is hidden whole. Its own generator (seeded from the scene's seed)
    leaves every other draw of the scene as it is without a pillar. Its pixels are background (seg 0)."""
    h, w = cfg.height, cfg.width
    width = min(int(np.ceil(widest + 0.06 * min(h, w))), w // 2)
    x0 = int(rng.integers(w // 4, max(w // 4 + 1, 3 * w // 4 - width)))
    colour = rng.integers(40, 216, 3)
    shade = 0.75 + 0.25 * np.sin(np.linspace(0, np.pi, width))  # a round pillar: darker at its sides
    rendered.video[:, :, x0 : x0 + width] = (colour[None, :] * shade[:, None]).astype(np.uint8)
    for layer in rendered[1:]:
        layer[:, :, x0 : x0 + width] = 0


def generate_scene(seed: int, config: SceneConfig | None = None) -> Scene:
    """Render scene ``seed``; the same (seed, config) always gives the same scene."""
    cfg = config if config is not None else SceneConfig()
    rng = np.random.default_rng(int(seed))
    h, w, num_t = cfg.height, cfg.width, cfg.num_frames
    ref = float(min(h, w))

    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objects = []
    for _ in range(n):
        shape = str(rng.choice(cfg.shapes))
        size = float(rng.uniform(*cfg.size_range)) * ref
        objects.append(
            _Object(
                shape,
                make_outline(shape, size, rng),
                random_object_texture(rng, size, cfg.textured, cfg.textures, cfg.object_saturation),
                size,
            )
        )

    transforms = _shape_transforms(rng, cfg, n)  # [T,N,2,2] or None
    if transforms is None:
        half = np.array([np.abs(o.outline).max(0) for o in objects])  # [N,2] (rows, cols)
    else:  # any rotation: the radius; the largest size along the video
        largest = np.abs(np.linalg.det(transforms)).max(0) ** 0.5  # [N]
        half = np.array([np.linalg.norm(o.outline, axis=1).max() for o in objects])[:, None] * largest[:, None]
        half = np.repeat(half, 2, axis=1)
    lo = np.minimum(half, np.array([h, w]) / 2.0)
    hi = np.maximum(np.array([h, w]) - half, lo)
    start = _place(rng, objects, lo, hi)
    angle = rng.uniform(0, 2 * np.pi, n)
    speed = rng.uniform(*cfg.speed_range, n) * ref
    velocity = np.stack([np.sin(angle), np.cos(angle)], -1) * speed[:, None]
    if cfg.exits:  # walls one object size plus a margin beyond the image: each object leaves it whole
        beyond = half + 0.05 * ref
        positions = _bounce(start, velocity, -beyond, np.array([h, w]) + beyond, num_t)
    else:
        positions = _bounce(start, velocity, lo, hi, num_t)  # [T,N,2]
    depth = rng.permutation(n)  # drawing order, last on top

    pan = np.zeros(2)
    if cfg.camera_pan:
        a = rng.uniform(0, 2 * np.pi)
        pan = np.array([np.sin(a), np.cos(a)]) * rng.uniform(*cfg.pan_speed_range) * ref
    offsets = np.arange(num_t)[:, None] * pan[None, :]  # [T,2]
    extent = np.ceil(np.abs(pan) * max(num_t - 1, 0)).astype(int) + 2
    base = np.maximum(offsets.max(0), 0.0) + 1.0
    canvas = random_background(
        rng, h + int(extent[0]), w + int(extent[1]), cfg.textured, ref, cfg.backgrounds, cfg.background_saturation
    )
    if cfg.distractors[1] > 0:
        _paint_distractors(rng, canvas, cfg, ref)

    video = _render_background(canvas, offsets, base, h, w)
    seg = np.zeros((num_t, h, w), np.uint8)
    # Flow starts as the background's displacement; objects overwrite it where they are drawn.
    forward_flow = np.zeros((num_t, h, w, 2), np.float32)
    backward_flow = np.zeros((num_t, h, w, 2), np.float32)
    forward_flow[:-1] = pan
    backward_flow[1:] = -pan
    # Outline of every object at every frame, and its crop rectangle: [T,N] each.
    outlines = [
        [o.outline if transforms is None else o.outline @ transforms[t, i].T for i, o in enumerate(objects)]
        for t in range(num_t)
    ]
    ext_lo = np.array([[v.min(0) for v in frame_outlines] for frame_outlines in outlines])  # [T,N,2]
    ext_hi = np.array([[v.max(0) for v in frame_outlines] for frame_outlines in outlines])
    lo_px = np.maximum(np.floor(positions + ext_lo), 0).astype(int)
    hi_px = np.minimum(np.ceil(positions + ext_hi).astype(int) + 1, (h, w))
    fwd_step = np.diff(positions, axis=0)  # [T-1,N,2]
    for t in range(num_t):
        frame, seg_t = video[t], seg[t]
        for i in depth:
            (r0, c0), (r1, c1) = lo_px[t, i], hi_px[t, i]
            if r0 >= r1 or c0 >= c1:
                continue
            mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
            # cv2 puts pixel centres on integers; ours are at +0.5.
            verts = outlines[t][i] + (positions[t, i] - 0.5 - (r0, c0))
            pts = np.round(verts[:, ::-1] * _SCALE).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, _SHIFT)
            inside = mask.view(bool)
            texture = objects[i].texture
            rows = np.arange(r1 - r0) + (r0 + 0.5 - positions[t, i, 0])  # offsets from the centre
            cols = np.arange(c1 - c0) + (c0 + 0.5 - positions[t, i, 1])
            if transforms is None:
                levels = texture.levels(rows, cols)
            else:  # object-local coordinates: the frame's transform undone
                to_local = np.linalg.inv(transforms[t, i])
                offsets_rc = np.stack(np.broadcast_arrays(rows[:, None], cols[None, :]), -1)  # [R,C,2]
                local = offsets_rc @ to_local.T
                levels = texture.levels_at(local[..., 0], local[..., 1])
            np.copyto(frame[r0:r1, c0:c1], texture.palette[levels], where=inside[..., None])
            seg_t[r0:r1, c0:c1][inside] = i + 1
            if transforms is None:
                if t + 1 < num_t:
                    forward_flow[t, r0:r1, c0:c1][inside] = fwd_step[t, i]
                if t > 0:
                    backward_flow[t, r0:r1, c0:c1][inside] = -fwd_step[t - 1, i]
                continue
            # A point at offset d from the centre at t is at c' + A' A^-1 d on another frame.
            d = offsets_rc[inside]  # [P,2]
            if t + 1 < num_t:
                moved = positions[t + 1, i] + d @ (transforms[t + 1, i] @ to_local).T
                forward_flow[t, r0:r1, c0:c1][inside] = moved - (positions[t, i] + d)
            if t > 0:
                moved = positions[t - 1, i] + d @ (transforms[t - 1, i] @ to_local).T
                backward_flow[t, r0:r1, c0:c1][inside] = moved - (positions[t, i] + d)

    rendered = _Rendered(video, seg, forward_flow, backward_flow)
    if cfg.occluder:
        _paint_pillar(np.random.default_rng([int(seed), 1]), cfg, rendered, 2 * float(half[:, 1].max()))
    if cfg.zoom_range != (1.0, 1.0):
        positions = _camera_zoom(rng, cfg, rendered, positions)
    if cfg.effects:
        video = _camera_effects(rng, video, ref)
    return Scene.labelled(video, seg, forward_flow, backward_flow, [o.shape for o in objects], positions, offsets)
