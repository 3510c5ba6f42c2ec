"""Tracker: the ROS-free state machine behind docs/INTERFACE.md "How tracks start, live and end".

It turns a stream of RGB images (any size) plus occasional pixel-box detections into track-id label maps.

Geometry (resize, not letterbox):
  * The image is resized to the model resolution (bilinear, antialiased when shrinking) on the device.
  * Pixel boxes ``(x0, y0, x1, y1)`` use *exclusive* right/bottom edges: a box covering columns 10..19
    has ``x0 = 10, x1 = 20``. They become normalised ``(ymin, xmin, ymax, xmax) = (y0/H, x0/W, y1/H, x1/W)``
    for the input image's ``H x W``, which is the same region of the resized frame because the resize
    maps the image extent onto the model extent (``align_corners=False``).
  * The per-slot probabilities (decoder alpha or corrector attention, both softmax over slots) are resized
    bilinearly back to ``H x W``; pixel ``p`` gets track id ``t`` when the arg-max slot at ``p`` is ``t``'s slot
    and its probability is at least ``mask_threshold``, else 0. A track's box is the tight box of its
    pixels in the same exclusive-edge convention, so box -> mask -> box round-trips within 1 px for
    non-square inputs. (Upsampling a mask by more than ~2.5x, e.g. 64x64 -> 640x480, is limited by the mask
    resolution instead: about half a mask pixel at the image border, where bilinear has no outer neighbour.)

State machine:
  * No live tracks and no accepted detections: no model run, an empty result.
  * Bootstrap: the first accepted detections while no track is live condition object slots 0..n-1
    (``model.init_slots``) and the model steps on the same image.
  * Accepted detections = score >= ``score_threshold``, class in ``class_ids`` (empty = all), non-empty box
    after clipping to the image. They are taken in descending score order; one that overlaps
    (IoU >= ``new_object_iou``) a live track's box from the previous frame (tracks invisible there do not
    count), or a detection accepted before it in the same step, is a duplicate and starts nothing.
  * ``reinit == "add_new"``: later non-duplicate detections restart free object slots
    (``model.init_slots_for``), other slots keep their state. With no free slot (or no track id left)
    they are ignored and counted in ``TrackResult.ignored_detections``. ``reinit == "refresh"``: as
    ``add_new``, and a duplicate of a live track (its best match, same class or either unlabelled)
    re-initialises that track's slot from the detection's box; the track keeps its id (the paper
    conditions only the first frame, but a robot's detector keeps running). ``reinit == "first"``: later
    detections are ignored without counting.
  * Duplicate tracks: when one detection covers two tracks whose boxes overlap (IoU >= ``new_object_iou``),
    one matched to it and one left without a detection, their slots split one object: the unmatched track
    ends on that step (its slot restarts unconditioned) and the matched one is re-anchored from the box
    (``savi_core.tracking.association``, pass 4).
  * Prompts (``add_objects``: a person's box, point or mask) reserve their track ids at once and start on
    the next step in free slots, even over a live track. A box model is conditioned on a mask's tight box
    and, when trained on them (``initializer.points``), on a point as the zero-size box ``(y, x, y, x)``;
    a centre-of-mass model on the point or the mask's centre of mass; a segmentation model on the mask.
    ``track_at`` says which live track covers a pixel, so a point on a tracked object need not start one.
  * Track ids: a detection's ``det_id`` written in ASCII decimal digits, valued 1..65535 and never used
    since start/reset, becomes the track id; otherwise the smallest never-used id from 1. Ids are never
    reused until ``reset()``.
  * Gate (``gate_margin`` > 0): an anchored track's slot attends only to feature cells inside its gate:
    its last box (at least the size of the box that last anchored it; led by its last shift while the
    whole object showed) grown on every side by ``gate_margin`` x its longer side x (1 + frames lost).
    A matched detection moves the gate to its box, and re-anchors the slot when the track's mask box
    overlaps it at IoU < ``REANCHOR_IOU`` or its mean probability was under ``REANCHOR_SCORE``. Starting
    or re-anchoring a slot from a box restarts the background slot and the untracked slots too, as on a
    first frame.
  * Crossings (``swap_margin`` > 0): two tracks whose boxes touched, and whose slots traded objects while
    one passed in front of the other, trade their ids back when each mask's colours match the other's
    object better than its own by the margin (``savi_core.tracking.appearance``); the frame's label map follows.
  * Lost: a track whose mask area is under ``min_mask_area`` input pixels, or (when ``max_area_growth`` is set)
    over that many times the area of the box that last anchored it (its slot took the background or more), is
    lost for that frame: not listed, not drawn, its last box kept for re-detection. The anchor is the starting
    detection's or prompt's box, refreshed by every detection matched to the track; a point's track is
    anchored by its first mask. A track lost for ``lost_after_frames`` consecutive processed frames leaves
    its slot on that frame (its pixels are cleared from that frame's label map): the slot becomes free and
    restarts unconditioned (so it stops following the object it lost, which a later detection may start in
    another slot). When no track is left on a slot the tracker is back to the no-state condition.
  * Dormant (``dormant_seconds`` > 0; ``savi_core.tracking.reid``): that track is not ended but dormant, with its id and
    looks, until ``dormant_seconds`` of stamp time (``step``'s ``stamp``) have passed; then it ends on the first
    step at or after that time. A new track started by an id-less prompt or a detection (one that no live
    track explains) while tracks are dormant or lost is provisional: when its first mask, inside its starting
    box, looks like a dormant track (``reid_threshold``), it takes that track's id on the same step
    (``TrackResult.revived``, not ``started``); when it looks like a lost track that no detection re-anchored
    this step (the object came back away from the lost track's last box), it takes that id and the lost
    track's slot is freed (``TrackResult.reclaimed``).
    A detection or prompt naming a dormant id revives it whatever it looks like. With 0, the track ends.

Edges (``mask_edges``): ``guided`` refines the live tracks' masks with a guided filter steered by the
model-resolution frame before they are resized to the camera (OpenCV's ``ximgproc``; on CUDA the planes
make one round trip to the host); ``bilinear`` resizes them as they are.

Precision: ``fp16``/``bf16`` run the model under autocast. On CPU only ``bf16`` is accepted; ``fp16`` on
CPU is refused (slow or unsupported CPU kernels would otherwise be a silent surprise).

Kept as one module (about 700 lines, a good part of it docstrings): the rules above and the code
that applies them are read together.

Efficiency: everything up to the final label map and per-track statistics stays on the device; a step
copies exactly two tensors to the host (label map, per-track stats). Size-dependent constants are cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import torch
from torch import nn

from savi_core.tracking.appearance import AppearanceMemory
from savi_core.tracking.association import associate
from savi_core.device import resolve_device
from savi_core.tracking.geometry import (
    box_iou_xyxy,
    boxes_xyxy_to_yxyx,
    resize_frames,
    resize_probabilities,
)
from savi_core.model.initializers import Conditioning
from savi_core.tracking.gate import gate_bias
from savi_core.tracking.labels import guided_masks, label_stats, opencv_camera_labels
from savi_core.tracking.reid import Candidate, Dormancy, Looks
from savi_core.tracking.track_ids import TrackIdAllocator
from savi_core.tracking.tracker_config import TrackerConfig

REANCHOR_IOU = 0.5  # a matched track whose mask box overlaps its detection less than this is re-anchored
REANCHOR_SCORE = 0.8  # ... or whose slot's mean probability over its mask fell under this (it is fading)
WHOLE = 0.75  # a mask box this share of its anchor box's width and height shows the whole object
LUT_SIZE = 256  # cv2.LUT maps uint8 indices: slots plus the "under the threshold" entry must fit

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Detection:
    """A detector box in input-image pixels, exclusive right/bottom edges."""

    box_xyxy: tuple[float, float, float, float]
    class_id: str = ""
    score: float = 1.0
    det_id: str = ""


@dataclass(frozen=True)
class Track:
    """A live track visible in this frame; ``box_xyxy`` is the tight box of its mask (exclusive edges)."""

    track_id: int
    class_id: str
    box_xyxy: tuple[float, float, float, float]
    score: float  # mean probability of the track's slot inside its mask
    area: int  # mask pixels at input size


@dataclass
class TrackResult:
    label_map: np.ndarray  # uint16 [H, W], track id per pixel, 0 = none
    tracks: list[Track] = field(default_factory=list)
    live_track_ids: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)  # expired dormant tracks included
    dormant_track_ids: list[int] = field(default_factory=list)  # after this step
    slept: list[int] = field(default_factory=list)  # live tracks that became dormant on this step
    revived: list[int] = field(default_factory=list)  # dormant tracks live again on this step
    reclaimed: list[int] = field(default_factory=list)  # lost tracks moved onto a new detection's slot by look
    expired: list[int] = field(default_factory=list)  # dormant tracks whose time ran out (also in ended)
    tracks_changed: bool = False
    ignored_detections: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # ms: preprocess, model, postprocess, total


@dataclass(frozen=True, eq=False)
class Prompt:
    """An object a person points out, to start on the next step: exactly one of a box (pixels, exclusive
    edges), a point (pixels: ``(x, y)`` with pixel ``i`` spanning ``[i, i + 1)``) or a mask (bool
    ``[H, W]`` of that image). ``track_id`` optionally asks for an id, as a detection's ``det_id`` does."""

    box_xyxy: Optional[tuple[float, float, float, float]] = None
    point_xy: Optional[tuple[float, float]] = None
    mask: Optional[np.ndarray] = None
    class_id: str = ""
    track_id: str = ""

    @property
    def kind(self) -> str:
        return "boxes" if self.box_xyxy is not None else "points" if self.point_xy is not None else "masks"


