"""The camera side of a Tracker step: the image in (checked, uploaded, resized to the model) and the label map
and per-track stats out at camera size (edge-aware masks by guided filter, the OpenCV route on the CPU).

``CameraLabels`` holds what persists between frames (slot -> track id / stats row tables, per-size caches, the
pinned upload buffer), so the Tracker keeps only the tracks. Everything up to the final label map and stats
stays on the device: a step copies exactly those two tensors to the host (guided edges on CUDA add one round
trip of the planes)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from savi_core.model.savi import upsample_attention
from savi_core.tracking import guided_filter
from savi_core.tracking.geometry import resize_frames, resize_probabilities, tight_boxes

# Guided filter window radius, in pixels of a 128-row model frame (scaled with it): three feature cells, so each
# window holds both sides of a coarse mask edge and fits the colour line that separates them.
GUIDED_RADIUS = 12
# The filter's coefficients are fitted on the frame and masks shrunk to this fraction of the model resolution (the
# stride-4 feature grid, where the masks come from) and applied at full size (the fast guided filter): a sixteenth
# of the work, and on dev videos at 320x240 no loss (10 per world, 2D / 3D mIoU: fitted at full size 85.7 / 73.6,
# at a quarter 85.9 / 74.7).
GUIDED_FIT_SCALE = 0.25
GUIDED_EPS = 1e-4  # its regularisation, in squared [0, 1] intensity: edges weaker than ~0.01 are smoothed over
# Guided masks come at the camera's size up to this many times the model resolution (2: 256x320 for a 128x160
# model, so 320x240 cameras get their own edges); larger cameras get them bilinearly from there.
MAX_GUIDED_SCALE = 2
LUT_SIZE = 256  # cv2.LUT maps uint8 indices: slots plus the "under the threshold" entry must fit


def label_stats(best: torch.Tensor, row: torch.Tensor, t: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Per-live-track stats ``[t, 6]`` float64 (area, x0, y0, x1, y1, score) from the winning probability
    ``best`` and stats row ``row`` (``t`` for none) of each camera pixel; ``ys``/``xs`` are the pixel ramps.

    One pass of counting over the per-pixel track index (no per-track mask at camera size): areas, score
    sums, and which rows and columns each track occupies."""
    height, width = ys.shape[0], xs.shape[0]
    rows = torch.bincount((row * height + ys.view(-1, 1)).view(-1), minlength=(t + 1) * height).view(t + 1, height)
    cols = torch.bincount((row * width + xs.view(1, -1)).view(-1), minlength=(t + 1) * width).view(t + 1, width)
    area = rows[:t].sum(dim=1)  # pixels per (track, image row), summed over the rows
    # On a member pixel the track's slot is the arg-max, so its probability is ``best``.
    score = torch.bincount(row.view(-1), weights=best.view(-1), minlength=t + 1)[:t] / area.clamp(min=1)
    boxes = tight_boxes(rows[:t] > 0, cols[:t] > 0, ys, xs)
    return torch.cat([area.unsqueeze(1).double(), boxes.double(), score.unsqueeze(1).double()], dim=1)


def guided_size(camera: tuple[int, int], model: tuple[int, int]) -> tuple[int, int]:
    """The size guided masks come at for a camera image of ``camera`` ``(H, W)``: the camera's, shrunk
    (aspect kept) to at most `MAX_GUIDED_SCALE` times the model's ``(h, w)`` on each axis."""
    scale = min(1.0, MAX_GUIDED_SCALE * model[0] / camera[0], MAX_GUIDED_SCALE * model[1] / camera[1])
    return max(1, round(camera[0] * scale)), max(1, round(camera[1] * scale))


