"""Tracker state machine (docs/INTERFACE.md, how tracks start, live and end) and its pixel geometry.

State-machine tests run a tiny real SAVi with random weights. Geometry tests need masks that really are
the conditioned boxes, which no untrained model gives, so they use ``BoxPainter``: a stand-in with
SAVi's ``init_slots`` / ``init_slots_for`` / ``step`` API whose slot *is* its box and whose mask is the box's
exact pixel coverage, i.e. a perfect segmenter at the model's mask resolution.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from savi_core.model.config import InitializerConfig, ModelConfig, tiny_config
from savi_core.model.initializers import Conditioning
from savi_core.model.savi import SAVi, StepOutput
from savi_core.tracking.geometry import box_iou_xyxy, boxes_xyxy_to_yxyx, resize_probabilities, tight_boxes
from savi_core.tracking.labels import label_stats, opencv_camera_labels, opencv_label_stats
from savi_core.tracking.track_ids import TrackIdAllocator, parse_track_id
from savi_core.tracking.tracker import Detection, Prompt, Tracker, TrackResult
from savi_core.tracking.tracker_config import TrackerConfig

torch.set_num_threads(1)


def coverage(yxyx: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fraction of every pixel of an ``size`` grid covered by normalised boxes ``[..., 4]`` -> ``[..., H, W]``."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float32)
    xs = torch.arange(w, dtype=torch.float32)
    y0, x0, y1, x1 = (yxyx[..., i, None] for i in range(4))
    cy = (torch.minimum(y1 * h, ys + 1) - torch.maximum(y0 * h, ys)).clamp(0, 1)
    cx = (torch.minimum(x1 * w, xs + 1) - torch.maximum(x0 * w, xs)).clamp(0, 1)
    return cy.unsqueeze(-1) * cx.unsqueeze(-2)


class BoxPainter(nn.Module):
    """A perfect box segmenter with SAVi's streaming API; see the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_object_slots = cfg.num_object_slots
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def init_slots(self, cond: Conditioning) -> torch.Tensor:
        boxes = torch.where(cond.conditioned.unsqueeze(-1) > 0.5, cond.boxes, 0.0)
        return torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)  # slot 0 = background

    def init_slots_for(self, slots: torch.Tensor, cond: Conditioning, which: torch.Tensor) -> torch.Tensor:
        return torch.where(which.unsqueeze(-1), self.init_slots(cond), slots)

    def step(
        self,
        frame: torch.Tensor,
        slots: torch.Tensor,
        decode: str = "decoder",
        attention_bias: torch.Tensor | None = None,
    ) -> StepOutput:
        assert tuple(frame.shape[-2:]) == tuple(self.config.resolution)
        objects = coverage(slots[:, 1:], self.config.decoder.output_size)
        background = (1 - objects.sum(dim=1, keepdim=True)).clamp(min=0)
        masks = torch.cat([background, objects], dim=1)
        masks = masks / masks.sum(dim=1, keepdim=True)
        return StepOutput(slots=slots, predicted=slots, attention=masks, masks=masks)


@pytest.fixture(scope="module")
def savi() -> SAVi:
    torch.manual_seed(0)
    return SAVi(tiny_config())


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def check_tracks_match_label_map(result) -> None:
    """Every reported track's area and box are those of its pixels in the label map."""
    for track in result.tracks:
        pixels = result.label_map == track.track_id
        assert track.area == pixels.sum() > 0
        rows, cols = np.nonzero(pixels)
        assert track.box_xyxy == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert 0.0 < track.score <= 1.0


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "field, value",
    [
        ("mask_source", "pixels"),
        ("precision", "fp8"),
        ("score_threshold", 1.5),
        ("score_threshold", float("nan")),
        ("class_ids", ("person", 3)),
        ("class_ids", "person"),
        ("max_tracks", 0),
        ("max_tracks", 2.5),
        ("reinit", "never"),
        ("new_object_iou", -0.1),
        ("min_mask_area", -1),
        ("lost_after_frames", 0),
        ("mask_threshold", 2),
        ("dormant_seconds", -1.0),
        ("dormant_seconds", float("inf")),
        ("reid_threshold", 1.5),
    ],
)
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        TrackerConfig(**{field: value})


def test_fp16_on_cpu_is_refused(savi):
    with pytest.raises(ValueError, match="^precision:.*CUDA"):
        Tracker(savi, TrackerConfig(precision="fp16"), device="cpu")


def test_unconditional_model_is_refused():
    cfg = tiny_config()
    cfg.initializer = InitializerConfig(kind="learned", hidden_dim=16, background_slot=False)
    with pytest.raises(ValueError, match="^model:.*'learned'"):
        Tracker(SAVi(cfg), TrackerConfig())


# ------------------------------------------------------------------------------------------ helpers


def test_id_allocator_rules():
    ids = TrackIdAllocator()
    assert [ids.claim(s) for s in ("3", "7", "", "x", "7", "0", "65536", " 2 ", "")] == [3, 7, 1, 2, 4, 5, 6, 8, 9]
    ids.reset()
    assert ids.claim("") == 1 and ids.claim("1") == 2
    ids.reset()
    # Only ASCII decimal digits: not Python's int() literals, signs or other scripts' digits.
    assert [ids.claim(s) for s in ("1_0", "+3", "\u0663", "-4", "0x1f", "12")] == [1, 2, 3, 4, 5, 12]


def test_ids_follow_the_contract_rule_within_a_bounded_length():
    """Decimal ASCII digits valued 1..65535, nothing else: no spaces, and no int() of an unbounded string
    (a 5000-digit id made int() raise and cost the frame)."""
    assert [parse_track_id(s) for s in ("1", "65535", "00012", "7")] == [1, 65535, 12, 7]
    for text in ("", " 7 ", "7 ", "0", "65536", "000012", "9" * 5000, "1" * 6, "1e3", "-1", "\u0663", "7\n"):
        assert parse_track_id(text) is None, repr(text)
    ids = TrackIdAllocator()
    assert [ids.claim(s) for s in (" 9 ", "9" * 5000, "00009")] == [1, 2, 9]