@dataclass
class _Start:
    """What conditions a slot this step: always a box (association, the lost rule), and the point or mask
    the box came from, which conditions the slot instead when the model takes it."""

    box: np.ndarray
    point: Optional[tuple[float, float]] = None
    mask: Optional[np.ndarray] = None


@dataclass
class _LiveTrack:
    track_id: int
    class_id: str
    box: np.ndarray  # last mask box seen (or the starting detection box) in input pixels, kept while lost
    lost_frames: int = 0
    anchor_area: Optional[float] = None  # area of the box that last anchored it (None: its first mask's)
    anchor_size: Optional[tuple[float, float]] = None  # (w, h) of that box (or of its first mask's box)
    velocity: tuple[float, float] = (0.0, 0.0)  # box-centre shift (x, y) per processed frame, for the gate
    score: float = 1.0  # mean probability of its slot over its mask on the last frame it was seen
    whole: bool = False  # the last box was at least WHOLE of the anchor box on both sides (not hidden)

    def anchor_to(self, box: np.ndarray) -> None:
        """A detection or prompt box fixes where the track is and how big it is (the growth rule, the gate)."""
        self.box = box
        self.anchor_area = _box_area(box)
        self.anchor_size = (float(box[2] - box[0]), float(box[3] - box[1]))

    def trade_objects(self, other: "_LiveTrack") -> None:
        """Two slots traded objects: the object's identity (id, class, anchor) moves to the slot now on it;
        where each slot is (box, lost frames, score) stays. No motion is measured across the trade."""
        for name in ("track_id", "class_id", "anchor_area", "anchor_size"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs)
            setattr(other, name, mine)
        self.whole = other.whole = False
        self.velocity = other.velocity = (0.0, 0.0)


