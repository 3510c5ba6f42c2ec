"""Tracker: the ROS-free state machine that turns RGB images (any size) and occasional pixel-box detections or
prompts into track ids, label maps and per-track boxes.

The rules: docs/INTERFACE.md "How tracks start, live and end" (geometry, starts, re-anchoring, lost, dormant,
gate, crossings). The Tracker holds the model's slot state and the live tracks, and leaves to its helpers
the conditioning of slots (`conditioning`), the camera-size frames and label maps (`labels`), the gate
(`gate`), association and dormancy (`association`, `reid`), crossings (`appearance`) and ids (`track_ids`).

Over 350 lines: the track lifecycle (`_start_tracks`, `_update_tracks`, `_revive`, `_undo_trades`) edits
the tracks and slot state this class holds, and is read with them.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from torch import nn

from savi_core.device import resolve_device
from savi_core.model.initializers import Conditioning
from savi_core.tracking.appearance import AppearanceMemory
from savi_core.tracking.association import accepted, associate
from savi_core.tracking.conditioning import SlotConditioning, prompt_start
from savi_core.tracking.conditioning import Start as _Start
from savi_core.tracking.datatypes import Detection, Prompt, Track, TrackResult
from savi_core.tracking.gate import Gate
from savi_core.tracking.geometry import box_iou_xyxy
from savi_core.tracking.labels import CameraLabels
from savi_core.tracking.live_track import LiveTrack as _LiveTrack
from savi_core.tracking.reid import Candidate, Dormancy, Looks
from savi_core.tracking.track_ids import TrackIdAllocator
from savi_core.tracking.tracker_config import TrackerConfig

REANCHOR_IOU = 0.5  # a matched track whose mask box overlaps its detection less than this is re-anchored
REANCHOR_SCORE = 0.8  # ... or whose slot's mean probability over its mask fell under this (it is fading)
WHOLE = 0.75  # a mask box this share of its anchor box's width and height shows the whole object

_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}

__all__ = ["Detection", "Prompt", "Track", "TrackResult", "Tracker"]


class Tracker:
    """Streams images through a SAVi model and keeps track ids (the rules: docs/INTERFACE.md).

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
        if self.config.precision == "fp16" and self.device.type != "cuda":  # slow or missing CPU kernels
            raise ValueError("precision: 'fp16' needs a CUDA device; use 'fp32' or 'bf16' on cpu")
        self._model = model.to(self.device).eval()
        self._needs_features = bool(getattr(model, "needs_features", False))  # SAVi.needs_features
        # Which mask sources come at a feature stride (the guided filter's job under mask_edges auto).
        mlp_decoder = model.config.has_decoder and model.config.decoder.kind == "mlp"
        self._coarse_masks = {"attention": model.config.encoder.stride > 1, "decoder": mlp_decoder}
        self._resolution = tuple(model.config.resolution)
        self._num_objects = model.num_object_slots
        self._offset = int(model.config.initializer.background_slot)
        self._num_slots = model.config.num_slots
        self.max_tracks = min(self.config.max_tracks, self._num_objects)
        self._autocast_dtype = _AUTOCAST_DTYPES.get(self.config.precision)
        self._conditioner = SlotConditioning(model, self.device)
        self._gate = Gate(model.config, self.device)
        self._labels = CameraLabels(self.device, self._resolution, self._num_slots, self._offset)
        self._ids = TrackIdAllocator()
        self._pending: list[tuple[Prompt, int]] = []  # add_objects prompts and their reserved ids
        self._last_labels: Optional[np.ndarray] = None  # the last label map (points on live tracks)
        self._tracks: dict[int, _LiveTrack] = {}  # object slot -> track
        self._appearance = AppearanceMemory()
        self._dormancy = Dormancy()  # dormant tracks and every track's looks (savi_core.tracking.reid)
        self._provisional: dict[int, bool] = {}  # slot started this step that may revive -> free its id then
        self._anchored: set[int] = set()  # slots (re)started from a detection or prompt this step
        self._slots: torch.Tensor | None = None  # [1, K, D] predicted slots for the next frame
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

    @torch.inference_mode()
    def remove_track(self, track_id: int) -> bool:
        """End one live or dormant track now (its slot is free for later detections, its id is not reused
        until `reset`); False when no live or dormant track has that id. Restarting the slot runs the model:
        in inference mode, as `step` (the last frame's features are inference tensors)."""
        if self._dormancy.wake(track_id) is not None:
            return True
        slot = next((s for s, t in self._tracks.items() if t.track_id == track_id), None)
        if slot is None:
            return False
        if len(self._tracks) == 1:
            self._slots = None
        else:
            self._clear_slots([slot])  # first: should it fail, the track is still whole
        del self._tracks[slot]
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
        """What `add_objects` takes for this model (`SlotConditioning.prompt_kinds`)."""
        return self._conditioner.prompt_kinds

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
        self._conditioner.check_prompts(prompts)
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
        height, width = self._labels.check_image(image)
        now = time.monotonic() if stamp is None else float(stamp)
        expired = self._dormancy.expire(now, self.config.dormant_seconds)
        candidates = accepted(detections or [], self.config, height, width)
        if self._slots is None and not candidates and not self._pending:
            return self._empty_result(height, width, 0, t_start, expired, sorted(self._dormancy.dormant))
        clock = self._labels.stopwatch
        clock.mark(0)
        frame = self._labels.preprocess(image)
        clock.mark(1)
        features = None
        if self._needs_features:  # the slots start from this frame's features: encode once, before
            with self._autocast():
                features = self._features = self._model.encode(frame)
        started, doubled, ignored, revived = self._start_tracks(candidates, height, width)
        if self._slots is None:  # every bootstrap candidate was refused (no track id left)
            return self._empty_result(height, width, ignored, t_start, expired, sorted(self._dormancy.dormant))
        gate = self._gate.bias(self._tracks, self.config.gate_margin, height, width)
        with self._autocast():
            extra = {} if features is None else {"features": features}
            out = self._model.step(frame, self._slots, decode=self.mask_source, attention_bias=gate, **extra)
        self._slots = out.predicted
        clock.mark(2)
        masks = out.masks[0]
        edges = self.config.mask_edges  # live: read every step
        guided = edges == "guided" or (edges == "auto" and self._coarse_masks[self.mask_source])
        label_map, stats = self._labels.postprocess(masks, frame[0], guided, height, width, self.config.mask_threshold)
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

    _prompt_start = staticmethod(prompt_start)

    def _conditioning(self, starts: dict[int, _Start], height: int, width: int) -> Conditioning:
        """Conditioning for all object slots from ``starts`` and this frame's features (`SlotConditioning`)."""
        return self._conditioner.conditioning(starts, height, width, self._features)

    def _tracks_updated(self) -> None:
        """Refresh the label tables after tracks started or ended (not per frame)."""
        self._live_order = sorted(self._tracks)  # object slots in the order of the stats rows
        self._labels.set_tracks([(slot, self._tracks[slot].track_id) for slot in self._live_order])

    # ------------------------------------------------------------------ tensors

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None)

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