def test_id_allocator_exhaustion():
    ids = TrackIdAllocator()
    assert [ids.claim() for _ in range(65535)][-1] == 65535
    assert ids.claim() is None and ids.claim("17") is None


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks ``[T, H, W]``."""
    t, h, w = masks.shape
    return tight_boxes(masks.any(dim=2), masks.any(dim=1), torch.arange(h), torch.arange(w))


def test_box_iou_and_mask_boxes():
    iou = box_iou_xyxy(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])
    masks = torch.zeros(2, 6, 9, dtype=torch.bool)
    masks[0, 1:4, 2:7] = True  # rows 1..3, columns 2..6
    assert masks_to_boxes(masks).tolist() == [[2.0, 1.0, 7.0, 4.0], [0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("input_size, model_size", [((45, 70), (32, 32)), ((61, 37), (32, 24)), ((20, 27), (32, 32))])
def test_box_mask_box_round_trip_within_one_pixel(input_size, model_size):
    """Pixel box -> normalised -> exact mask at model resolution -> resized probabilities -> box.

    Upsampling by more than ~2.5x can cost more than a pixel at the image border, where bilinear
    interpolation has no outer neighbour: that is the mask resolution, not the mapping, so the sizes
    here stay below it."""
    height, width = input_size
    rng = np.random.default_rng(1)
    for _ in range(20):
        x0, x1 = sorted(rng.choice(width + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(height + 1, 2, replace=False))
        yxyx = boxes_xyxy_to_yxyx(torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32), height, width)
        obj = coverage(yxyx, model_size)
        probs = resize_probabilities(torch.cat([1 - obj, obj]), input_size)
        assert probs.shape == (2, height, width)
        mask = (probs.argmax(0) == 1) & (probs.max(0).values >= 0.5)
        box = masks_to_boxes(mask.unsqueeze(0))[0].numpy()
        if mask.any():
            assert np.abs(box - [x0, y0, x1, y1]).max() <= 1.0, (box, (x0, y0, x1, y1))
        else:  # only a box thinner than a pixel can vanish
            assert min(x1 - x0, y1 - y0) <= 1


# ------------------------------------------------------------------------------------------ geometry end to end


@pytest.mark.parametrize("input_size", [(60, 100), (70, 45)])
def test_tracker_boxes_map_back_to_input_pixels(input_size):
    height, width = input_size
    model = BoxPainter(tiny_config(resolution=(32, 48), decoder=((8, 12), (2, 2))))
    tracker = Tracker(model, TrackerConfig(min_mask_area=1), device="cpu")
    boxes = [(3, 5, 40, 30), (width - 25, height - 19, width, height)]
    result = tracker.step(image(height, width), [Detection(b, "cup", det_id=str(i + 10)) for i, b in enumerate(boxes)])
    assert result.label_map.shape == (height, width) and result.label_map.dtype == np.uint16
    assert [t.track_id for t in result.tracks] == [10, 11]
    for track, box in zip(result.tracks, boxes):
        assert np.abs(np.array(track.box_xyxy) - box).max() <= 1.0, (track.box_xyxy, box)
        assert track.class_id == "cup" and track.score > 0.9
    check_tracks_match_label_map(result)


def test_add_new_with_a_perfect_segmenter():
    model = BoxPainter(tiny_config(num_slots=4))
    tracker = Tracker(model, TrackerConfig(new_object_iou=0.3, min_mask_area=1), device="cpu")
    img = image(40, 60)
    first = tracker.step(img, [Detection((2, 2, 20, 20))])
    assert first.started == [1]
    overlapping = tracker.step(img, [Detection((4, 3, 21, 20))])
    assert overlapping.started == [] and not overlapping.tracks_changed
    new = tracker.step(img, [Detection((30, 20, 55, 38), det_id="5")])
    assert new.started == [5] and new.tracks_changed and new.live_track_ids == [1, 5]
    box = next(t.box_xyxy for t in new.tracks if t.track_id == 5)
    assert np.abs(np.array(box) - (30, 20, 55, 38)).max() <= 1.0
    first_box = next(t.box_xyxy for t in new.tracks if t.track_id == 1)
    assert np.abs(np.array(first_box) - (2, 2, 20, 20)).max() <= 1.0  # the old slot kept its state


# ------------------------------------------------------------------------------------------ state machine


def test_no_tracks_no_detections_gives_empty_result(savi):
    tracker = Tracker(savi, TrackerConfig(), device="cpu")
    result = tracker.step(image(24, 40), None)
    assert result.label_map.shape == (24, 40) and not result.label_map.any()
    assert result.tracks == [] and result.live_track_ids == [] and not result.tracks_changed
    assert result.timings["model"] == 0.0


def test_bootstrap_ids_from_detections_and_outputs(savi):
    tracker = Tracker(savi, TrackerConfig(mask_threshold=0.0, min_mask_area=0), device="cpu")
    dets = [Detection((1, 1, 12, 10), "a", 0.9, "3"), Detection((20, 8, 45, 30), "b", 0.8, "7")]
    result = tracker.step(image(33, 50), dets)
    assert result.started == [3, 7] and result.live_track_ids == [3, 7] and result.tracks_changed
    assert tracker.live_tracks == {3: "a", 7: "b"}
    assert result.label_map.shape == (33, 50) and result.label_map.dtype == np.uint16
    assert set(np.unique(result.label_map)) <= {0, 3, 7}
    check_tracks_match_label_map(result)
    assert set(result.timings) == {"preprocess", "model", "postprocess", "total"}
    assert all(v >= 0 for v in result.timings.values()) and result.timings["model"] > 0
    following = tracker.step(image(33, 50, seed=1))
    assert following.started == [] and not following.tracks_changed and following.live_track_ids == [3, 7]
    check_tracks_match_label_map(following)


@pytest.mark.parametrize("det_ids", [("", ""), ("abc", "-4"), ("9", "9"), ("0", "70000")])
def test_assigned_ids_when_detection_ids_are_empty_invalid_or_duplicated(savi, det_ids):
    tracker = Tracker(savi, TrackerConfig(), device="cpu")
    dets = [Detection((0, 0, 10, 10), det_id=det_ids[0]), Detection((20, 20, 30, 30), det_id=det_ids[1])]
    started = tracker.step(image(32, 32), dets).started
    assert started == ([9, 1] if det_ids == ("9", "9") else [1, 2])


def test_filters_and_duplicates(savi):
    tracker = Tracker(savi, TrackerConfig(score_threshold=0.5, class_ids=("cup",), max_tracks=2), device="cpu")
    dets = [
        Detection((0, 0, 10, 10), "cup", 0.4),
        Detection((0, 0, 10, 10), "dog", 0.9),
        Detection((0, 0, 10, 10), "cup", 0.6, "4"),
        Detection((1, 0, 10, 10), "cup", 0.7, "5"),  # duplicate
        Detection((20, 20, 30, 30), "cup", 0.8),
        Detection((10, 20, 18, 30), "cup", 0.55),
    ]
    result = tracker.step(image(32, 32), dets)
    assert result.started == [1, 5]  # highest score first; the 0.6 box duplicates the 0.7 one
    assert result.ignored_detections == 1  # the 0.55 box: no free slot with max_tracks=2


def test_add_new_starts_only_non_overlapping_and_counts_ignored(savi):
    tracker = Tracker(
        savi, TrackerConfig(mask_threshold=0.0, min_mask_area=0, new_object_iou=0.3, max_tracks=3), device="cpu"
    )
    img = image(40, 64)
    first = tracker.step(img, [Detection((0, 0, 30, 20))])
    assert first.started == [1]
    boxes = {t.track_id: t.box_xyxy for t in first.tracks}
    assert 1 in boxes  # a detection equal to the track's current mask box overlaps it
    assert tracker.step(img, [Detection(boxes[1])]).started == []
    small = (60, 36, 62, 38)
    assert all(box_iou_xyxy(small, b).max() < 0.3 for b in boxes.values())
    second = tracker.step(img, [Detection(small, "new")])
    assert second.started == [2] and second.tracks_changed and tracker.live_tracks == {1: "", 2: "new"}
    third = tracker.step(img, [Detection((0, 36, 2, 38)), Detection((30, 36, 32, 38)), Detection((45, 36, 47, 38))])
    assert third.started == [3] and third.ignored_detections == 2  # max_tracks=3


def test_reinit_first_ignores_later_detections(savi):
    tracker = Tracker(savi, TrackerConfig(reinit="first"), device="cpu")
    img = image(32, 32)
    assert tracker.step(img, [Detection((0, 0, 10, 10))]).started == [1]
    later = tracker.step(img, [Detection((25, 25, 27, 27))])
    assert later.started == [] and later.ignored_detections == 0 and tracker.live_tracks == {1: ""}


def test_lost_tracks_end_after_exactly_lost_after_frames(savi):
    tracker = Tracker(savi, TrackerConfig(min_mask_area=10**9, lost_after_frames=3, dormant_seconds=0), device="cpu")
    img = image(30, 44)
    results = [tracker.step(img, [Detection((0, 0, 10, 10)), Detection((20, 10, 40, 28), det_id="8")])]
    results += [tracker.step(img) for _ in range(2)]
    assert [r.ended for r in results] == [[], [], [1, 8]]
    assert results[1].live_track_ids == [1, 8] and results[2].live_track_ids == []
    assert results[2].tracks_changed and results[2].tracks == [] and not results[2].label_map.any()
    assert tracker.live_tracks == {}
    idle = tracker.step(img)  # back to no state: nothing runs
    assert idle.timings["model"] == 0.0 and not idle.label_map.any()
    again = tracker.step(img, [Detection((0, 0, 10, 10), det_id="1"), Detection((20, 10, 40, 28))])
    assert again.started == [2, 3]  # ids 1 and 8 are never reused


def test_a_track_ends_alone_its_pixels_clear_and_its_slot_is_reused():
    """With a perfect box painter: a track whose mask is too small is lost (neither listed nor drawn in
    the label map, still live), ends on exactly the right frame, the other track goes on untouched, and a
    later detection takes the freed slot (max_tracks=2, so it could not start while both lived); dormant_seconds
    0 is the v2 rule (the dormant tests are in test_reid.py)."""
    tracker = Tracker(
        BoxPainter(tiny_config()),
        TrackerConfig(mask_source="decoder", min_mask_area=50, lost_after_frames=3, max_tracks=2, dormant_seconds=0),
        device="cpu",
    )
    img = image(32, 32)
    small, large = (0, 0, 4, 4), (10, 10, 30, 30)  # 16 and 400 pixels
    results = [tracker.step(img, [Detection(small, det_id="1"), Detection(large, det_id="2")])]
    results.append(tracker.step(img, [Detection((28, 0, 32, 8), det_id="3")]))  # no free slot
    results.append(tracker.step(img))
    assert [r.ended for r in results] == [[], [], [1]]
    assert results[1].started == [] and results[1].ignored_detections == 1
    for r in results[:2]:
        assert (r.label_map == 1).sum() == 0 and (r.label_map == 2).sum() == 400
        assert r.live_track_ids == [1, 2] and [t.track_id for t in r.tracks] == [2]
    ended = results[2]
    assert (ended.label_map == 1).sum() == 0 and (ended.label_map == 2).sum() == 400
    assert ended.live_track_ids == [2] and ended.tracks_changed and [t.track_id for t in ended.tracks] == [2]
    assert ended.tracks[0].box_xyxy == large and ended.tracks[0].area == 400
    reused = tracker.step(img, [Detection((0, 0, 8, 8), det_id="3")])
    assert reused.started == [3] and reused.ignored_detections == 0 and reused.live_track_ids == [2, 3]
    assert (reused.label_map == 3).sum() == 64 and (reused.label_map == 2).sum() == 400
    assert (reused.label_map == 1).sum() == 0


def restarting(base: type) -> type:
    """``base`` (a model class) recording in ``restarts`` the model slots each `init_slots_for` call restarts."""

    class Restarting(base):
        restarts: list[list[int]] = []

        def init_slots_for(self, slots, cond, which):
            self.restarts.append(torch.nonzero(which[0]).flatten().tolist())
            return super().init_slots_for(slots, cond, which)

    return Restarting


def steps_and_restarts(
    tracker: Tracker, model, step: Callable[[int], TrackResult], frames: int, settling: bool
) -> tuple[list[np.ndarray], list[list[list[int]]]]:
    """Label maps of ``frames`` calls of ``step(t)``, and the slots restarted in each (then in each `settle`
    call after it, when ``settling``, as the node does once a frame is published)."""
    maps, restarts = [], []
    for t in range(frames):
        model.restarts = []
        maps.append(step(t).label_map)
        restarts.append(model.restarts)
        if settling:
            model.restarts = []
            tracker.settle()
            restarts.append(model.restarts)
    return maps, restarts


def test_a_freed_slot_restarts_in_settle_after_its_step_and_otherwise_in_the_next_step_with_the_same_bits():
    """The slot of a track that ends restarts after the step that ended it (its result does not need it): in
    `settle`, which the node calls once the frame is published, or else first thing in the next step; the
    next steps give the same label maps either way."""

    def run(settling: bool) -> tuple[list[np.ndarray], list[list[list[int]]]]:
        model = restarting(BoxPainter)(tiny_config())
        config = TrackerConfig(mask_source="decoder", min_mask_area=50, lost_after_frames=3, dormant_seconds=0)
        tracker = Tracker(model, config, device="cpu")
        img = image(32, 32)
        first = [Detection((0, 0, 4, 4), det_id="1"), Detection((10, 10, 30, 30), det_id="2")]
        return steps_and_restarts(tracker, model, lambda t: tracker.step(img, first if t == 0 else []), 6, settling)

    settled_maps, settled = run(True)
    maps, unsettled = run(False)
    # Track 1 (16 pixels) ends on the third step; its slot (object slot 0, model slot 1) restarts in settle.
    assert settled == [[], [], [], [], [], [[1]], [], [], [], [], [], []]  # (step, settle) per frame
    assert unsettled == [[], [], [], [[1]], [], []]  # else in the fourth step, before the frame's model step
    for a, b in zip(settled_maps, maps):
        assert np.array_equal(a, b)


def test_a_re_detection_re_anchors_a_lost_track_instead_of_starting_a_duplicate():
    """add_new: a track lost (its mask too small) keeps its last box; the object's re-detection moves the
    lost track's slot back onto it (same id) and starts no second track."""
    tracker = Tracker(
        BoxPainter(tiny_config()),
        TrackerConfig(mask_source="decoder", min_mask_area=50, lost_after_frames=5),
        device="cpu",
    )
    img = image(32, 32)
    assert tracker.step(img, [Detection((0, 0, 6, 6), det_id="4")]).started == [4]  # 36 px < 50: lost
    assert tracker._book.tracks[0].lost_frames > 0
    again = tracker.step(img, [Detection((0, 0, 10, 10))])  # the object, seen whole again
    assert again.started == [] and again.live_track_ids == [4]
    assert [(t.track_id, t.box_xyxy) for t in again.tracks] == [(4, (0, 0, 10, 10))]


