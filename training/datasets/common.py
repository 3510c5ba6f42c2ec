"""Helpers shared by every dataset so they all yield the same item dict (docs/ARCHITECTURE.md).

Kept as one module (a little over 350 lines) on purpose: the item contract below, the windows, the
resampling of video / ids / flow and ``build_item`` change together whenever the contract does.

Raw inputs are numpy, channels last (what decoders, OpenCV and the scene generator produce);
``build_item`` is the single place that converts them to the torch item contract:

    video          float32 [T,3,H,W] in [0,1]
    target         float32 [T,3,H,W] in [0,1]
    segmentations  int64   [T,H,W]
    boxes          float32 [T,N,4]  normalised yxyx
    visible        bool    [T,N]
    cond_boxes     float32 [N,4]    -1 where not conditioned
    cond_centers   float32 [N,2]    -1 where not conditioned
    conditioned    float32 [N]
    instance_mask  bool    [N]
    frame_mask     bool    [T]

Coordinate conventions (MOVi's): a pixel at row r covers [r/H, (r+1)/H], so a box from a
segmentation is ``[min_row/H, min_col/W, (max_row+1)/H, (max_col+1)/W]`` and a centre of mass is
``((mean_row+0.5)/H, (mean_col+0.5)/W)``. Flow is in pixels with channels (d_row, d_col).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from training.flow import flow_to_rgb

TARGET_KINDS = ("flow", "rgb")

ITEM_KEYS = (
    "video",
    "target",
    "segmentations",
    "boxes",
    "visible",
    "cond_boxes",
    "cond_centers",
    "conditioned",
    "instance_mask",
    "frame_mask",
)
# Time axis first; s4/s8/s16 are cached backbone taps (training.feature_cache).
FRAME_KEYS = ("video", "target", "segmentations", "boxes", "visible", "frame_mask", "s4", "s8", "s16")


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------
def window_start(num_frames: int, window: int | None, seed: int, index: int, epoch: int) -> int:
    """First frame of a training window, a pure function of (seed, index, epoch).

    Being stateless, a resumed run sees exactly the windows it would have seen. ``window=None``
    (evaluation: the full video) and videos shorter than the window start at 0.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if window is None or window >= num_frames:
        return 0
    if window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(epoch)])
    return int(rng.integers(0, num_frames - window + 1))


