"""Tracker: the ROS-free state machine that turns RGB images (any size) and occasional pixel-box detections or
prompts into track ids, label maps and per-track boxes.

The rules: docs/INTERFACE.md "How tracks start, live and end" (geometry, starts, re-anchoring, lost, dormant,
gate, crossings). The Tracker holds the model's slot state and runs the step; the tracks and ids live in a
`live_track.TrackBook` that the lifecycle steps edit: starts (`starts`), revival and the lost rule
(`lifecycle`), crossings (`trades`, `appearance`). Its other helpers: the conditioning of slots
(`conditioning`), the camera-size frames and label maps (`labels`), the gate (`gate`), association and
dormancy (`association`, `reid`) and ids (`track_ids`).
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
from savi_core.tracking.association import accepted
from savi_core.tracking.conditioning import SlotConditioning
from savi_core.tracking.datatypes import Detection, Prompt, Track, TrackResult
from savi_core.tracking.gate import Gate
from savi_core.tracking.labels import CameraLabels
from savi_core.tracking.lifecycle import Seen, revive, update_tracks
from savi_core.tracking.live_track import TrackBook
from savi_core.tracking.starts import Starts, start_tracks
from savi_core.tracking.tracker_config import TrackerConfig

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
        self._book = TrackBook(self._labels.set_tracks)  # live and dormant tracks, ids, this step's starts
        self._last_labels: Optional[np.ndarray] = None  # the last label map (points on live tracks)
        self._appearance = AppearanceMemory()
        self._slots: torch.Tensor | None = None  # [1, K, D] predicted slots for the next frame
        self._freed: list[list[int]] = []  # slots the last step freed, restarted by `settle` group by group
        self.reset()

    # ------------------------------------------------------------------ public API

    @property
    def live_tracks(self) -> dict[int, str]:
        """Live track id -> class id of the detection that started it."""
        return {t.track_id: t.class_id for t in self._book.tracks.values()}

    @property
    def dormant_tracks(self) -> dict[int, str]:
        """Dormant track id -> class id: no slot, id reserved until revived or expired (`savi_core.tracking.reid`)."""
        return {t.track_id: t.class_id for t in self._book.dormancy.dormant.values()}

    def reset(self) -> list[int]:
        """End every track, dormant ones too, drop the slot state and restart ids at 1; returns the ended ids."""
        ended = self._book.reset()
        self._slots = None
        self._freed = []
        self._features = None  # the last frame's features, for models whose slots start from them
        self._last_labels = None
        self._appearance.reset()
        return ended

    @torch.inference_mode()
    def remove_track(self, track_id: int) -> bool:
        """End one live or dormant track now (its slot is free for later detections, its id is not reused
        until `reset`); False when no live or dormant track has that id. Restarting the slot runs the model:
        in inference mode, as `step` (the last frame's features are inference tensors)."""
        if self._book.dormancy.wake(track_id) is not None:
            return True
        self.settle()
        slot = self._book.slot_of(track_id)
        if slot is None:
            return False
        if len(self._book.tracks) == 1:
            self._slots = None
        else:
            self._clear_slots([slot])  # first: should it fail, the track is still whole
        del self._book.tracks[slot]
        self._book.refresh()
        return True

    @property
    def mask_source(self) -> str:
        """The mask source in use: ``config.mask_source``, except that a model without a decoder (the
        prototype models) always gives its attention (live: read every step)."""
        has_decoder = getattr(self._model.config, "has_decoder", True)
        return self.config.mask_source if has_decoder else "attention"

    @property
    def guided_edges(self) -> bool:
        """Whether this step's masks go through the guided filter: ``mask_edges`` guided, or auto with a mask
        source that comes at a feature stride (live: read every step)."""
        edges = self.config.mask_edges
        return edges == "guided" or (edges == "auto" and self._coarse_masks[self.mask_source])

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
        free = self.max_tracks - len(self._book.tracks) - len(self._book.pending)
        if len(prompts) > free:
            raise ValueError(
                f"{len(prompts)} object(s) asked for, {max(free, 0)} free slot(s) (max_tracks {self.max_tracks})"
            )
        ids = []
        for prompt in prompts:
            track_id = self._book.reserve(prompt.track_id)
            if track_id is None:
                raise ValueError("no track id left (all 65535 used since the last reset)")
            self._book.pending.append((prompt, track_id))
            ids.append(track_id)
        return ids

    @torch.inference_mode()
    def settle(self) -> None:
        """Restart the slots the last step freed (lost tracks a revival took, tracks that ended or went dormant):
        the next step needs them, the last one's result does not. A caller that publishes each result calls this
        after publishing, taking the restarts (a background search each: milliseconds) off the frame's latency;
        otherwise the next step, or `remove_track`, does it first, on the same slots and features, in the same
        order: the same bits either way."""
        freed, self._freed = self._freed, []
        for slots in freed:
            if self._slots is not None:
                self._clear_slots(slots)

    @torch.inference_mode()
    def step(
        self, image: np.ndarray, detections: list[Detection] | None = None, stamp: float | None = None
    ) -> TrackResult:
        """Process one RGB ``uint8 [H, W, 3]`` image (any size) with the detections made on it, if any.
        ``stamp``: the image's time in seconds, which dormant tracks' windows are measured in; None = the
        host's monotonic clock at the call (a live stream; give stamps for recordings and tests). The slots it
        frees restart in `settle`."""
        self.settle()
        t_start = time.perf_counter()
        height, width = self._labels.check_image(image)
        now = time.monotonic() if stamp is None else float(stamp)
        book = self._book
        expired = book.dormancy.expire(now, self.config.dormant_seconds)
        if detections is not None:
            book.detection_stamps.append(now)
        candidates = accepted(detections or [], self.config, height, width)
        if self._slots is None and not candidates and not book.pending:
            return self._empty_result(height, width, 0, t_start, expired, sorted(book.dormancy.dormant))
        clock = self._labels.stopwatch
        clock.mark(0)
        frame = self._labels.preprocess(image)
        clock.mark(1)
        features = None
        if self._needs_features:  # the slots start from this frame's features: encode once, before
            with self._autocast():
                features = self._features = self._model.encode(frame)
        bootstrap = self._slots is None
        starts = start_tracks(book, candidates, self.config, self.max_tracks, bootstrap, height, width)
        self._condition_slots(starts, bootstrap, height, width)
        if self._slots is None:  # every bootstrap candidate was refused (no track id left)
            return self._empty_result(height, width, starts.ignored, t_start, expired, sorted(book.dormancy.dormant))
        gate = self._gate.bias(book.tracks, self.config.gate_margin, height, width)
        source = self.mask_source
        guided = self.guided_edges
        # Guided attention masks need only the live slots' planes at the frame: the attention comes at the
        # feature grid and the labels upsample just those.
        grid = guided and source == "attention"
        with self._autocast():
            extra = {} if features is None else {"features": features}
            out = self._model.step(frame, self._slots, decode="none" if grid else source, attention_bias=gate, **extra)
        self._slots = out.predicted
        clock.mark(2)
        masks = (out.attention if grid else out.masks)[0]
        label_map, stats = self._labels.postprocess(
            masks, frame[0], guided, height, width, self.config.mask_threshold, grid
        )
        clock.mark(3)
        label_map, stats = label_map.cpu().numpy(), stats.cpu().numpy()  # the only device -> host copies
        self._last_labels = label_map
        pre_ms, model_ms, post_ms = clock.phases_ms()
        seen = Seen(image, label_map, now, self._features)
        revival = revive(book, self.config, seen, stats)
        if revival.left:
            self._freed.append(revival.left)
        renamed, reclaimed = revival.renamed, revival.taken
        started = [i for i in starts.started if i not in renamed] + revival.started
        revived = sorted(starts.revived + [i for i in renamed.values() if i not in reclaimed])
        update = update_tracks(book, self._appearance, self.config, seen, revival.stats)
        if update.freed:
            if not book.tracks:
                self._slots = None
            else:
                self._freed.append(list(update.freed))
        ended = sorted(starts.ended + update.ended + expired)
        return TrackResult(
            label_map=label_map,
            tracks=update.tracks,
            live_track_ids=sorted(self.live_tracks),
            started=started,
            ended=ended,
            dormant_track_ids=sorted(book.dormancy.dormant),
            slept=sorted(revival.slept + update.slept),
            revived=revived,
            reclaimed=reclaimed,
            expired=expired,
            tracks_changed=bool(started or ended or update.slept or revival.slept or revived),
            ignored_detections=starts.ignored,
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

    # ------------------------------------------------------------------ slots

    def _condition_slots(self, starts: Starts, bootstrap: bool, height: int, width: int) -> None:
        """(Re-)initialise the slots `start_tracks` started or re-anchored (from their box, point or mask and
        this frame's features) and restart the slots of the duplicates it ended unconditioned."""
        if not starts.new_boxes and not starts.cleared:
            return
        cond = self._conditioner.conditioning(starts.new_boxes, height, width, self._features)
        if bootstrap:
            with self._autocast():
                self._slots = self._model.init_slots(cond)
        else:
            # A box restarts its own slot alone and an ended duplicate's slot restarts unconditioned: every
            # other slot, the background's included, keeps its state. Restarting the background and untracked
            # slots with each new track, as on a first frame, took the tracked objects' pixels from their slots
            # (dev videos at 320x240, each late object boxed when it appears: 3D mIoU 61.4 -> 73.1) and cost a
            # detection frame a background search.
            self._restart_slots([*starts.new_boxes, *starts.cleared], cond)
        if starts.started or starts.ended or starts.revived:
            self._book.refresh()

    def _clear_slots(self, slots: list[int]) -> None:
        """Restart object ``slots`` unconditioned (as padding slots start in training): a slot whose track
        ended keeps following its object otherwise, and takes it from a slot started on it later."""
        self._restart_slots(slots, self._conditioner.conditioning({}, 1, 1, self._features))

    def _restart_slots(self, slots: list[int], cond: Conditioning) -> None:
        """Re-initialise object ``slots`` from ``cond`` (unconditioned where it conditions none); the others
        keep their state."""
        which = torch.zeros(1, self._num_slots, dtype=torch.bool)
        which[0, [s + self._offset for s in slots]] = True
        with self._autocast():
            self._slots = self._model.init_slots_for(self._slots, cond, which.to(self.device))

    # ------------------------------------------------------------------ tensors

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None)