class _Stopwatch:
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


# ---------------------------------------------------------------------------------------------- tracker


def _box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


class Tracker:
    """Streams images through a SAVi model and keeps track ids; see the module docstring for the rules.

    The model is moved to ``device`` and put in eval mode (the caller's module object is used in place).
    """

    def __init__(
        self, model: nn.Module, config: TrackerConfig | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.config = config if config is not None else TrackerConfig()
        self.config.validate()
        self.device = resolve_device(device)
        init_kind = model.config.initializer.kind
        if not model.config.initializer.conditional:
            raise ValueError(f"model: the Tracker needs a box-conditioned model, its initializer is {init_kind!r}")
        if self.config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision: 'fp16' needs a CUDA device; use 'fp32' or 'bf16' on cpu")
        self._model = model.to(self.device).eval()
        self._init_kind = init_kind
        self._needs_features = bool(getattr(model, "needs_features", False))  # SAVi.needs_features
        self._feature_stride = model.config.encoder.stride
        self._takes_points = model.config.initializer.points
        self._resolution = tuple(model.config.resolution)
        self._num_objects = model.num_object_slots
        self._offset = int(model.config.initializer.background_slot)
        self._num_slots = model.config.num_slots
        self.max_tracks = min(self.config.max_tracks, self._num_objects)
        self._autocast_dtype = _AUTOCAST_DTYPES.get(self.config.precision)
        self._stopwatch = _Stopwatch(self.device)
        self._ids = TrackIdAllocator()
        self._pending: list[tuple[Prompt, int]] = []  # add_objects prompts and their reserved ids
        self._last_labels: Optional[np.ndarray] = None  # the last label map (points on live tracks)
        self._size_cache: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None
        self._buffers: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}  # OpenCV route, per camera size
        # On the CPU the camera-size labels come from OpenCV (the same winners as torch's route, ~2x faster).
        self._opencv_labels = self.device.type == "cpu" and model.config.num_slots < LUT_SIZE - 1
        self._pinned: torch.Tensor | None = None
        self._tracks: dict[int, _LiveTrack] = {}  # object slot -> track
        self._appearance = AppearanceMemory()
        self._dormancy = Dormancy()  # dormant tracks and every track's looks (savi_core.tracking.reid)
        self._provisional: dict[int, bool] = {}  # slot started this step that may revive -> free its id then
        self._anchored: set[int] = set()  # slots (re)started from a detection or prompt this step
        self._slots: torch.Tensor | None = None  # [1, K, D] predicted slots for the next frame
        stride = model.config.encoder.stride
        fh, fw = self._resolution[0] // stride, self._resolution[1] // stride
        self._cell_y = ((torch.arange(fh) + 0.5) / fh).view(1, fh, 1)  # feature-cell centres, normalised
        self._cell_x = ((torch.arange(fw) + 0.5) / fw).view(1, 1, fw)
        self._cell = 1.0 / min(fh, fw)  # the least a gate grows: a box smaller than a cell still holds one
        if self._init_kind == "segmentation":
            h, w = self._resolution
            self._pixel_y = ((torch.arange(h, device=self.device) + 0.5) / h).view(1, h, 1)
            self._pixel_x = ((torch.arange(w, device=self.device) + 0.5) / w).view(1, 1, w)
        self.reset()

    # ------------------------------------------------------------------ public API

    @property
    def live_tracks(self) -> dict[int, str]:
        """Live track id -> class id of the detection that started it."""
        return {t.track_id: t.class_id for t in self._tracks.values()}

    @property
    def dormant_tracks(self) -> dict[int, str]:
        """Dormant track id -> class id: no slot, id reserved until revived or expired (`savi_core.tracking.reid`)."""
        return {t.track_id: t.class_id for t in self._dormancy.dormant.values()}

    def reset(self) -> list[int]:
        """End every track, dormant ones too, drop the slot state and restart ids at 1; returns the ended ids."""
        ended = sorted([t.track_id for t in self._tracks.values()] + self._dormancy.reset())
        self._tracks = {}
        self._pending = []
        self._slots = None
        self._features = None  # the last frame's features, for models whose slots start from them
        self._last_labels = None
        self._appearance.reset()
        self._ids.reset()
        self._tracks_updated()
        return ended

    def remove_track(self, track_id: int) -> bool:
        """End one live or dormant track now (its slot is free for later detections, its id is not reused
        until `reset`); False when no live or dormant track has that id."""
        if self._dormancy.wake(track_id) is not None:
            return True
        slot = next((s for s, t in self._tracks.items() if t.track_id == track_id), None)
        if slot is None:
            return False
        del self._tracks[slot]
        if not self._tracks:
            self._slots = None
        else:
            self._clear_slots([slot])
        self._tracks_updated()
        return True

    def _clear_slots(self, slots: list[int]) -> None:
        """Restart object ``slots`` unconditioned (as padding slots start in training): a slot whose track
        ended keeps following its object otherwise, and takes it from a slot started on it later."""
        self._restart_slots(slots, self._conditioning({}, 1, 1))

    def _restart_slots(self, slots: list[int], cond: Conditioning, background: bool = False) -> None:
        """Re-initialise object ``slots`` from ``cond`` (unconditioned where it conditions none), and with
        ``background`` the background slot; the others keep their state."""
        which = torch.zeros(1, self._num_slots, dtype=torch.bool)
        which[0, [s + self._offset for s in slots]] = True
        which[0, 0] = background and self._offset == 1
        with self._autocast():
            self._slots = self._model.init_slots_for(self._slots, cond, which.to(self.device))

    @property
    def mask_source(self) -> str:
        """The mask source in use: ``config.mask_source``, except that a model without a decoder (the
        prototype models) always gives its attention (live: read every step)."""
        has_decoder = getattr(self._model.config, "has_decoder", True)
        return self.config.mask_source if has_decoder else "attention"

    @property
    def prompt_kinds(self) -> tuple[str, ...]:
        """What `add_objects` takes for this model. Boxes and masks always (a mask reaches a box model as
        its tight box, a centre-of-mass model as its centre of mass); points when the model was trained on
        centres of mass, or on points as zero-size boxes (``initializer.points``)."""
        points = self._init_kind == "com" or (self._init_kind == "bbox" and self._takes_points)
        return ("boxes", "points", "masks") if points else ("boxes", "masks")

    def track_at(self, x: float, y: float) -> int:
        """The live track covering pixel ``(x, y)`` in the last processed frame; 0 for none."""
        labels = self._last_labels
        if labels is None or not (0 <= x < labels.shape[1] and 0 <= y < labels.shape[0]):
            return 0
        track_id = int(labels[int(y), int(x)])
        return track_id if track_id in self.live_tracks else 0

    def add_objects(self, prompts: list[Prompt]) -> list[int]:
        """Reserve track ids now for objects that start on the next step, whatever their overlap with live
        tracks (a person's prompt is not a re-detection). Raises ValueError, starting nothing, for a prompt
        this model cannot take, one that is not a finite non-empty box, finite point or non-empty 2-D
        mask, or more objects than free slots."""
        for index, prompt in enumerate(prompts):
            given = [v is not None for v in (prompt.box_xyxy, prompt.point_xy, prompt.mask)]
            if sum(given) != 1:
                raise ValueError(f"prompt {index}: give exactly one of a box, a point or a mask")
            if prompt.kind not in self.prompt_kinds:
                raise ValueError(
                    f"prompt {index}: this model takes {' and '.join(self.prompt_kinds)}, not "
                    f"{prompt.kind} (its initializer is {self._init_kind!r})"
                )
            if prompt.box_xyxy is not None:
                box = np.asarray(prompt.box_xyxy, np.float64)
                if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                    raise ValueError(f"prompt {index}: a box must be 4 finite numbers x0 < x1, y0 < y1 (pixels)")
            elif prompt.point_xy is not None:
                point = np.asarray(prompt.point_xy, np.float64)
                if point.shape != (2,) or not np.isfinite(point).all():
                    raise ValueError(f"prompt {index}: a point must be 2 finite numbers (x, y) in pixels")
            elif prompt.mask.ndim != 2 or not prompt.mask.any():
                raise ValueError(f"prompt {index}: a mask must be a 2-D array with at least one pixel set")
        free = self.max_tracks - len(self._tracks) - len(self._pending)
        if len(prompts) > free:
            raise ValueError(
                f"{len(prompts)} object(s) asked for, {max(free, 0)} free slot(s) (max_tracks {self.max_tracks})"
            )
        ids = []
        for prompt in prompts:
            # A prompt naming a dormant track revives it on the next step (it stays dormant until then).
            named = self._dormancy.named(prompt.track_id)
            if named and named not in {i for _, i in self._pending}:
                track_id = named
            else:
                track_id = self._ids.claim(prompt.track_id)
            if track_id is None:
                raise ValueError("no track id left (all 65535 used since the last reset)")
            self._pending.append((prompt, track_id))
            ids.append(track_id)
        return ids

    @torch.inference_mode()
    def step(
        self, image: np.ndarray, detections: list[Detection] | None = None, stamp: float | None = None
    ) -> TrackResult:
        """Process one RGB ``uint8 [H, W, 3]`` image (any size) with the detections made on it, if any.
        ``stamp``: the image's time in seconds, which dormant tracks' windows are measured in; None = the
        host's monotonic clock at the call (a live stream; give stamps for recordings and tests)."""
        t_start = time.perf_counter()
        height, width = self._check_image(image)
        now = time.monotonic() if stamp is None else float(stamp)
        expired = self._dormancy.expire(now, self.config.dormant_seconds)
        candidates = self._accepted(detections or [], height, width)
        if self._slots is None and not candidates and not self._pending:
            return self._empty_result(height, width, 0, t_start, expired, sorted(self._dormancy.dormant))
        clock = self._stopwatch
        clock.mark(0)
        frame = self._preprocess(image)
        clock.mark(1)
        features = None
        if self._needs_features:  # the slots start from this frame's features: encode once, before
            with self._autocast():
                features = self._features = self._model.encode(frame)
        started, doubled, ignored, revived = self._start_tracks(candidates, height, width)
        if self._slots is None:  # every bootstrap candidate was refused (no track id left)
            return self._empty_result(height, width, ignored, t_start, expired, sorted(self._dormancy.dormant))
        gate = self._gate_bias(height, width)
        with self._autocast():
            extra = {} if features is None else {"features": features}
            out = self._model.step(frame, self._slots, decode=self.mask_source, attention_bias=gate, **extra)
        self._slots = out.predicted
        clock.mark(2)
        masks = out.masks[0]
        edges = self.config.mask_edges  # live: read every step
        guided = edges == "guided" or (edges == "auto" and self._feature_stride > 1 and self.mask_source == "attention")
        if guided and self._live_order:
            masks = guided_masks(masks, frame[0], [s + self._offset for s in self._live_order])
        label_map, stats = self._postprocess(masks, height, width)
        clock.mark(3)
        label_map, stats = label_map.cpu().numpy(), stats.cpu().numpy()  # the only device -> host copies
        self._last_labels = label_map
        pre_ms, model_ms, post_ms = clock.phases_ms()
        renamed, reclaimed, stats = self._revive(image, label_map, stats, now)
        started = [i for i in started if i not in renamed]
        revived = sorted(revived + [i for i in renamed.values() if i not in reclaimed])
        ended, tracks, slept = self._update_tracks(image, label_map, stats, now)
        ended = sorted(doubled + ended + expired)
        return TrackResult(
            label_map=label_map,
            tracks=tracks,
            live_track_ids=sorted(self.live_tracks),
            started=started,
            ended=ended,
            dormant_track_ids=sorted(self._dormancy.dormant),
            slept=slept,
            revived=revived,
            reclaimed=reclaimed,
            expired=expired,
            tracks_changed=bool(started or ended or slept or revived),
            ignored_detections=ignored,
            timings={
                "preprocess": pre_ms,
                "model": model_ms,
                "postprocess": post_ms,
                "total": (time.perf_counter() - t_start) * 1e3,
            },
        )

    @staticmethod
    def _empty_result(
        height: int, width: int, ignored: int, t_start: float, expired: list[int], dormant: list[int]
    ) -> TrackResult:
        """No live track: nothing to run, an all-zero label map; dormant tracks may expire."""
        return TrackResult(
            label_map=np.zeros((height, width), np.uint16),
            ignored_detections=ignored,
            ended=expired,
            expired=expired,
            dormant_track_ids=dormant,
            tracks_changed=bool(expired),
            timings={
                "preprocess": 0.0,
                "model": 0.0,
                "postprocess": 0.0,
                "total": (time.perf_counter() - t_start) * 1e3,
            },
        )

    # ------------------------------------------------------------------ detections and slots

    def _accepted(self, detections: list[Detection], height: int, width: int) -> list[tuple[np.ndarray, Detection]]:
        """Filter by score/class, clip boxes to the image, drop empty ones; highest score first."""
        cfg = self.config
        kept: list[tuple[np.ndarray, Detection]] = []
        for det in detections:
            box = np.asarray(det.box_xyxy, dtype=np.float64)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise ValueError(f"detection box_xyxy must be 4 finite numbers (x0, y0, x1, y1), got {det.box_xyxy!r}")
            if det.score < cfg.score_threshold or (cfg.class_ids and det.class_id not in cfg.class_ids):
                continue
            box = np.clip(box, 0.0, [width, height, width, height])
            if box[2] > box[0] and box[3] > box[1]:
                kept.append((box, det))
        kept.sort(key=lambda item: -item[1].score)
        return kept

    def _start_tracks(
        self, candidates: list[tuple[np.ndarray, Detection]], height: int, width: int
    ) -> tuple[list[int], list[int], int, list[int]]:
        """Start the pending `add_objects` prompts, then tracks for non-duplicate candidates, in free slots,
        and (re-)initialise those slots; end duplicate tracks. A start that names a dormant id revives it;
        an id-less one is provisional while tracks are dormant (`_revive`). Returns (started ids, ended ids,
        ignored, revived ids)."""
        bootstrap = self._slots is None
        if not bootstrap and self.config.reinit == "first":
            candidates = []
        prompts, self._pending = self._pending, []
        self._provisional, self._anchored = {}, set()
        # A new object may be a dormant track's, or a lost one's (with dormancy on) whose stale box it missed.
        sleepers = bool(self._dormancy.dormant) or (
            self.config.dormant_seconds > 0 and any(t.lost_frames for t in self._tracks.values())
        )
        if not candidates and not prompts:
            return [], [], 0, []
        free = [s for s in range(self.max_tracks) if s not in self._tracks]
        started: list[int] = []
        revived: list[int] = []
        ended: list[int] = []
        cleared: list[int] = []
        new_boxes: dict[int, _Start] = {}
        ignored = 0
        for prompt, track_id in prompts:
            start = self._prompt_start(prompt, height, width)
            if not free or start is None:  # taken meanwhile, or not on this image
                ignored += 1
                continue
            slot = free.pop(0)
            track = _LiveTrack(track_id, prompt.class_id, start.box)
            if start.point is None:
                track.anchor_to(start.box)
            self._tracks[slot] = track
            new_boxes[slot] = start
            if self._dormancy.wake(track_id):
                revived.append(track_id)
                continue
            started.append(track_id)
            if not prompt.track_id.strip() and sleepers:
                self._provisional[slot] = False  # its id was given out by add_objects: never freed
        if candidates:
            live = list(self._tracks.items())
            found = associate(
                np.stack([box for box, _ in candidates]),
                [det.class_id for _, det in candidates],
                np.stack([t.box for _, t in live]) if live else np.zeros((0, 4)),
                [t.class_id for _, t in live],
                self.config.new_object_iou,
            )
            doubled = set(found.duplicate_tracks.values())
            for det_index, track_index in found.matches.items():
                # A detection of a lost or doubled track, of one whose mask has left most of its box, or of
                # one whose slot is fading, re-anchors its slot (same id); with refresh, of any live track.
                slot, track = live[track_index]
                box = candidates[det_index][0]
                drifted = box_iou_xyxy(track.box, box)[0, 0] < REANCHOR_IOU or track.score < REANCHOR_SCORE
                track.anchor_to(box)
                if self.config.reinit == "refresh" or track.lost_frames > 0 or track_index in doubled or drifted:
                    new_boxes[slot] = _Start(box)
            for track_index in found.duplicate_tracks:
                # Its slot restarts unconditioned, so it stops taking the kept track's pixels.
                slot, track = live[track_index]
                del self._tracks[slot]
                ended.append(track.track_id)
                cleared.append(slot)
                free.append(slot)
            for det_index in found.new:
                box, det = candidates[det_index]
                named = self._dormancy.named(det.det_id) if free else 0
                track_id = named or (self._ids.claim(det.det_id) if free else None)
                if track_id is None:
                    ignored += 1
                    continue
                slot = free.pop(0)
                self._tracks[slot] = _LiveTrack(track_id, det.class_id, box)
                self._tracks[slot].anchor_to(box)
                new_boxes[slot] = _Start(box)
                if named:
                    self._dormancy.wake(named)
                    revived.append(named)
                    continue
                started.append(track_id)
                if sleepers:
                    self._provisional[slot] = True
        self._anchored = set(new_boxes)
        if not new_boxes and not cleared:
            return started, ended, ignored, revived
        cond = self._conditioning(new_boxes, height, width)
        if bootstrap:
            with self._autocast():
                self._slots = self._model.init_slots(cond)
        else:
            # A box restarts the untracked slots and the background slot with it, as on a first frame: run
            # for minutes, they come to hold tracked objects and take them from a fresh slot.
            untracked = [s for s in range(self._num_objects) if s not in self._tracks]  # the cleared ones too
            self._restart_slots([*new_boxes, *(untracked if new_boxes else cleared)], cond, background=bool(new_boxes))
        if started or ended or revived:
            self._tracks_updated()
        return started, ended, ignored, revived

    def _gate_bias(self, height: int, width: int) -> Optional[torch.Tensor]:
        """The gate's attention-logit bias for the anchored tracks' slots (``savi_core.tracking.gate``), or None
        with the gate off or no anchored track."""
        margin = self.config.gate_margin
        gated = [(slot + self._offset, t) for slot, t in self._tracks.items() if t.anchor_size is not None]
        if not margin or not gated:
            return None
        bias = gate_bias(gated, margin, self._num_slots, self._cell, self._cell_y, self._cell_x, height, width)
        return bias.to(self.device)

    @staticmethod
    def _prompt_start(prompt: Prompt, height: int, width: int) -> Optional[_Start]:
        """A prompt on this image: its box (a point's is the pixel it falls in), or None when it lies
        outside the image (or a mask is not of the image's size)."""
        if prompt.mask is not None:
            if prompt.mask.shape != (height, width):
                return None
            ys, xs = np.nonzero(prompt.mask)
            return _Start(
                np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64), mask=prompt.mask.astype(bool)
            )
        if prompt.point_xy is not None:
            x, y = prompt.point_xy
            if not (0 <= x < width and 0 <= y < height):
                return None
            return _Start(np.array([np.floor(x), np.floor(y), np.floor(x) + 1, np.floor(y) + 1]), point=(x, y))
        box = np.clip(np.asarray(prompt.box_xyxy, np.float64), 0.0, [width, height, width, height])
        return _Start(box) if box[2] > box[0] and box[3] > box[1] else None

    def _conditioning(self, starts: dict[int, _Start], height: int, width: int) -> Conditioning:
        """Conditioning for all object slots; only ``starts``' slots are conditioned (the rest get -1).
        Box models: a box, or a point as the zero-size box ``(y, x, y, x)``; centre-of-mass models: the
        point, the mask's centre of mass or the box's centre; segmentation models: the mask, or the box
        filled, at the model resolution (later slots drawn on top)."""
        yxyx = torch.full((1, self._num_objects, 4), -1.0)
        conditioned = torch.zeros(1, self._num_objects)
        size = torch.tensor([height, width, height, width], dtype=torch.float32)
        for slot, start in starts.items():
            if start.point is not None:
                x, y = start.point
                yxyx[0, slot] = torch.tensor([y, x, y, x], dtype=torch.float32) / size
            elif start.mask is not None and self._init_kind == "com":
                ys, xs = np.nonzero(start.mask)
                y, x = ys.mean() + 0.5, xs.mean() + 0.5
                yxyx[0, slot] = torch.tensor([y, x, y, x], dtype=torch.float32) / size
            else:
                yxyx[0, slot] = boxes_xyxy_to_yxyx(torch.as_tensor(start.box, dtype=torch.float32), height, width)
            conditioned[0, slot] = 1.0
        yxyx, conditioned = yxyx.to(self.device), conditioned.to(self.device)
        cond = Conditioning(conditioned=conditioned, features=self._features)
        if self._init_kind == "bbox":
            cond.boxes = yxyx
        elif self._init_kind == "com":
            cond.centers = (yxyx[..., :2] + yxyx[..., 2:]) / 2
        else:
            b = yxyx[0].view(-1, 4, 1, 1)
            inside = (
                (self._pixel_y >= b[:, 0])
                & (self._pixel_y < b[:, 2])
                & (self._pixel_x >= b[:, 1])
                & (self._pixel_x < b[:, 3])
            )
            for slot, start in starts.items():
                if start.mask is not None:
                    small = cv2.resize(
                        start.mask.astype(np.uint8), self._resolution[::-1], interpolation=cv2.INTER_NEAREST
                    )
                    inside[slot] = torch.from_numpy(small > 0).to(self.device)
            ids = torch.arange(1, self._num_objects + 1, device=self.device).view(-1, 1, 1)
            cond.segmentation = (inside * ids).amax(dim=0, keepdim=True)
        return cond

    def _tracks_updated(self) -> None:
        """Refresh the device lookup tables after tracks started or ended (not per frame). Each has one
        entry past the last slot, for pixels under the mask threshold: no track id, no stats row."""
        lut = torch.zeros(self._num_slots + 1, dtype=torch.uint16)
        slots = sorted(self._tracks)
        for slot in slots:
            lut[slot + self._offset] = self._tracks[slot].track_id
        self._slot_to_id = lut.to(self.device)
        self._live_order = slots  # object slots in the order of the stats rows
        rows = torch.full((self._num_slots + 1,), len(slots), dtype=torch.int32)
        for index, slot in enumerate(slots):
            rows[slot + self._offset] = index
        self._slot_to_row = rows.to(self.device)
        if self._opencv_labels:  # the same tables for cv2.LUT
            self._id_lut = np.zeros((1, LUT_SIZE), np.uint16)
            self._id_lut[0, : self._num_slots + 1] = lut.numpy()
            self._row_lut = np.full((1, LUT_SIZE), len(slots), np.uint8)
            self._row_lut[0, : self._num_slots + 1] = rows.numpy()

    # ------------------------------------------------------------------ tensors

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None)

    @staticmethod
    def _check_image(image: np.ndarray) -> tuple[int, int]:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
            raise ValueError(f"image must be a uint8 numpy array [H, W, 3] (RGB), got {got}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image must not be empty, got shape {image.shape}")
        return image.shape[0], image.shape[1]

    def _preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 HWC host image -> float ``[1, 3, h, w]`` in [0, 1] at the model resolution, on the device."""
        if self.device.type == "cuda":
            if self._pinned is None or self._pinned.shape != image.shape:
                self._pinned = torch.empty(image.shape, dtype=torch.uint8, pin_memory=True)
            np.copyto(self._pinned.numpy(), image)  # safe to overwrite: the previous step ended with a sync
            pixels = self._pinned.to(self.device, non_blocking=True)
        elif image.flags.writeable and image.flags.c_contiguous:
            pixels = torch.from_numpy(image)
        else:
            pixels = torch.from_numpy(np.array(image, order="C"))
        frame = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        return resize_frames(frame, self._resolution)

    def _ramps(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._size_cache is None or self._size_cache[0] != (height, width):
            ys = torch.arange(height, device=self.device, dtype=torch.int32)
            xs = torch.arange(width, device=self.device, dtype=torch.int32)
            self._size_cache = ((height, width), ys, xs)
        return self._size_cache[1], self._size_cache[2]

    def _postprocess(self, masks: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot probabilities ``[K, h, w]`` -> label map uint16 ``[H, W]`` and per-live-track stats
        ``[T, 6]`` float64 (area, x0, y0, x1, y1, score), all on the device (``savi_core.tracking.labels``)."""
        best, label_map, row = self._camera_size_labels(masks.float(), height, width)
        ys, xs = self._ramps(height, width)
        return label_map, label_stats(best, row, len(self._live_order), ys, xs)

    def _camera_size_labels(
        self, probs: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per camera pixel: the winning probability of the bilinearly resized slot probabilities, the
        track id of the winning slot (0 under ``mask_threshold``) and its stats row (int32; ``T`` for
        none)."""
        k, h, w = probs.shape
        threshold = self.config.mask_threshold
        if self._opencv_labels and height >= h and width >= w:
            return opencv_camera_labels(
                probs.contiguous().numpy(),
                height,
                width,
                threshold,
                self._buffers,
                self._num_slots,
                self._id_lut,
                self._row_lut,
            )
        if (h, w) == (height, width):
            best, slot = probs.max(dim=0)
        else:
            best, slot = resize_probabilities(probs, (height, width)).max(dim=0)
        slot.masked_fill_(best < threshold, self._num_slots)
        return best, self._slot_to_id[slot], self._slot_to_row[slot]

    # ------------------------------------------------------------------ bookkeeping

    def _undo_trades(self, image: np.ndarray, label_map: np.ndarray, stats: np.ndarray) -> None:
        """Give back the ids of tracks whose slots traded objects in a crossing (`savi_core.tracking.appearance`):
        the ids move to the slots now on their objects, in this frame's label map too."""
        visible = [(self._tracks[slot], row) for row, slot in zip(stats, self._live_order) if row[0] > 0]
        trades = self._appearance.trades(
            image,
            label_map,
            {t.track_id: row[1:5] for t, row in visible},
            {t.track_id: float(row[0]) for t, row in visible},
            {t.track_id: t.anchor_area for t, row in visible},
            self.config.swap_margin,
        )
        if not trades:
            return
        slot_of = {track.track_id: slot for slot, track in self._tracks.items()}
        for a, b in trades:
            first, second = label_map == a, label_map == b
            label_map[first], label_map[second] = b, a
            self._tracks[slot_of[a]].trade_objects(self._tracks[slot_of[b]])
        self._tracks_updated()

    def _revive(
        self, image: np.ndarray, label_map: np.ndarray, stats: np.ndarray, now: float
    ) -> tuple[dict[int, int], list[int], np.ndarray]:
        """Provisional tracks (started id-less this step while tracks are dormant or lost) whose first mask
        looks like a dormant track, or like a lost track that no detection re-anchored (`savi_core.tracking.reid`),
        take its id and class, in this frame's label map too; the id a detection's track had is freed (never
        published). A lost track so taken leaves its slot, which restarts unconditioned: the new slot holds
        its object now. Returns ({provisional id: revived or taken id}, the lost ids taken, the stats rows
        without those of the slots left)."""
        if not self._provisional:
            return {}, [], stats
        looks = Looks(image, label_map, self._features)
        found = []
        for row, slot in zip(stats, self._live_order):
            if slot in self._provisional and row[0] >= max(self.config.min_mask_area, 1):
                track = self._tracks[slot]
                # A fresh slot's first mask often spills past its object: the starting box (still the
                # track's box, not a point's) bounds the look and gives the size.
                box = track.box.copy() if track.anchor_size is not None else row[1:5].copy()
                look = looks.of(track.track_id, box)
                if look is not None:
                    found.append(Candidate(track.track_id, track.class_id, box, look))
        lost = {
            t.track_id: slot
            for slot, t in self._tracks.items()
            if t.lost_frames and slot not in self._provisional and slot not in self._anchored
        }
        waiting = [
            self._dormancy.stand_in(t.track_id, t.class_id, t.box, t.anchor_size, now)
            for t in self._tracks.values()
            if t.track_id in lost
        ]
        renamed = self._dormancy.match(found, self.config.reid_threshold, float(np.hypot(*label_map.shape)), waiting)
        slot_of = {t.track_id: s for s, t in self._tracks.items()}
        taken: list[int] = []
        for new, old in renamed.items():
            slot = slot_of[new]
            if old in lost:
                label_map[label_map == old] = 0
                del self._tracks[lost[old]]
                taken.append(old)
            label_map[label_map == new] = old
            track = self._tracks[slot]
            woken = self._dormancy.wake(old)
            track.track_id, track.class_id = old, (woken.class_id if woken else "") or track.class_id
            if self._provisional[slot]:
                self._ids.release(new)
        if taken:
            left = [lost[old] for old in taken]
            stats = stats[[i for i, slot in enumerate(self._live_order) if slot not in left]]
            self._clear_slots(left)
        if renamed:
            self._tracks_updated()
        return renamed, sorted(taken), stats

    def _update_tracks(
        self, image: np.ndarray, label_map: np.ndarray, stats: np.ndarray, now: float
    ) -> tuple[list[int], list[Track], list[int]]:
        """Undo traded objects, apply the lost rule (a track lost long enough becomes dormant, or ends), free
        those slots, refresh the tracks' looks and build the visible tracks list (host side). Returns (ended
        ids, visible tracks, ids that became dormant)."""
        swapping = self.config.swap_margin > 0
        if swapping:
            self._undo_trades(image, label_map, stats)
        ended: list[int] = []
        slept: list[int] = []
        ended_slots: list[int] = []
        tracks: list[Track] = []
        growth = self.config.max_area_growth
        for row, slot in zip(stats, self._live_order):
            track = self._tracks[slot]
            area = int(row[0])
            if track.anchor_area is None and area >= self.config.min_mask_area:
                track.anchor_area = float(area)
                track.anchor_size = (float(row[3] - row[1]), float(row[4] - row[2]))
            overgrown = bool(growth) and track.anchor_area is not None and area > growth * track.anchor_area
            if area > 0 and not overgrown:
                box = row[1:5].copy()
                whole = track.anchor_size is not None and (
                    box[2] - box[0] >= WHOLE * track.anchor_size[0] and box[3] - box[1] >= WHOLE * track.anchor_size[1]
                )
                # A partly hidden object's mask box moves with the occluder, not with the object.
                track.velocity = (
                    (
                        (box[0] + box[2] - track.box[0] - track.box[2]) / 2,
                        (box[1] + box[3] - track.box[1] - track.box[3]) / 2,
                    )
                    if whole and track.whole and track.lost_frames == 0
                    else (0.0, 0.0)
                )
                track.whole = whole
                track.box = box
                track.score = float(row[5])
            lost = area < self.config.min_mask_area or overgrown
            track.lost_frames = track.lost_frames + 1 if lost else 0
            if track.lost_frames >= self.config.lost_after_frames:
                if self.config.dormant_seconds > 0:
                    self._dormancy.sleep(track.track_id, track.class_id, track.box, track.anchor_size, now)
                    slept.append(track.track_id)
                else:
                    ended.append(track.track_id)
                ended_slots.append(slot)
                del self._tracks[slot]
            elif track.lost_frames == 0 and area > 0:
                tracks.append(
                    Track(track.track_id, track.class_id, tuple(float(v) for v in row[1:5]), float(row[5]), area)
                )
            if track.lost_frames and area > 0:  # a lost or ended track's pixels are not published
                label_map[label_map == track.track_id] = 0
        if swapping:
            self._appearance.update(
                image,
                label_map,
                {t.track_id: np.asarray(t.box_xyxy) for t in tracks},
                {t.track_id for t in self._tracks.values() if t.whole and not t.lost_frames},
                set(self.live_tracks),
            )
        if self.config.dormant_seconds > 0:
            self._dormancy.observe(
                Looks(image, label_map, self._features),
                {t.track_id: np.asarray(t.box_xyxy) for t in tracks},
                {t.track_id for t in self._tracks.values() if t.whole and not t.lost_frames},
            )
        self._dormancy.forget(set(self.live_tracks) | set(self._dormancy.dormant))
        if ended_slots:
            if not self._tracks:
                self._slots = None
            else:
                self._clear_slots(ended_slots)
            self._tracks_updated()
        return ended, tracks, slept