def check_clip_options(
    max_instances: int, window: int | None, resolution: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The options every dataset's constructor shares, checked alike; returns ``resolution`` as ints (None:
    the source's own size)."""
    if max_instances < 1:
        raise ValueError(f"max_instances must be >= 1, got {max_instances}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")
    if resolution is None:
        return None
    if len(resolution) != 2 or min(resolution) < 1:
        raise ValueError(f"resolution must be (height, width) >= 1 or None, got {resolution}")
    return int(resolution[0]), int(resolution[1])


def window_slice(num_frames: int, window: int | None, start: int) -> slice:
    """The frames of a window (clipped to the video; ``build_item(pad_frames_to=window)`` pads)."""
    if window is None:
        return slice(0, num_frames)
    return slice(start, min(start + window, num_frames))


def check_choice(name: str, value: object, choices: Sequence) -> None:
    """A constructor option that takes one of a few values."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


class ClipDataset(Dataset):
    """A reader of stored videos as windows: the options every reader shares (checked by
    ``check_clip_options``) and the epoch that, with the seed and the index, picks each window."""

    def __init__(
        self,
        root: str | os.PathLike,
        resolution: tuple[int, int] | None,
        max_instances: int,
        window: int | None,
        seed: int,
    ) -> None:
        self.resolution = check_clip_options(max_instances, window, resolution)
        self.root = Path(root)
        self.max_instances = int(max_instances)
        self.window = window
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the windows of ``epoch`` (windows are a pure function of seed, index and epoch)."""
        self.epoch = int(epoch)

    def window_of(self, index: int, num_frames: int) -> slice:
        """The frames of item ``index``'s window in this epoch, of a video ``num_frames`` long."""
        start = window_start(num_frames, self.window, self.seed, index, self.epoch)
        return window_slice(num_frames, self.window, start)


# ----------------------------------------------------------------------------------------------
# Geometry from segmentations
# ----------------------------------------------------------------------------------------------
def boxes_from_segmentation(segmentations: np.ndarray, num_instances: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boxes of ids 1..num_instances from ``[T,H,W]`` integer segmentations.

    Returns (boxes float32 [T,N,4] normalised yxyx, zeros where invisible; visible bool [T,N]).
    """
    seg = np.asarray(segmentations)
    if seg.ndim != 3:
        raise ValueError(f"segmentations must be [T,H,W], got shape {seg.shape}")
    t, h, w = seg.shape
    boxes = np.zeros((t, num_instances, 4), np.float32)
    visible = np.zeros((t, num_instances), bool)
    for f in range(t):
        frame = seg[f]
        rows_any = np.zeros((num_instances + 1, h), bool)
        cols_any = np.zeros((num_instances + 1, w), bool)
        ids = np.clip(frame, 0, num_instances + 1).astype(np.intp)
        # Scatter "id present in this row / column": cheap even for many instances.
        in_range = ids <= num_instances
        rr, cc = np.nonzero(in_range)
        rows_any[ids[rr, cc], rr] = True
        cols_any[ids[rr, cc], cc] = True
        for i in range(num_instances):
            rows = np.flatnonzero(rows_any[i + 1])
            if rows.size == 0:
                continue
            cols = np.flatnonzero(cols_any[i + 1])
            visible[f, i] = True
            boxes[f, i] = (rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w)
    return boxes, visible


def centers_from_segmentation(segmentation: np.ndarray, num_instances: int) -> np.ndarray:
    """Centre of mass (y, x), normalised, of ids 1..N in one ``[H,W]`` frame; -1 where absent."""
    seg = np.asarray(segmentation)
    if seg.ndim != 2:
        raise ValueError(f"segmentation must be [H,W], got shape {seg.shape}")
    h, w = seg.shape
    ids = seg.reshape(-1).astype(np.intp)
    keep = (ids >= 1) & (ids <= num_instances)
    ids = ids[keep]
    rows, cols = np.divmod(np.flatnonzero(keep), w)
    counts = np.bincount(ids, minlength=num_instances + 1)[1:]
    sum_r = np.bincount(ids, weights=rows + 0.5, minlength=num_instances + 1)[1:]
    sum_c = np.bincount(ids, weights=cols + 0.5, minlength=num_instances + 1)[1:]
    centers = np.full((num_instances, 2), -1.0, np.float32)
    present = counts > 0
    centers[present, 0] = sum_r[present] / counts[present] / h
    centers[present, 1] = sum_c[present] / counts[present] / w
    return centers


def box_centers(boxes: np.ndarray) -> np.ndarray:
    """Centres (y, x) of normalised yxyx boxes ``[...,4]`` (for sources with boxes but no masks)."""
    boxes = np.asarray(boxes, np.float32)
    return np.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)


# ----------------------------------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------------------------------
def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"size must be (height, width) >= 1, got {size}")
    return h, w


def resize_video(video: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[T,H,W,C]`` frames -> ``[T,h,w,C]`` (area filter when shrinking, bilinear when growing)."""
    h, w = _check_size(size)
    video = np.asarray(video)
    if video.ndim != 4:
        raise ValueError(f"video must be [T,H,W,C], got shape {video.shape}")
    if video.shape[1:3] == (h, w):
        return video
    interp = cv2.INTER_AREA if (h <= video.shape[1] and w <= video.shape[2]) else cv2.INTER_LINEAR
    out = [cv2.resize(f, (w, h), interpolation=interp) for f in video]
    return np.stack(out).reshape(len(video), h, w, video.shape[3])


def resize_segmentations(segmentations: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[T,H,W]`` ids -> ``[T,h,w]`` with nearest neighbour (ids are labels, never blended)."""
    h, w = _check_size(size)
    seg = np.asarray(segmentations)
    if seg.ndim != 3:
        raise ValueError(f"segmentations must be [T,H,W], got shape {seg.shape}")
    if seg.shape[1:] == (h, w):
        return seg
    work = seg.astype(np.int32) if seg.dtype not in (np.uint8, np.uint16, np.int16, np.float32) else seg
    out = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_NEAREST) for f in work])
    return out.astype(seg.dtype)


def resize_id_maps(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Batched id maps ``[B,T,H,W]`` -> ``[B,T,h,w]`` (long), nearest neighbour, for scoring and losses."""
    if tuple(ids.shape[-2:]) == tuple(size):
        return ids
    b, t = ids.shape[:2]
    scaled = torch.nn.functional.interpolate(ids.flatten(0, 1)[:, None].float(), size=tuple(size), mode="nearest")
    return scaled.view(b, t, *size).long()


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[T,H,W,2]`` (d_row, d_col) pixel flow -> ``[T,h,w,2]``, rescaling the displacements.

    Flow is in pixels, so shrinking the image by a factor shrinks each component by that factor
    along its own axis (d_row by h/H, d_col by w/W).
    """
    h, w = _check_size(size)
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be [T,H,W,2], got shape {flow.shape}")
    src_h, src_w = flow.shape[1:3]
    if (src_h, src_w) == (h, w):
        return flow
    interp = cv2.INTER_AREA if (h <= src_h and w <= src_w) else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in flow])
    out[..., 0] *= h / src_h
    out[..., 1] *= w / src_w
    return out


# ----------------------------------------------------------------------------------------------
# Flow estimation (the paper's "estimated flow" route for sources without ground-truth flow)
# ----------------------------------------------------------------------------------------------
class BackwardFlow:
    """Backward flow frame by frame with OpenCV DIS, estimated at the frames' own resolution and then
    resized (and rescaled) to ``size``.

    Estimating before downscaling keeps the displacement right in size: small sub-pixel motions at
    64x64 are what DIS's coarse-to-fine search rounds towards zero. DIS runs down to its finest pyramid
    level (``finest_scale`` 0; the MEDIUM preset stops one level above, which underestimates by ~20%).
    Frames go in one at a time so a long camera-size video never has to be held whole.
    """

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = None if size is None else _check_size(size)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._dis.setFinestScale(0)
        self._previous: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """float32 ``[h,w,2]`` (d_row, d_col): from each pixel of ``frame`` (uint8 RGB) to where it was
        in the previous frame; zeros for the first frame."""
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 [H,W,3], got {frame.dtype} {frame.shape}")
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if self._previous is None or self._previous.shape != gray.shape:
            flow = np.zeros((*gray.shape, 2), np.float32)
        else:
            # calc(I0, I1) gives u with I0(p) ~ I1(p + u): I0 = frame t, I1 = frame t-1 -> backward.
            flow = self._dis.calc(gray, self._previous, None)[..., ::-1]
        self._previous = gray
        flow = np.ascontiguousarray(flow, np.float32)
        return flow if self.size is None else resize_flow(flow[None], self.size)[0]


def estimate_backward_flow(video: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Backward flow of ``[T,H,W,3]`` uint8 RGB frames (see `BackwardFlow`), at ``size`` if given.

    Returns float32 ``[T,h,w,2]`` (d_row, d_col) in pixels: at frame t, the displacement from a
    pixel of frame t to where it was in frame t-1 (frame 0: zeros), the convention of MOVi's
    ``backward_flow``.
    """
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"video must be uint8 [T,H,W,3], got {video.dtype} {video.shape}")
    estimator = BackwardFlow(size)
    if len(video) == 0:
        return np.zeros((0, *(size or video.shape[1:3]), 2), np.float32)
    return np.stack([estimator(frame) for frame in video])


# ----------------------------------------------------------------------------------------------
# Targets and the item dict
# ----------------------------------------------------------------------------------------------
def flow_rgb(flow: np.ndarray) -> np.ndarray:
    """``[T,H,W,2]`` pixel flow -> float32 ``[T,H,W,3]`` in [0,1] via ``training.flow.flow_to_rgb``."""
    return flow_to_rgb(torch.from_numpy(np.ascontiguousarray(flow, np.float32))).numpy()


def make_target(kind: str, video: np.ndarray, backward_flow: np.ndarray | None) -> np.ndarray:
    """The training target, channels last float32 [T,H,W,3] in [0,1]: flow-RGB or the RGB frames."""
    if kind == "flow":
        if backward_flow is None:
            raise ValueError("target='flow' needs backward flow, but this source has none")
        return flow_rgb(backward_flow)
    if kind == "rgb":
        return to_float_video(video)
    raise ValueError(f"target must be one of {TARGET_KINDS}, got {kind!r}")


def to_float_video(video: np.ndarray) -> np.ndarray:
    """uint8 [T,H,W,3] -> float32 in [0,1]; float input is checked to be in [0,1] already."""
    video = np.asarray(video)
    if video.dtype == np.uint8:
        return video.astype(np.float32) / 255.0
    video = video.astype(np.float32)
    if video.size and (video.min() < 0.0 or video.max() > 1.0):
        raise ValueError("float video must already be in [0, 1]")
    return video


def _pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    if x.shape[0] >= length:
        return x
    pad = torch.zeros((length - x.shape[0], *x.shape[1:]), dtype=x.dtype)
    return torch.cat([x, pad], 0)


def build_item(
    video: np.ndarray,
    target: np.ndarray,
    max_instances: int,
    segmentations: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    visible: np.ndarray | None = None,
    cond_boxes: np.ndarray | None = None,
    conditioned: np.ndarray | None = None,
    cond_centers: np.ndarray | None = None,
    pad_frames_to: int | None = None,
) -> dict[str, torch.Tensor]:
    """Assemble the item dict from one (already windowed and resized) clip.

    Args (numpy, channels last, T frames, n <= max_instances source instances):
        video: uint8 (or float in [0,1]) [T,H,W,3].
        target: float [T,H,W,3] in [0,1] (see ``make_target``).
        segmentations: int [T,H,W], 0 = background, i+1 = instance i; None = source has none (zeros).
        boxes, visible: [T,n,4] normalised yxyx and bool [T,n]; None = computed from
            ``segmentations`` (n = max id present, ids beyond ``max_instances`` are an error).
        cond_boxes: [n,4] normalised yxyx; None = ``boxes[0]`` of the instances visible in frame 0.
        conditioned: [n] 0/1; None = visible in frame 0 (or: cond box given and not -1).
        cond_centers: [n,2] (y,x); None = centre of mass in frame 0 from the segmentation, or the
            box centre when there is no segmentation.
        pad_frames_to: pad the time axis with zeros (``frame_mask`` False) up to this length.
    Unconditioned entries and padding slots get -1 in ``cond_boxes``/``cond_centers``.
    """
    video_f = to_float_video(video)
    if video_f.ndim != 4 or video_f.shape[-1] != 3:
        raise ValueError(f"video must be [T,H,W,3], got shape {video_f.shape}")
    t, h, w, _ = video_f.shape
    target = np.asarray(target, np.float32)
    if target.shape != video_f.shape:
        raise ValueError(f"target shape {target.shape} differs from video shape {video_f.shape}")
    n_max = int(max_instances)
    if n_max < 1:
        raise ValueError(f"max_instances must be >= 1, got {max_instances}")
    seg = _segmentation_ids(segmentations, (t, h, w))
    boxes, visible = _boxes_and_visibility(seg, boxes, visible, n_max)
    cond_b, cond = _conditioning_boxes(boxes, visible, cond_boxes, conditioned, n_max)
    if cond_centers is None:
        cond_c = (
            centers_from_segmentation(seg[0], cond_b.shape[0]) if segmentations is not None else box_centers(cond_b)
        )
    else:
        cond_c = np.asarray(cond_centers, np.float32).reshape(-1, 2)
        if cond_c.shape[0] != cond_b.shape[0]:
            raise ValueError(f"cond_centers has {cond_c.shape[0]} rows, cond_boxes {cond_b.shape[0]}")
    cond_c = np.where(cond[:, None] > 0, cond_c, -1.0).astype(np.float32)

    n = boxes.shape[1]
    length = t if pad_frames_to is None else max(t, int(pad_frames_to))
    item = {
        "video": torch.from_numpy(np.ascontiguousarray(video_f.transpose(0, 3, 1, 2))),
        "target": torch.from_numpy(np.ascontiguousarray(target.transpose(0, 3, 1, 2))),
        "segmentations": torch.from_numpy(seg),
        "boxes": torch.from_numpy(_pad_rows(boxes, n_max, 0.0, axis=1)),
        "visible": torch.from_numpy(_pad_rows(visible, n_max, False, axis=1)),
    }
    item = {k: _pad_time(v, length) for k, v in item.items()}
    frame_mask = torch.zeros(length, dtype=torch.bool)
    frame_mask[:t] = True
    instance_mask = np.zeros((n_max,), bool)
    instance_mask[: max(n, cond_b.shape[0])] = True
    item.update(
        cond_boxes=torch.from_numpy(_pad_rows(cond_b, n_max, -1.0)),
        cond_centers=torch.from_numpy(_pad_rows(cond_c, n_max, -1.0)),
        conditioned=torch.from_numpy(_pad_rows(cond, n_max, 0.0)),
        instance_mask=torch.from_numpy(instance_mask),
        frame_mask=frame_mask,
    )
    return item


def _pad_rows(x: np.ndarray, rows: int, value: float | bool, axis: int = 0) -> np.ndarray:
    """``x`` padded with ``value`` along ``axis`` up to ``rows`` (the instance slots beyond the clip's); float32,
    or bool for a bool ``value``."""
    shape = list(x.shape)
    shape[axis] = rows
    out = np.full(shape, value, bool if isinstance(value, bool) else np.float32)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, x.shape[axis])
    out[tuple(index)] = x
    return out


def _segmentation_ids(segmentations: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    """int64 [T,H,W] instance ids (all 0 when the source has none), checked against the video's shape."""
    if segmentations is None:
        return np.zeros(shape, np.int64)
    seg = np.asarray(segmentations).astype(np.int64)
    if seg.shape != shape:
        raise ValueError(f"segmentations shape {seg.shape} does not match video {shape}")
    if seg.min(initial=0) < 0:
        raise ValueError("segmentation ids must be >= 0")
    return seg


def _boxes_and_visibility(
    seg: np.ndarray, boxes: np.ndarray | None, visible: np.ndarray | None, n_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """[T,n,4] boxes and [T,n] visibility as given, or from the segmentation; at most ``n_max`` instances."""
    t = seg.shape[0]
    if boxes is None:
        n = int(seg.max(initial=0))
        if n > n_max:
            raise ValueError(f"segmentation has instance id {n} > max_instances={n_max}")
        boxes, visible = boxes_from_segmentation(seg, n)
    else:
        boxes = np.asarray(boxes, np.float32)
        if boxes.ndim != 3 or boxes.shape[0] != t or boxes.shape[2] != 4:
            raise ValueError(f"boxes must be [T={t},n,4], got shape {boxes.shape}")
        visible = np.any(boxes != 0, axis=-1) if visible is None else np.asarray(visible, bool)
    n = boxes.shape[1]
    if n > n_max:
        raise ValueError(f"clip has {n} instances but max_instances={n_max}")
    if visible.shape != (t, n):
        raise ValueError(f"visible must be [T={t}, n={n}], got shape {visible.shape}")
    if int(seg.max(initial=0)) > n_max:
        raise ValueError(f"segmentation has instance id {int(seg.max())} > max_instances={n_max}")
    return boxes, visible


def _conditioning_boxes(
    boxes: np.ndarray,
    visible: np.ndarray,
    cond_boxes: np.ndarray | None,
    conditioned: np.ndarray | None,
    n_max: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The first-frame boxes [m,4] (-1 where not conditioned) and the 0/1 conditioning [m] (see `build_item`)."""
    if cond_boxes is None:
        cond_b = np.where(visible[0][:, None], boxes[0], -1.0).astype(np.float32)
        cond = visible[0].astype(np.float32) if conditioned is None else np.asarray(conditioned, np.float32)
    else:
        cond_b = np.asarray(cond_boxes, np.float32).reshape(-1, 4)
        if cond_b.shape[0] > n_max:
            raise ValueError(f"{cond_b.shape[0]} conditioning boxes but max_instances={n_max}")
        cond = (
            np.any(cond_b != -1, axis=-1).astype(np.float32)
            if conditioned is None
            else np.asarray(conditioned, np.float32)
        )
    if cond.shape != (cond_b.shape[0],):
        raise ValueError(f"conditioned must have {cond_b.shape[0]} entries, got shape {cond.shape}")
    return np.where(cond[:, None] > 0, cond_b, -1.0).astype(np.float32), cond