@pytest.mark.parametrize("reinit", ["add_new", "refresh"])
def test_refresh_re_anchors_a_live_track_from_its_re_detection(reinit):
    """A re-detection overlapping a live track starts nothing; with refresh it moves that track's slot
    to the new box (same id), with add_new the track stays where it was."""
    tracker = Tracker(
        BoxPainter(tiny_config()), TrackerConfig(mask_source="decoder", min_mask_area=0, reinit=reinit), device="cpu"
    )
    img = image(32, 32)
    assert tracker.step(img, [Detection((4, 4, 20, 20), "cup", det_id="7")]).started == [7]
    moved = (6, 5, 22, 21)  # IoU with the tracked box 0.7: a re-detection, not a new object
    result = tracker.step(img, [Detection(moved, "cup")])
    assert result.started == [] and result.live_track_ids == [7]
    expected = moved if reinit == "refresh" else (4, 4, 20, 20)
    assert [t.box_xyxy for t in result.tracks] == [expected]
    other_class = tracker.step(img, [Detection((4, 4, 20, 20), "dog")])  # never re-anchors across classes
    assert [t.box_xyxy for t in other_class.tracks] == [expected]


@pytest.mark.parametrize("moved, re_anchored", [((8, 6, 24, 22), True), ((7, 5, 23, 21), False)])
def test_a_detection_re_anchors_a_track_whose_mask_has_left_half_its_box(moved, re_anchored):
    """add_new: a matched detection overlapping its track's mask box at IoU < 0.5 (here 0.49; 0.62 is kept)
    re-anchors the slot, same id: the slot has drifted off its object or lost part of it."""
    tracker = Tracker(BoxPainter(tiny_config()), TrackerConfig(mask_source="decoder", min_mask_area=0), device="cpu")
    img = image(32, 32)
    tracker.step(img, [Detection((4, 4, 20, 20), det_id="7")])
    result = tracker.step(img, [Detection(moved)])
    assert result.started == [] and result.live_track_ids == [7]
    assert [t.box_xyxy for t in result.tracks] == [moved if re_anchored else (4, 4, 20, 20)]