def guided_planes(
    probs: torch.Tensor, frame: torch.Tensor, slots: list[int], grid: bool = False, camera: np.ndarray | None = None
) -> tuple[np.ndarray, list[int]] | None:
    """Edge-aware masks: the live tracks' probabilities (``slots``) and the rest (one plane), smoothed by the
    guided filter steered by the frame, renormalised, as float32 planes ``[n, H, W]`` on the host with the
    slot of each (``slots``, then the rest's); None when every slot holds a track (nothing to tell them
    from). Slot masks come at the feature stride (4 to 8 model pixels), so their edges cut across object
    borders; the filter moves them onto the image's edges (measured on the benchmark against bilinear). Its
    coefficients are fitted at `GUIDED_FIT_SCALE` of the model resolution and applied to the frame, or with
    ``camera`` (the camera image, float32 ``[H, W, 3]`` in [0, 1]) to the camera image at `guided_size`: then
    the masks follow edges finer than a model pixel (docs/RESULTS.md: in-family 3D mIoU +3 to +4 at
    320x240). With ``grid``, ``probs`` is the attention at the feature grid: only the live slots' planes are
    upsampled to the frame (`upsample_attention`, the same values as upsampling every slot's). The planes are
    rounded to ``probs``' dtype (bf16 under autocast), as the masks the model gives."""
    rest = next((k for k in range(probs.shape[0]) if k not in slots), None)  # the background slot if any
    if rest is None:
        return None
    if not grid:
        tracked = probs[slots]
    elif 3 in (len(slots), probs.shape[0]):
        # On one thread torch resamples 3-plane batches with another kernel (its RGB path), whose roundings
        # differ: then resample all the planes, as the model would.
        tracked = upsample_attention(probs[None], frame.shape[-2:])[0, slots]
    else:  # in the attention's own dtype, as the model resamples it (bf16 under autocast too)
        tracked = upsample_attention(probs[slots][None], frame.shape[-2:])[0]
    tracked = tracked.float()
    if tuple(tracked.shape[-2:]) != tuple(frame.shape[-2:]):
        tracked = F.interpolate(tracked.unsqueeze(0), size=frame.shape[-2:], mode="bilinear", align_corners=False)[0]
    guide = np.ascontiguousarray(frame.float().cpu().numpy())
    fit_size = (max(1, round(guide.shape[2] * GUIDED_FIT_SCALE)), max(1, round(guide.shape[1] * GUIDED_FIT_SCALE)))
    small = [
        np.stack([cv2.resize(x, fit_size, interpolation=cv2.INTER_AREA) for x in a])
        for a in (guide, tracked.cpu().numpy())
    ]
    radius = max(1, round(GUIDED_RADIUS * fit_size[1] / 128))
    # The filter is linear and keeps constants: the rest's plane, 1 - the tracked ones', filters to 1 - theirs.
    fit = guided_filter.coefficients(*small, radius, GUIDED_EPS)
    if camera is not None:
        size = guided_size(camera.shape[:2], tuple(frame.shape[-2:]))
        if size != camera.shape[:2]:
            camera = cv2.resize(camera, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        guide = np.ascontiguousarray(camera.transpose(2, 0, 1))
    planes = np.empty((len(slots) + 1, *guide.shape[1:]), np.float32)
    guided_filter.apply(fit, guide, out=planes[:-1])
    smooth = torch.from_numpy(planes)
    torch.sub(1, smooth[:-1].sum(0), out=smooth[-1])
    smooth.clamp_(min=0).div_(smooth.sum(0, keepdim=True).clamp_min(1e-6))
    if probs.dtype != torch.float32:
        smooth.copy_(smooth.to(probs.dtype))
    return planes, [*slots, rest]


def guided_masks(
    probs: torch.Tensor, frame: torch.Tensor, slots: list[int], grid: bool = False, camera: np.ndarray | None = None
) -> torch.Tensor:
    """`guided_planes` as slot masks ``[K, H, W]`` in ``probs``' dtype and device (zero for untracked slots other
    than the rest's), for the torch route of the labels."""
    guided = guided_planes(probs, frame, slots, grid, camera)
    if guided is None:
        return upsample_attention(probs[None], frame.shape[-2:])[0] if grid else probs
    return _slot_masks(*guided, probs)


def _slot_masks(planes: np.ndarray, slots: list[int], probs: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(probs.shape[0], *planes.shape[1:], dtype=probs.dtype, device=probs.device)
    for plane, slot in zip(torch.from_numpy(planes).to(probs.device, probs.dtype), slots):
        out[slot].copy_(plane)  # plane copies: indexed assignment is ~6x slower here
    return out


def opencv_camera_labels(
    probs: np.ndarray,
    height: int,
    width: int,
    threshold: float,
    buffers: dict[tuple[int, int], tuple[np.ndarray, ...]],
    no_slot: int,
    id_lut: np.ndarray,
    row_lut: np.ndarray,
    slots: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CPU route of the Tracker's camera-size labels: each slot plane resized by OpenCV (the same
    half-pixel bilinear as torch's), a running maximum that keeps the first winner on ties (as torch's
    ``max``), and the slot -> id / row tables (``id_lut``, ``row_lut``) applied by ``cv2.LUT`` to a uint8
    slot map; pixels under ``threshold`` get slot ``no_slot``. ``probs`` holds every slot's plane, or with
    ``slots`` the planes of those slots alone (the others hold nothing). ``buffers`` holds the work arrays
    of the last camera size (replaced when the size changes)."""
    slots = list(range(probs.shape[0])) if slots is None else slots
    if (height, width) not in buffers:
        buffers.clear()
        buffers[(height, width)] = (
            np.empty((height, width), np.float32),
            np.empty((height, width), np.float32),
            np.empty((height, width), np.uint8),
            np.empty((height, width), np.uint8),
        )
    plane, best, slot, mask = buffers[(height, width)]
    order = sorted(range(len(slots)), key=slots.__getitem__)
    cv2.resize(probs[order[0]], (width, height), dst=best, interpolation=cv2.INTER_LINEAR)
    slot.fill(slots[order[0]])
    # Slots come in increasing order and no_slot is above them all, so "this one wins here" is a running
    # maximum of (mask & slot): whole-image uint8 operations instead of boolean indexing.
    for index in order[1:]:
        if not probs[index].any():  # e.g. slots the guided masks emptied: they win no pixel
            continue
        cv2.resize(probs[index], (width, height), dst=plane, interpolation=cv2.INTER_LINEAR)
        cv2.compare(plane, best, cv2.CMP_GT, dst=mask)
        cv2.max(slot, cv2.bitwise_and(mask, slots[index], dst=mask), dst=slot)
        cv2.max(best, plane, dst=best)
    cv2.compare(best, threshold, cv2.CMP_LT, dst=mask)
    cv2.max(slot, cv2.bitwise_and(mask, no_slot, dst=mask), dst=slot)
    return best, cv2.LUT(slot, id_lut), cv2.LUT(slot, row_lut)


def opencv_label_stats(best: np.ndarray, rows: np.ndarray, t: int, mask: np.ndarray) -> torch.Tensor:
    """`label_stats` from the OpenCV route's uint8 stats rows: per track one comparison, its pixel count and
    bounding rectangle, and its score summed over its pixels inside that rectangle, in image order and in
    float32 (the order and precision of ``torch.bincount``'s sums, so the same bits). ``mask`` is work space
    of the image's size."""
    stats = np.zeros((t, 6), np.float64)
    for index in range(t):
        cv2.compare(rows, index, cv2.CMP_EQ, dst=mask)
        area = cv2.countNonZero(mask)
        if not area:
            continue
        x, y, w, h = cv2.boundingRect(mask)
        inside = best[y : y + h, x : x + w][mask[y : y + h, x : x + w].view(bool)]
        score = np.add.accumulate(inside)[-1] / np.float32(area)
        stats[index] = (area, x, y, x + w, y + h, score)
    return torch.from_numpy(stats)


class Stopwatch:
    """Phase times without extra host syncs: CUDA events read after the step's final copy, or wall clock."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._cuda = device.type == "cuda"
        if self._cuda:
            self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        self._times = [0.0] * 4

    def mark(self, index: int) -> None:
        if self._cuda:
            self._events[index].record(torch.cuda.current_stream(self._device))
        else:
            self._times[index] = time.perf_counter()

    def phases_ms(self) -> tuple[float, float, float]:
        """(preprocess, model, postprocess); call after a host sync."""
        if self._cuda:
            e = self._events
            return e[0].elapsed_time(e[1]), e[1].elapsed_time(e[2]), e[2].elapsed_time(e[3])
        t = self._times
        return (t[1] - t[0]) * 1e3, (t[2] - t[1]) * 1e3, (t[3] - t[2]) * 1e3


class CameraLabels:
    """Camera images to model frames, slot probabilities back to camera-size label maps and stats, for one
    model (``resolution``, ``num_slots``, ``offset`` = 1 with a background slot) on ``device``."""

    def __init__(self, device: torch.device, resolution: tuple[int, int], num_slots: int, offset: int) -> None:
        self.device = device
        self._resolution = resolution
        self._num_slots = num_slots
        self._offset = offset
        self.stopwatch = Stopwatch(device)
        self._size_cache: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None
        self.buffers: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}  # OpenCV route, per camera size
        # On the CPU the camera-size labels come from OpenCV (the same winners as torch's route, ~2x faster).
        self.opencv = device.type == "cpu" and num_slots < LUT_SIZE - 1
        self._pinned: torch.Tensor | None = None
        self._floats: torch.Tensor | None = None  # CPU: the image as floats, [H, W, 3]
        self.set_tracks([])

    def set_tracks(self, tracks: list[tuple[int, int]]) -> None:
        """Refresh the device lookup tables from the live ``(object slot, track id)`` pairs, in the order of
        the stats rows, after tracks started or ended (not per frame). Each table has one entry past the last
        slot, for pixels under the mask threshold: no track id, no stats row."""
        lut = torch.zeros(self._num_slots + 1, dtype=torch.uint16)
        for slot, track_id in tracks:
            lut[slot + self._offset] = track_id
        self.slot_to_id = lut.to(self.device)
        self._live_slots = [slot + self._offset for slot, _ in tracks]  # model slots of the stats rows
        rows = torch.full((self._num_slots + 1,), len(tracks), dtype=torch.int32)
        for index, (slot, _) in enumerate(tracks):
            rows[slot + self._offset] = index
        self.slot_to_row = rows.to(self.device)
        if self.opencv:  # the same tables for cv2.LUT
            self.id_lut = np.zeros((1, LUT_SIZE), np.uint16)
            self.id_lut[0, : self._num_slots + 1] = lut.numpy()
            self.row_lut = np.full((1, LUT_SIZE), len(tracks), np.uint8)
            self.row_lut[0, : self._num_slots + 1] = rows.numpy()

    @staticmethod
    def check_image(image: np.ndarray) -> tuple[int, int]:
        """``(H, W)`` of a uint8 RGB ``[H, W, 3]`` image; ValueError for anything else."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
            raise ValueError(f"image must be a uint8 numpy array [H, W, 3] (RGB), got {got}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image must not be empty, got shape {image.shape}")
        return image.shape[0], image.shape[1]

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 HWC host image -> float ``[1, 3, h, w]`` in [0, 1] at the model resolution, on the device
        (on the CPU at the model's own size: a view of a buffer the next call overwrites)."""
        if self.device.type == "cuda":
            if self._pinned is None or self._pinned.shape != image.shape:
                self._pinned = torch.empty(image.shape, dtype=torch.uint8, pin_memory=True)
            np.copyto(self._pinned.numpy(), image)  # safe to overwrite: the previous step ended with a sync
            pixels = self._pinned.to(self.device, non_blocking=True)
            frame = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        else:
            # A kept float buffer: a fresh one (3.7 MB at 640x480) is mapped and faulted in every step under
            # the node's malloc settings. Filled in place, it holds the same values as a converted copy.
            if self._floats is None or self._floats.shape != image.shape:
                self._floats = torch.empty(image.shape, dtype=torch.float32)
            if image.flags.writeable and image.flags.c_contiguous:
                self._floats.copy_(torch.from_numpy(image))
            else:  # read-only (torch warns) or strided views: numpy converts them as exactly
                np.copyto(self._floats.numpy(), image)
            frame = self._floats.permute(2, 0, 1).unsqueeze(0).div_(255.0)
        return resize_frames(frame, self._resolution)

    def postprocess(
        self,
        masks: torch.Tensor,
        frame: torch.Tensor,
        guided: bool,
        height: int,
        width: int,
        threshold: float,
        grid: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot probabilities ``[K, h, w]`` (with ``guided``, refined by the model-resolution ``frame``
        ``[3, h, w]``; with ``grid``, attention at the feature grid, upsampled to the frame as the model's
        ``attention`` masks) -> label map uint16 ``[H, W]`` and per-live-track stats ``[T, 6]`` float64
        (area, x0, y0, x1, y1, score), all on the device."""
        t = len(self._live_slots)
        guided_out = None
        if guided and self._live_slots:
            guided_out = guided_planes(masks, frame, self._live_slots, grid, self._camera_image())
        if guided_out is not None and self.opencv:  # the live slots' planes, at most the camera's size
            best, labels, rows = opencv_camera_labels(
                guided_out[0], height, width, threshold, self.buffers, self._num_slots, self.id_lut, self.row_lut,
                guided_out[1],
            )  # fmt: skip
            return torch.from_numpy(labels), opencv_label_stats(best, rows, t, self.buffers[(height, width)][3])
        if guided_out is not None:
            masks = _slot_masks(*guided_out, masks)
        elif grid:
            masks = upsample_attention(masks[None], frame.shape[-2:])[0]
        probs = masks.float()
        k, h, w = probs.shape
        if self.opencv and height >= h and width >= w:
            best, labels, rows = opencv_camera_labels(
                probs.contiguous().numpy(),
                height,
                width,
                threshold,
                self.buffers,
                self._num_slots,
                self.id_lut,
                self.row_lut,
            )
            stats = opencv_label_stats(best, rows, t, self.buffers[(height, width)][3])
            return torch.from_numpy(labels), stats
        best, label_map, row = self._camera_size_labels(probs, height, width, threshold)
        ys, xs = self._ramps(height, width)
        return label_map, label_stats(best, row, t, ys, xs)

    def _camera_image(self) -> np.ndarray:
        """The last preprocessed camera image on the host, float32 ``[H, W, 3]`` in [0, 1] (the guide of
        guided masks): the CPU's kept float buffer, or the pinned upload buffer converted."""
        if self._floats is not None and self.device.type != "cuda":
            return self._floats.numpy()
        return self._pinned.numpy().astype(np.float32) / np.float32(255.0)

    def _ramps(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._size_cache is None or self._size_cache[0] != (height, width):
            ys = torch.arange(height, device=self.device, dtype=torch.int32)
            xs = torch.arange(width, device=self.device, dtype=torch.int32)
            self._size_cache = ((height, width), ys, xs)
        return self._size_cache[1], self._size_cache[2]

    def _camera_size_labels(
        self, probs: torch.Tensor, height: int, width: int, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per camera pixel: the winning probability of the bilinearly resized slot probabilities, the
        track id of the winning slot (0 under ``threshold``) and its stats row (int32; ``T`` for none)."""
        if tuple(probs.shape[-2:]) == (height, width):
            best, slot = probs.max(dim=0)
        else:
            best, slot = resize_probabilities(probs, (height, width)).max(dim=0)
        slot.masked_fill_(best < threshold, self._num_slots)
        return best, self.slot_to_id[slot], self.slot_to_row[slot]