def test_reset_ends_everything_and_restarts_ids(savi):
    tracker = Tracker(savi, TrackerConfig(), device="cpu")
    img = image(32, 48)
    tracker.step(img, [Detection((0, 0, 10, 10)), Detection((20, 20, 30, 30), det_id="4")])
    assert tracker.reset() == [1, 4]
    assert tracker.live_tracks == {}
    idle = tracker.step(img)
    assert idle.timings["model"] == 0.0 and not idle.label_map.any() and idle.live_track_ids == []
    assert tracker.step(img, [Detection((0, 0, 10, 10))]).started == [1]


@pytest.mark.parametrize("mask_source, precision", [("attention", "fp32"), ("decoder", "bf16")])
def test_attention_masks_and_bf16(savi, mask_source, precision):
    tracker = Tracker(
        savi, TrackerConfig(mask_source=mask_source, precision=precision, mask_threshold=0.0), device="cpu"
    )
    result = tracker.step(image(21, 70), [Detection((0, 0, 30, 21), "x")])
    assert result.label_map.shape == (21, 70) and result.started == [1]
    check_tracks_match_label_map(result)


@pytest.mark.parametrize("kind", ["com", "segmentation"])
def test_other_conditional_initializers(kind):
    torch.manual_seed(0)
    tracker = Tracker(SAVi(tiny_config(kind=kind)), TrackerConfig(mask_threshold=0.0), device="cpu")
    result = tracker.step(image(32, 40), [Detection((0, 0, 16, 16)), Detection((20, 10, 40, 32))])
    assert result.started == [1, 2]
    check_tracks_match_label_map(result)


def test_bad_inputs_are_refused(savi):
    tracker = Tracker(savi, TrackerConfig(), device="cpu")
    with pytest.raises(ValueError, match="uint8 numpy array"):
        tracker.step(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 numpy array"):
        tracker.step(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="4 finite numbers"):
        tracker.step(image(10, 10), [Detection((0, 0, float("nan"), 4))])


def test_read_only_and_strided_images_give_the_same_result(savi):
    bgr = image(30, 40)
    view = bgr[:, :, ::-1]  # a strided RGB view, as when converting bgr8 without copying
    view.flags.writeable = False
    dets = [Detection((0, 0, 20, 15)), Detection((22, 10, 40, 30))]
    config = TrackerConfig(mask_threshold=0.0)
    expected = Tracker(savi, config).step(np.ascontiguousarray(view), dets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "non-writable array" warning
        got = Tracker(savi, config).step(view, dets)
    np.testing.assert_array_equal(got.label_map, expected.label_map)
    assert got.tracks == expected.tracks


@pytest.mark.parametrize("size", [(48, 64), (240, 320), (480, 640)])
def test_the_opencv_route_gives_torch_s_labels_and_winning_probabilities(savi, size):
    """On the CPU the camera-size labels come from OpenCV (plane by plane resize, running maximum,
    cv2.LUT); they are the torch route's (the reference, used on CUDA): ids, stats rows and winning
    probabilities, with the threshold applied alike."""
    tracker = Tracker(savi, TrackerConfig(mask_threshold=0.3), device="cpu")
    tracker.step(
        image(*size),
        [
            Detection((0, 0, size[1] // 2, size[0] // 2), det_id="7"),
            Detection((size[1] // 2, size[0] // 3, size[1], size[0]), det_id="3"),
        ],
    )
    probs = torch.softmax(torch.randn(savi.config.num_slots, 32, 32, generator=torch.Generator().manual_seed(1)) * 3, 0)
    best, labels, rows = opencv_camera_labels(
        probs.numpy(),
        *size,
        0.3,
        tracker._labels.buffers,
        savi.config.num_slots,
        tracker._labels.id_lut,
        tracker._labels.row_lut,
    )
    ref_best, slot = resize_probabilities(probs, size).max(dim=0)
    slot[ref_best < 0.3] = savi.config.num_slots
    labels, rows = torch.from_numpy(labels), torch.from_numpy(rows)
    assert (labels == tracker._labels.slot_to_id[slot]).float().mean() >= 0.9999
    assert (rows.int() == tracker._labels.slot_to_row[slot]).float().mean() >= 0.9999
    assert set(labels.int().unique().tolist()) == {0, 3, 7} and labels.dtype == torch.uint16
    torch.testing.assert_close(torch.from_numpy(best), ref_best, atol=1e-5, rtol=0)


def test_opencv_stats_are_the_counting_stats_bit_for_bit():
    """The OpenCV route's per-track stats (one comparison, count and rectangle per track, scores summed in
    the rectangle) equal `label_stats`' counting over the whole image, scores to the last bit; a track with
    no pixel gets zeros."""
    rng = np.random.default_rng(4)
    height, width, t = 120, 170, 4
    rows = np.full((height, width), t, np.uint8)
    rows[10:60, 20:90] = 0
    rows[40:110, 70:160] = 1
    rows[rng.random((height, width)) < 0.05] = 3  # scattered pixels: a box spanning the image
    rows[5, 7] = rows[100, 160] = 3
    best = rng.random((height, width), dtype=np.float32)
    ys = torch.arange(height, dtype=torch.int32)
    xs = torch.arange(width, dtype=torch.int32)
    expected = label_stats(torch.from_numpy(best), torch.from_numpy(rows).int(), t, ys, xs)
    got = opencv_label_stats(best, rows, t, np.empty_like(rows))
    assert got.dtype == expected.dtype == torch.float64 and torch.equal(got, expected)
    assert got[2].eq(0).all() and got[3, 0] > 100


def test_stats_agree_with_the_label_map_at_camera_size(savi):
    """Areas, boxes and scores come from counting, not per-track masks: they still describe exactly the
    pixels the label map gives each track."""
    tracker = Tracker(savi, TrackerConfig(min_mask_area=0, mask_threshold=0.0), device="cpu")
    img = image(240, 320, seed=3)
    tracker.step(img, [Detection((10, 10, 120, 100), det_id="2"), Detection((150, 60, 300, 200), det_id="9")])
    result = tracker.step(img)
    check_tracks_match_label_map(result)
    assert {t.track_id for t in result.tracks} <= {2, 9} and result.tracks


def test_remove_track_ends_only_that_track_frees_its_slot_and_never_reuses_its_id():
    tracker = Tracker(
        BoxPainter(tiny_config()), TrackerConfig(mask_source="decoder", min_mask_area=1, max_tracks=2), device="cpu"
    )
    img = image(32, 32)
    tracker.step(img, [Detection((0, 0, 8, 8), det_id="1"), Detection((10, 10, 30, 30), det_id="2")])
    assert tracker.remove_track(1) and not tracker.remove_track(1) and not tracker.remove_track(7)
    after = tracker.step(img)
    assert after.live_track_ids == [2] and (after.label_map == 1).sum() == 0 and (after.label_map == 2).sum() == 400
    again = tracker.step(img, [Detection((0, 0, 8, 8), det_id="1")])  # the freed slot, but not the id
    assert again.started == [3] and again.live_track_ids == [2, 3]
    assert tracker.remove_track(2) and tracker.remove_track(3) and tracker.step(img).live_track_ids == []


def box(*xyxy, class_id="", track_id=""):
    return Prompt(box_xyxy=xyxy, class_id=class_id, track_id=track_id)


def test_add_objects_reserves_ids_now_and_starts_them_on_the_next_step_even_over_a_live_track():
    tracker = Tracker(
        BoxPainter(tiny_config()), TrackerConfig(mask_source="decoder", min_mask_area=1, max_tracks=3), device="cpu"
    )
    img = image(32, 32)
    assert tracker.prompt_kinds == ("boxes", "masks")
    assert tracker.add_objects([box(0, 0, 8, 8, class_id="cup", track_id="7")]) == [7]  # nothing tracked: bootstraps
    first = tracker.step(img)
    assert first.started == [7] and (first.label_map == 7).sum() == 64
    # A prompt over a live track is a person's request, not a re-detection: it starts.
    assert tracker.add_objects([box(2, 2, 10, 10), box(16, 16, 30, 30, class_id="ball")]) == [1, 2]
    second = tracker.step(img)
    assert second.started == [1, 2] and second.live_track_ids == [1, 2, 7]
    with pytest.raises(ValueError, match="1 object\\(s\\) asked for, 0 free slot"):
        tracker.add_objects([box(20, 0, 30, 8)])
    tracker.remove_track(1)
    for bad in (box(5, 5, 5, 9), box(0, 0, float("nan"), 4)):
        with pytest.raises(ValueError, match="finite numbers"):
            tracker.add_objects([bad])
    assert tracker.step(img).started == [] and set(tracker.live_tracks) == {2, 7}  # refused: nothing started


class ConditionRecorder(BoxPainter):
    """BoxPainter that keeps the conditioning of every (re-)initialisation."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.seen: list[Conditioning] = []

    def init_slots(self, cond: Conditioning) -> torch.Tensor:
        self.seen.append(cond)
        return super().init_slots(cond)


def test_a_mask_starts_as_its_tight_box_and_a_point_as_a_zero_size_box_for_a_box_model_that_takes_points():
    model = ConditionRecorder(tiny_config(points=True))
    tracker = Tracker(model, TrackerConfig(mask_source="decoder", min_mask_area=1), device="cpu")
    assert tracker.prompt_kinds == ("boxes", "points", "masks")
    mask = np.zeros((24, 40), bool)
    mask[4:12, 2:10] = True
    mask[11, 20] = True  # the tight box reaches it
    assert tracker.add_objects([Prompt(mask=mask, track_id="5"), Prompt(point_xy=(30.0, 6.0))]) == [5, 1]
    result = tracker.step(image(24, 40))
    assert result.started == [5, 1]
    cond = model.seen[-1]
    torch.testing.assert_close(
        cond.boxes[0, :2], torch.tensor([[4 / 24, 2 / 40, 12 / 24, 21 / 40], [6 / 24, 30 / 40, 6 / 24, 30 / 40]])
    )
    assert (result.label_map == 5).sum() == 8 * 19
    assert tracker.track_at(3, 5) == 5 and tracker.track_at(30, 20) == 0 and tracker.track_at(-1, 5) == 0
    # The point's zero-size box paints nothing in BoxPainter: that track is lost, not on any pixel.
    assert tracker.track_at(30, 6) == 0


def test_prompts_the_model_cannot_take_and_bad_prompts_are_refused_whole():
    tracker = Tracker(BoxPainter(tiny_config()), TrackerConfig(mask_source="decoder"), device="cpu")
    with pytest.raises(ValueError, match="takes boxes and masks, not points"):
        tracker.add_objects([box(0, 0, 4, 4), Prompt(point_xy=(3.0, 3.0))])
    points = Tracker(BoxPainter(tiny_config(points=True)), TrackerConfig(mask_source="decoder"), device="cpu")
    for bad, match in (
        (Prompt(point_xy=(float("nan"), 2.0)), "2 finite numbers"),
        (Prompt(mask=np.zeros((8, 8), bool)), "at least one pixel"),
        (Prompt(mask=np.ones(8, bool)), "2-D array"),
        (Prompt(box_xyxy=(0, 0, 4, 4), point_xy=(1.0, 1.0)), "exactly one"),
    ):
        with pytest.raises(ValueError, match=match):
            points.add_objects([box(0, 0, 4, 4), bad])
    assert points.step(image(16, 16)).started == []  # nothing reserved, nothing started


def test_a_prompt_off_the_next_image_starts_nothing_and_is_counted():
    tracker = Tracker(BoxPainter(tiny_config(points=True)), TrackerConfig(mask_source="decoder"), device="cpu")
    tracker.add_objects([Prompt(point_xy=(50.0, 3.0)), Prompt(mask=np.ones((8, 9), bool)), box(1, 1, 5, 5)])
    result = tracker.step(image(16, 16))
    assert result.started == [3] and result.ignored_detections == 2


@pytest.mark.parametrize("kind", ["com", "segmentation"])
def test_centre_of_mass_and_segmentation_models_are_conditioned_on_the_mask_itself(kind):
    model = ConditionRecorder(tiny_config(kind=kind))
    model.init_slots = lambda cond: (model.seen.append(cond), torch.zeros(1, 5, 4))[1]  # slots paint nothing
    tracker = Tracker(model, TrackerConfig(mask_source="decoder"), device="cpu")
    mask = np.zeros((64, 64), bool)
    mask[0:8, 0:8] = True
    mask[56:64, 56:64] = True  # two blobs: the centre of mass lies between them, in neither
    tracker.add_objects([Prompt(mask=mask)])
    assert tracker.step(image(64, 64)).started == [1]
    cond = model.seen[-1]
    if kind == "com":
        torch.testing.assert_close(cond.centers[0, 0], torch.tensor([0.5, 0.5]))
        assert tracker.prompt_kinds == ("boxes", "points", "masks")
    else:
        assert torch.equal(cond.segmentation[0] == 1, torch.from_numpy(mask[::2, ::2]))  # at 32x32
        assert tracker.prompt_kinds == ("boxes", "masks")


class Spreader(BoxPainter):
    """BoxPainter whose first object slot takes the whole frame on its 3rd and 4th steps, as a slot that
    has taken the background does; its state then stays there until re-initialised."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.calls = 0

    def step(
        self,
        frame: torch.Tensor,
        slots: torch.Tensor,
        decode: str = "decoder",
        attention_bias: torch.Tensor | None = None,
    ) -> StepOutput:
        self.calls += 1
        if self.calls in (3, 4):
            slots = slots.clone()
            slots[:, 1] = torch.tensor([0.0, 0.0, 1.0, 1.0])
        return super().step(frame, slots, decode)


@pytest.mark.parametrize("growth", [4.0, 0.0])
def test_a_mask_that_outgrows_its_anchor_box_is_lost_and_a_detection_re_anchors_it(growth):
    tracker = Tracker(
        Spreader(tiny_config()),
        TrackerConfig(mask_source="decoder", min_mask_area=1, max_area_growth=growth),
        device="cpu",
    )
    img = image(32, 32)
    detection = [Detection((0, 0, 8, 8), det_id="5")]
    assert [t.area for t in tracker.step(img, detection).tracks] == [64]
    assert [t.area for t in tracker.step(img).tracks] == [64]
    spread = tracker.step(img)  # the slot covers all 1024 pixels: 16x its anchor
    if growth:
        assert spread.tracks == [] and not (spread.label_map == 5).any() and spread.live_track_ids == [5]
        assert tracker.step(img).tracks == []  # still overgrown: lost again, its last good box kept
        back = tracker.step(img, detection)  # re-detected at its last box: re-anchored, same id
        assert [(t.track_id, t.area) for t in back.tracks] == [(5, 64)] and back.started == []
    else:
        assert [t.area for t in spread.tracks] == [1024]
    with pytest.raises(ValueError, match="max_area_growth: must be 0"):
        TrackerConfig(max_area_growth=0.5)


class Interleaver(BoxPainter):
    """BoxPainter whose object slots win alternate pixels (a checkerboard) where their boxes overlap, as
    two slots that split one object do."""

    def step(
        self,
        frame: torch.Tensor,
        slots: torch.Tensor,
        decode: str = "decoder",
        attention_bias: torch.Tensor | None = None,
    ) -> StepOutput:
        out = super().step(frame, slots, decode)
        h, w = out.masks.shape[-2:]
        parity = (torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)) % 2
        slot = torch.arange(out.masks.shape[1]).view(-1, 1, 1)
        masks = out.masks * (1 + 0.1 * ((parity + slot) % 2))
        masks = masks / masks.sum(dim=1, keepdim=True)
        return StepOutput(slots=slots, predicted=slots, attention=masks, masks=masks)


def test_two_tracks_splitting_one_detected_object_become_one_and_a_missed_object_keeps_its_track():
    tracker = Tracker(Interleaver(tiny_config()), TrackerConfig(mask_source="decoder", min_mask_area=1), device="cpu")
    img = image(32, 32)
    tracker.step(img, [Detection((4, 4, 20, 20), det_id="7")])
    tracker.add_objects([box(4, 4, 20, 20), box(24, 24, 30, 30)])  # a second track on the same object
    split = tracker.step(img)
    assert split.started == [1, 2] and sorted(t.area for t in split.tracks) == [36, 128, 128]
    # The detector sees the object once (and misses the small one): the track left without a detection
    # ends and its slot restarts unconditioned; the kept track gets the whole object back.
    merged = tracker.step(img, [Detection((4, 4, 20, 20))])
    assert merged.started == [] and merged.ended == [1] and merged.live_track_ids == [2, 7]
    assert [(t.track_id, t.area) for t in merged.tracks] == [(7, 256), (2, 36)]
    check_tracks_match_label_map(merged)


def test_a_slot_whose_track_ends_or_is_removed_restarts_and_no_longer_takes_pixels():
    """An ended track's slot would otherwise keep following its object and take pixels (unlabelled) from
    the track started on it later. With the checkerboard model two slots on one box share its pixels."""
    tracker = Tracker(
        Interleaver(tiny_config()),
        TrackerConfig(mask_source="decoder", min_mask_area=10, lost_after_frames=2, dormant_seconds=0),
        device="cpu",
    )
    img = image(32, 32)
    assert [t.area for t in tracker.step(img, [Detection((8, 8, 12, 12), det_id="1")]).tracks] == [16]
    tracker.add_objects([box(4, 4, 20, 20)])  # over track 1: it keeps ~8 of its 16 pixels, so it is lost
    shared = tracker.step(img)
    assert shared.started == [2] and [t.track_id for t in shared.tracks] == [2] and shared.tracks[0].area == 248
    ended = tracker.step(img)
    assert ended.ended == [1] and [(t.track_id, t.area) for t in ended.tracks] == [(2, 248)]
    assert [(t.track_id, t.area) for t in tracker.step(img).tracks] == [(2, 256)]  # slot 0 took nothing more
    tracker.add_objects([box(4, 4, 20, 20)])
    assert sorted(t.area for t in tracker.step(img).tracks) == [128, 128]
    assert tracker.remove_track(2)
    assert [(t.track_id, t.area) for t in tracker.step(img).tracks] == [(3, 256)]


class BiasRecorder(BoxPainter):
    """BoxPainter that keeps the attention bias (the spatial gate) of each step; with ``drift`` its object
    slots move that many pixels right per step (on a 32-pixel-wide model frame), as a moving object's do."""

    def __init__(self, cfg: ModelConfig, drift: float = 0.0) -> None:
        super().__init__(cfg)
        self.biases: list[torch.Tensor | None] = []
        self.drift = drift / cfg.resolution[1]

    def step(
        self,
        frame: torch.Tensor,
        slots: torch.Tensor,
        decode: str = "decoder",
        attention_bias: torch.Tensor | None = None,
    ) -> StepOutput:
        self.biases.append(attention_bias)
        out = super().step(frame, slots, decode)
        moved = slots.clone()
        moved[:, 1:, 1::2] += self.drift
        return StepOutput(slots=slots, predicted=moved, attention=out.attention, masks=out.masks)


def gate_extent(bias: torch.Tensor, slot: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), exclusive ends, of the cells a slot may attend to; the rest must be masked."""
    inside = bias[0, slot] == 0
    assert (bias[0, slot][~inside] < -1e3).all()
    rows, cols = np.nonzero(inside.numpy())
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_the_gate_is_the_track_s_box_grown_by_the_margin_and_widens_while_the_track_is_lost():
    model = BiasRecorder(tiny_config())  # features at 32x32: one cell per pixel of a 32x32 image
    tracker = Tracker(
        model,
        TrackerConfig(mask_source="decoder", gate_margin=0.25, min_mask_area=10**6, lost_after_frames=5),
        device="cpu",
    )
    img = image(32, 32)
    tracker.step(img, [Detection((8, 8, 16, 16))])
    assert gate_extent(model.biases[0], 1) == (6, 18, 6, 18)  # an 8-pixel box, 0.25 x 8 on every side
    assert (model.biases[0][0, 0] == 0).all() and (model.biases[0][0, 2:] == 0).all()  # background, free slots
    tracker.step(img)  # lost (its mask is under min_mask_area): the gate widens by another margin
    assert gate_extent(model.biases[1], 1) == (4, 20, 4, 20)
    tracker.step(img)
    assert gate_extent(model.biases[2], 1) == (2, 22, 2, 22)


def test_the_gate_leads_a_moving_track_by_its_last_shift_and_is_off_at_margin_0():
    model = BiasRecorder(tiny_config(), drift=1.0)
    tracker = Tracker(model, TrackerConfig(mask_source="decoder", gate_margin=0.25, min_mask_area=0), device="cpu")
    img = image(32, 32)
    tracker.step(img, [Detection((8, 8, 16, 16))])
    assert [t.box_xyxy for t in tracker.step(img).tracks] == [(9, 8, 17, 16)]  # moved 1 px right
    tracker.step(img)  # expected at x 10..18: the gate is that box grown by 2 pixels
    assert gate_extent(model.biases[2], 1) == (6, 18, 8, 20)
    off = BiasRecorder(tiny_config())
    Tracker(off, TrackerConfig(mask_source="decoder", gate_margin=0.0), device="cpu").step(
        img, [Detection((8, 8, 16, 16))]
    )
    assert off.biases == [None]
    with pytest.raises(ValueError, match="gate_margin: must be a number >= 0"):
        TrackerConfig(gate_margin=-0.1)


def recorded_steps(savi: SAVi, monkeypatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The slots each `step` of ``savi`` is given and those it predicts, recorded from now on."""
    given: list[torch.Tensor] = []
    predicted: list[torch.Tensor] = []
    step = savi.step

    def recording_step(frame, slots, *args, **kwargs):
        given.append(slots.clone())
        out = step(frame, slots, *args, **kwargs)
        predicted.append(out.predicted.clone())
        return out

    monkeypatch.setattr(savi, "step", recording_step)
    return given, predicted


def test_re_anchoring_a_track_restarts_its_slot_alone(savi, monkeypatch):
    """A box that only re-anchors a track restarts that slot: the background slot, the untracked slots and
    the other track's slot carry on from their predictions (no new background is searched for)."""
    given, predicted = recorded_steps(savi, monkeypatch)
    tracker = Tracker(savi, TrackerConfig(min_mask_area=0, gate_margin=0.0), device="cpu")
    img = image(32, 32)
    boxes = [Detection((2, 2, 12, 12)), Detection((18, 18, 30, 30))]
    tracker.step(img, boxes)
    for _ in range(3):
        tracker.step(img)
    assert torch.equal(given[-1], predicted[-2])  # without a re-anchor every slot carries on
    tracker._book.tracks[1].lost_frames = 1  # the second track is lost: its detection re-anchors it
    tracker.step(img, boxes)
    assert tracker.live_tracks == {1: "", 2: ""}
    kept = [0, 1, 3, 4]  # the background, the first track's slot, the untracked slot
    assert torch.equal(given[-1][0, kept], predicted[-2][0, kept])
    assert not torch.equal(given[-1][0, 2], predicted[-2][0, 2])


def test_re_anchoring_a_track_restarts_the_detected_neighbour_whose_detection_overlaps_its_own(savi, monkeypatch):
    """A slot restarted from its detection takes pixels from a neighbour's slot carried on: a detected track
    whose detection overlaps the re-anchored one's restarts from its own detection too (bench dev seed 2D
    7001: the re-anchored slot took the whole of the object beside it); a detected track apart carries on."""
    given, predicted = recorded_steps(savi, monkeypatch)
    config = TrackerConfig(min_mask_area=0, gate_margin=0.0, max_tracks=3)
    tracker = Tracker(savi, config, device="cpu")
    img = image(32, 32)
    boxes = [Detection((2, 2, 12, 12)), Detection((10, 2, 20, 12)), Detection((18, 20, 30, 30))]
    tracker.step(img, boxes)
    for _ in range(3):
        tracker.step(img)
    tracker._book.tracks[1].lost_frames = 1  # the second track is lost: its detection re-anchors it
    tracker.step(img, boxes)
    assert tracker.live_tracks == {1: "", 2: "", 3: ""}
    for slot in (0, 3, 4):  # the background, the track apart, the untracked slot
        assert torch.equal(given[-1][0, slot], predicted[-2][0, slot])
    for slot in (1, 2):  # the re-anchored track and its neighbour
        assert not torch.equal(given[-1][0, slot], predicted[-2][0, slot])


def test_a_new_track_restarts_its_slot_and_the_detected_tracks_and_leaves_the_background_alone(savi, monkeypatch):
    """A box that starts a track restarts its slot, and the detected tracks' slots from their boxes with it;
    the background slot and the untracked slot carry on from their predictions (restarting them took the
    tracked objects' pixels)."""
    given, predicted = recorded_steps(savi, monkeypatch)
    config = TrackerConfig(min_mask_area=0, gate_margin=0.0, max_tracks=3)
    tracker = Tracker(savi, config, device="cpu")
    img = image(32, 32)
    boxes = [Detection((2, 2, 12, 12)), Detection((18, 18, 30, 30))]
    tracker.step(img, boxes)
    for _ in range(3):
        tracker.step(img)
    result = tracker.step(img, [*boxes, Detection((2, 18, 12, 30))])
    assert result.started == [3]
    for slot in (0, 4):  # the background slot and the untracked slot
        assert torch.equal(given[-1][0, slot], predicted[-2][0, slot])
    for slot in (1, 2, 3):  # the detected tracks' slots and the new one restart from their boxes
        assert not torch.equal(given[-1][0, slot], predicted[-2][0, slot])


def test_a_detection_re_anchors_a_track_whose_slot_is_fading():
    """add_new: a matched detection re-anchors a track whose mean probability fell under 0.8 (a slot losing
    its object to others), even where its box still matches; a confident track is left alone."""

    class Fader(BoxPainter):
        def step(self, frame, slots, decode="decoder", attention_bias=None):
            out = super().step(frame, slots, decode)
            masks = out.masks.clone()
            masks[:, 1] *= self.level  # the first object slot's probability, the rest to the background
            masks[:, 0] = 1 - masks[:, 1:].sum(dim=1)
            return StepOutput(slots=slots, predicted=slots, attention=masks, masks=masks)

    for level, re_anchored in ((0.7, True), (0.9, False)):
        model = Fader(tiny_config())
        model.level = level
        tracker = Tracker(
            model,
            TrackerConfig(mask_source="decoder", min_mask_area=0, mask_threshold=0.5, gate_margin=0.0),
            device="cpu",
        )
        img = image(32, 32)
        tracker.step(img, [Detection((4, 4, 20, 20))])
        moved = (5, 4, 21, 20)  # IoU 0.88 with the tracked box
        result = tracker.step(img, [Detection(moved)])
        assert result.started == [] and result.live_track_ids == [1]
        assert [t.box_xyxy for t in result.tracks] == [moved if re_anchored else (4, 4, 20, 20)]


@pytest.mark.parametrize("threads, dtype", [(1, torch.float32), (2, torch.float32), (1, torch.bfloat16)])
def test_guided_masks_from_the_feature_grid_equal_those_from_every_upsampled_slot(threads, dtype):
    """The Tracker hands guided masks the attention at the feature grid and only the live slots' planes are
    upsampled: the masks are those of upsampling every slot first, bit for bit, for any number of live
    slots (torch picks another resampling kernel for 3 planes on one thread), at the shipped sizes and in
    bf16 (the attention is resampled in its own dtype, as the model did)."""
    from savi_core.model.savi import upsample_attention
    from savi_core.tracking.labels import guided_masks

    generator = torch.Generator().manual_seed(2)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for k, grid, size in ((17, (32, 40), (128, 160)), (3, (8, 8), (32, 32))):
            attention = torch.softmax(torch.randn(1, k, *grid, generator=generator) * 3, dim=1).to(dtype)
            frame = torch.rand(3, *size, generator=generator)
            for n in range(1, k + 1):
                slots = torch.randperm(k, generator=generator)[:n].tolist()
                expected = guided_masks(upsample_attention(attention, size)[0], frame, slots)
                got = guided_masks(attention[0], frame, slots, grid=True)
                assert got.shape == (k, *size) and torch.equal(got, expected), (k, slots)
    finally:
        torch.set_num_threads(before)
