"""Dormant tracks and re-identification (docs/INTERFACE.md, dormancy and revival; `savi_core.tracking.reid`).

The scenes are painted: coloured squares on grey. ``Seer`` is the test module's ``BoxPainter`` whose slot
paints its box only where the frame is not background, so a hidden object's track is lost for real and
a slot never finds an object outside its box. With ``features`` it is a model that computes per-cell
unit features (the colour, normalised), which the Tracker pools into looks instead of colour histograms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from savi_core.model.config import tiny_config
from savi_core.tracking.reid import VIEW_EVERY, Candidate, Dormancy, Looks
from savi_core.tracking.tracker import Detection, Prompt, Tracker, TrackResult
from savi_core.tracking.tracker_config import TrackerConfig
from test.scripts import load_script

_fakes = load_script(Path(__file__).with_name("test_tracker.py"))
BoxPainter, coverage = _fakes.BoxPainter, _fakes.coverage

GREY = (128, 128, 128)
RED, BLUE, GREEN = (220, 30, 30), (30, 40, 220), (40, 200, 40)
SIZE = 32  # images at the model resolution
STEP_S = 0.25  # stamp step, exact in binary


class Seer(BoxPainter):
    """A perfect segmenter of the non-grey pixels inside each slot's box; see the module docstring."""

    def __init__(self, features: bool = False) -> None:
        super().__init__(tiny_config())
        self.needs_features = features

    def encode(self, frame: torch.Tensor) -> torch.Tensor:
        cells = frame[0].permute(1, 2, 0) + 0.05
        return (cells / cells.norm(dim=-1, keepdim=True)).unsqueeze(0)

    def step(self, frame, slots, decode="decoder", attention_bias=None, features=None):
        foreground = ((frame - 128 / 255).abs().amax(dim=1, keepdim=True) > 0.1).float()
        objects = coverage(slots[:, 1:], self.config.decoder.output_size) * foreground
        background = (1 - objects.sum(dim=1, keepdim=True)).clamp(min=0)
        masks = torch.cat([background, objects], dim=1)
        masks = masks / masks.sum(dim=1, keepdim=True)
        return type(super().step(frame, slots))(slots=slots, predicted=slots, attention=masks, masks=masks)


def scene(*squares: tuple[tuple[int, int, int, int], tuple[int, int, int]]) -> np.ndarray:
    img = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    for (x0, y0, x1, y1), colour in squares:
        img[y0:y1, x0:x1] = colour
    return img


RED_AT, RED_BACK, GREEN_AT = (4, 4, 12, 12), (18, 18, 26, 26), (20, 2, 28, 10)
BLUE_AT = (2, 20, 10, 28)


@pytest.fixture(params=[False, True], ids=["colour", "features"])
def tracker(request) -> Tracker:
    config = TrackerConfig(mask_source="decoder", min_mask_area=10, lost_after_frames=3, dormant_seconds=2.0)
    return Tracker(Seer(features=request.param), config, device="cpu")


class Clock:
    """Stamps STEP_S apart, starting at 0."""

    def __init__(self) -> None:
        self.now = -STEP_S

    def __call__(self) -> float:
        self.now += STEP_S
        return self.now


def hide_red(tracker: Tracker, clock: Clock) -> None:
    """Red (track 1) and green (track 2) start; red shows for 6 frames, then hides until it is dormant."""
    first = tracker.step(
        scene((RED_AT, RED), (GREEN_AT, GREEN)), [Detection(RED_AT), Detection(GREEN_AT)], stamp=clock()
    )
    assert first.started == [1, 2]
    for _ in range(5):
        assert [t.track_id for t in tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), stamp=clock()).tracks] == [
            1,
            2,
        ]
    results = [tracker.step(scene((GREEN_AT, GREEN)), stamp=clock()) for _ in range(3)]
    assert [r.slept for r in results] == [[], [], [1]] and [r.ended for r in results] == [[], [], []]
    assert results[1].live_track_ids == [1, 2] and results[2].live_track_ids == [2]
    assert results[2].dormant_track_ids == [1] and results[2].tracks_changed
    assert tracker.dormant_tracks == {1: ""} and tracker.live_tracks == {2: ""}


def test_a_hidden_object_comes_back_under_its_id_after_a_detection(tracker):
    clock = Clock()
    hide_red(tracker, clock)
    back = scene((RED_BACK, RED), (GREEN_AT, GREEN))
    for _ in range(3):  # red is back elsewhere: no slot takes it on its own, its id stays dormant
        between = tracker.step(back, stamp=clock())
        assert not (between.label_map == 1).any() and between.dormant_track_ids == [1]
        assert [t.track_id for t in between.tracks] == [2]
    revived = tracker.step(back, [Detection(RED_BACK)], stamp=clock())
    assert revived.revived == [1] and revived.started == [] and revived.tracks_changed
    assert revived.dormant_track_ids == [] and revived.live_track_ids == [1, 2]
    assert [(t.track_id, t.box_xyxy) for t in revived.tracks] == [(1, RED_BACK), (2, GREEN_AT)]
    assert (revived.label_map == 1).sum() == 64
    # The id the revived track held for a moment was never shown: the next new object gets it.
    blue = tracker.step(
        scene((RED_BACK, RED), (GREEN_AT, GREEN), ((2, 20, 10, 28), BLUE)), [Detection((2, 20, 10, 28))], stamp=clock()
    )
    assert blue.started == [3] and blue.revived == []


def test_a_different_looking_object_where_a_dormant_one_vanished_gets_a_new_id(tracker):
    clock = Clock()
    hide_red(tracker, clock)
    blue = tracker.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert blue.started == [3] and blue.revived == [] and blue.dormant_track_ids == [1]
    assert (blue.label_map == 3).sum() == 64 and not (blue.label_map == 1).any()


def test_a_dormant_track_expires_and_ends_on_exactly_its_frame(tracker):
    clock = Clock()
    hide_red(tracker, clock)
    slept_at = clock.now
    while clock.now + STEP_S < slept_at + 2.0:
        assert tracker.step(scene((GREEN_AT, GREEN)), stamp=clock()).dormant_track_ids == [1]
    expired = tracker.step(scene((GREEN_AT, GREEN)), stamp=clock())
    assert clock.now == slept_at + 2.0
    assert expired.ended == [1] and expired.expired == [1] and expired.tracks_changed
    assert expired.dormant_track_ids == [] and tracker.dormant_tracks == {}
    again = tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert again.started == [3] and again.revived == []  # the same look, but its id has ended


def test_a_dormant_track_expires_with_no_live_track_left(tracker):
    clock = Clock()
    assert tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock()).started == [1]
    results = [tracker.step(scene(), stamp=clock()) for _ in range(3)]
    assert results[-1].slept == [1] and results[-1].live_track_ids == []
    slept_at = clock.now
    idle = [tracker.step(scene(), stamp=clock()) for _ in range(8)]
    assert clock.now == slept_at + 2.0
    assert [r.ended for r in idle] == [[]] * 7 + [[1]] and idle[-1].timings["model"] == 0.0


def test_reset_and_remove_track_clear_dormant_tracks(tracker):
    clock = Clock()
    hide_red(tracker, clock)
    assert tracker.reset() == [1, 2] and tracker.dormant_tracks == {}
    hide_red(tracker, clock)  # ids restart at 1 after reset
    assert tracker.remove_track(1) and tracker.dormant_tracks == {} and not tracker.remove_track(1)
    back = tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert back.started == [3] and back.revived == []


def test_a_detection_or_prompt_naming_a_dormant_id_revives_it_whatever_it_looks_like(tracker):
    clock = Clock()
    hide_red(tracker, clock)
    named = tracker.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_AT, det_id="1")], stamp=clock())
    assert named.revived == [1] and named.started == [] and (named.label_map == 1).sum() == 64
    tracker.reset()
    hide_red(tracker, clock)
    assert tracker.add_objects([Prompt(box_xyxy=RED_BACK, track_id="1")]) == [1]
    prompted = tracker.step(scene((RED_BACK, BLUE), (GREEN_AT, GREEN)), stamp=clock())
    assert prompted.revived == [1] and prompted.started == [] and prompted.dormant_track_ids == []


def test_an_id_less_prompt_revives_by_appearance(tracker):
    clock = Clock()
    hide_red(tracker, clock)
    reserved = tracker.add_objects([Prompt(box_xyxy=RED_BACK)])
    assert reserved == [3]
    prompted = tracker.step(scene((RED_BACK, RED), (GREEN_AT, GREEN)), stamp=clock())
    assert prompted.revived == [1] and prompted.started == [] and (prompted.label_map == 1).sum() == 64
    # The prompt's id was given out by add_objects: never used for another object.
    blue = tracker.step(
        scene((RED_BACK, RED), (GREEN_AT, GREEN), ((2, 20, 10, 28), BLUE)), [Detection((2, 20, 10, 28))], stamp=clock()
    )
    assert blue.started == [4]


def test_dormant_seconds_0_ends_a_lost_track_and_takes_no_looks():
    tracker = Tracker(
        Seer(),
        TrackerConfig(mask_source="decoder", min_mask_area=10, lost_after_frames=3, dormant_seconds=0),
        device="cpu",
    )
    clock = Clock()
    tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), [Detection(RED_AT), Detection(GREEN_AT)], stamp=clock())
    results = [tracker.step(scene((GREEN_AT, GREEN)), stamp=clock()) for _ in range(3)]
    assert results[-1].ended == [1] and results[-1].slept == [] and tracker.dormant_tracks == {}
    assert tracker._book.dormancy.gallery == {}


def test_match_takes_the_nearer_of_two_look_alikes_and_respects_class_and_size():
    dormancy = Dormancy()
    img = scene((RED_AT, RED), (RED_BACK, RED))
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[4:12, 4:12], labels[18:26, 18:26] = 1, 2
    looks = Looks(img, labels, None)
    boxes = {1: np.array(RED_AT, float), 2: np.array(RED_BACK, float)}
    dormancy.observe(looks, boxes, {1, 2}, 0.5)
    dormancy.sleep(1, "", boxes[1], None, 0.0)
    dormancy.sleep(2, "cup", np.array((18, 18, 20, 26), float), (8.0, 8.0), 0.0)  # a sliver of an 8x8 object
    look = looks.of(1, boxes[1])
    near_2 = Candidate(7, "", np.array((17, 17, 25, 25), float), look)
    assert dormancy.match([near_2], 0.9, 45.0) == {7: 2}
    assert dormancy.match([Candidate(7, "dog", near_2.box, look)], 0.9, 45.0) == {7: 1}  # class rules out 2
    huge = Candidate(7, "", np.array((0, 0, 33, 33), float), look)
    assert dormancy.match([huge], 0.9, 45.0) == {}  # over 4x the size of both


def test_a_small_returning_box_is_plausible_and_the_size_is_the_largest_seen():
    dormancy = Dormancy()
    img = scene((RED_AT, RED))
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[4:12, 4:12] = 1
    looks = Looks(img, labels, None)
    dormancy.observe(looks, {1: np.array(RED_AT, float)}, {1}, 0.5)
    dormancy.sleep(1, "", np.array((4, 4, 6, 12), float), (2.0, 6.0), 0.0)  # anchored on a sliver: 8x8 at its look
    assert dormancy.dormant[1].size == (8.0, 8.0)
    peeking = Candidate(7, "", np.array((4, 4, 7, 12), float), looks.of(1, np.array(RED_AT, float)))
    assert dormancy.match([peeking], 0.9, 45.0) == {7: 1}  # a third of its width: it shows in part
    wide = Candidate(7, "", np.array((0, 4, 33, 12), float), peeking.look)
    assert dormancy.match([wide], 0.9, 45.0) == {}  # over 4x its width


@pytest.fixture(params=[False, True], ids=["colour", "features"])
def patient(request) -> Tracker:
    """A Tracker whose hidden tracks stay lost (live, on their slots) for 6 frames before they sleep."""
    config = TrackerConfig(mask_source="decoder", min_mask_area=10, lost_after_frames=6, dormant_seconds=2.0)
    return Tracker(Seer(features=request.param), config, device="cpu")


def hide_red_briefly(tracker: Tracker, clock: Clock) -> None:
    """Red (track 1) and green (track 2) show for 6 frames, then red hides for 2: lost, not dormant."""
    tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), [Detection(RED_AT), Detection(GREEN_AT)], stamp=clock())
    for _ in range(5):
        tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), stamp=clock())
    for _ in range(2):
        hidden = tracker.step(scene((GREEN_AT, GREEN)), stamp=clock())
        assert hidden.live_track_ids == [1, 2] and [t.track_id for t in hidden.tracks] == [2]
        assert hidden.dormant_track_ids == [] and hidden.slept == []


def show_three(tracker: Tracker, clock: Clock) -> None:
    """Red (track 1), green (track 2) and blue (track 3, at `BLUE_AT`) are detected and show for 6 frames."""
    tracker.step(
        scene((RED_AT, RED), (GREEN_AT, GREEN), (BLUE_AT, BLUE)),
        [Detection(RED_AT), Detection(GREEN_AT), Detection(BLUE_AT)],
        stamp=clock(),
    )
    for _ in range(5):
        tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN), (BLUE_AT, BLUE)), stamp=clock())


def test_a_lost_track_whose_object_is_detected_away_from_its_last_box_keeps_its_id(patient):
    clock = Clock()
    hide_red_briefly(patient, clock)
    back = scene((RED_BACK, RED), (GREEN_AT, GREEN))  # RED_BACK does not touch red's last box
    taken = patient.step(back, [Detection(RED_BACK)], stamp=clock())
    assert taken.reclaimed == [1] and taken.started == [] and taken.revived == [] and not taken.tracks_changed
    assert taken.live_track_ids == [1, 2] and len(patient._book.tracks) == 2  # the lost slot was left, not kept
    assert sorted((t.track_id, t.box_xyxy) for t in taken.tracks) == [(1, RED_BACK), (2, GREEN_AT)]
    assert (taken.label_map == 1).sum() == 64
    later = [patient.step(back, stamp=clock()) for _ in range(7)]  # past lost_after_frames: red is tracked
    assert all(sorted(t.track_id for t in r.tracks) == [1, 2] and r.slept == [] for r in later)
    blue = patient.step(
        scene((RED_BACK, RED), (GREEN_AT, GREEN), ((2, 20, 10, 28), BLUE)), [Detection((2, 20, 10, 28))], stamp=clock()
    )
    assert blue.started == [3]  # the id the new slot held for a moment was never shown


def test_the_slot_a_reclaimed_lost_track_leaves_restarts_in_settle_with_the_same_bits():
    """A detection that takes a lost track moves its id to a new slot; the slot it left restarts after the step
    (its result does not need it): in `settle`, which the node calls once the frame is published, or else
    first thing in the next step, giving the same label maps."""

    def run(settling: bool) -> tuple[list[np.ndarray], list[list[list[int]]]]:
        model = _fakes.restarting(Seer)()
        config = TrackerConfig(mask_source="decoder", min_mask_area=10, lost_after_frames=6, dormant_seconds=2.0)
        tracker, clock = Tracker(model, config, device="cpu"), Clock()
        hide_red_briefly(tracker, clock)
        back = scene((RED_BACK, RED), (GREEN_AT, GREEN))

        def step(t: int) -> TrackResult:
            result = tracker.step(back, [Detection(RED_BACK)] if t == 0 else None, stamp=clock())
            assert result.reclaimed == ([1] if t == 0 else [])
            return result

        return _fakes.steps_and_restarts(tracker, model, step, 3, settling)

    settled_maps, settled = run(True)
    maps, unsettled = run(False)
    # The new slot (object slot 2, model slot 3) starts in the step; the lost one's (model slot 1) in settle.
    assert settled == [[[3]], [[1]], [], [], [], []]  # (step, settle) per frame
    assert unsettled == [[[3]], [[1]], []]  # else in the next step, before its model step
    for a, b in zip(settled_maps, maps):
        assert np.array_equal(a, b)


def test_a_different_object_while_a_track_is_lost_gets_a_new_id_and_the_lost_track_waits(patient):
    clock = Clock()
    hide_red_briefly(patient, clock)
    blue = patient.step(scene((RED_BACK, BLUE), (GREEN_AT, GREEN)), [Detection(RED_BACK)], stamp=clock())
    assert blue.started == [3] and blue.reclaimed == [] and blue.live_track_ids == [1, 2, 3]
    assert (blue.label_map == 3).sum() == 64
    back = patient.step(scene((RED_AT, RED), (RED_BACK, BLUE), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert sorted(t.track_id for t in back.tracks) == [1, 2, 3] and back.started == []


def test_a_lost_track_whose_slot_finds_another_looking_object_sleeps_at_once(patient):
    clock = Clock()
    hide_red_briefly(patient, clock)
    blue = patient.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), stamp=clock())  # no detection: the slot alone
    assert blue.slept == [1] and blue.dormant_track_ids == [1] and blue.live_track_ids == [2]
    assert not (blue.label_map == 1).any() and [t.track_id for t in blue.tracks] == [2]
    red = patient.step(scene((RED_BACK, RED), (GREEN_AT, GREEN)), [Detection(RED_BACK)], stamp=clock())
    assert red.revived == [1] and red.started == []


def test_a_lost_track_whose_object_shows_again_in_its_box_keeps_it_without_a_detection(patient):
    clock = Clock()
    hide_red_briefly(patient, clock)
    back = patient.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), stamp=clock())
    assert back.slept == [] and [t.track_id for t in back.tracks] == [1, 2] and (back.label_map == 1).sum() == 64


def test_a_detection_that_a_lost_track_claims_by_its_stale_box_goes_to_the_sleeper_it_looks_like(patient):
    """Blue sleeps, red is lost; blue comes out where red vanished: the detection matches red's stale box,
    but the slot's mask looks like blue, so it takes blue's id and red sleeps until its own object shows."""
    clock = Clock()
    show_three(patient, clock)
    for _ in range(6):  # blue hides until it sleeps
        hidden = patient.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), stamp=clock())
    assert hidden.dormant_track_ids == [3]
    for _ in range(2):  # red hides: lost, still on its slot
        hidden = patient.step(scene((GREEN_AT, GREEN)), stamp=clock())
    assert hidden.live_track_ids == [1, 2] and [t.track_id for t in hidden.tracks] == [2]
    blue = patient.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert blue.revived == [3] and blue.slept == [1] and blue.started == [] and blue.tracks_changed
    assert blue.live_track_ids == [2, 3] and blue.dormant_track_ids == [1]
    assert (blue.label_map == 3).sum() == 64 and not (blue.label_map == 1).any()
    red = patient.step(scene((RED_BACK, RED), (RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_BACK)], stamp=clock())
    assert red.revived == [1] and red.started == [] and sorted(t.track_id for t in red.tracks) == [1, 2, 3]


def test_a_detection_that_a_lost_track_claims_by_its_stale_box_of_an_unknown_object_starts_a_new_id(patient):
    """Red is lost; blue, never seen before, comes out where red vanished: the detection matches red's stale
    box, but the slot's mask looks like neither red nor any sleeper, so the slot takes a new id and red sleeps
    until its own object shows (bench dev seed 3D 7006: red kept blue under its id, and red's returning
    object started a new id)."""
    clock = Clock()
    hide_red_briefly(patient, clock)
    blue = patient.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert blue.started == [3] and blue.slept == [1] and blue.revived == [] and blue.tracks_changed
    assert blue.live_track_ids == [2, 3] and blue.dormant_track_ids == [1]
    assert (blue.label_map == 3).sum() == 64 and not (blue.label_map == 1).any()
    assert sorted(t.track_id for t in blue.tracks) == [2, 3]
    red = patient.step(scene((RED_BACK, RED), (RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_BACK)], stamp=clock())
    assert red.revived == [1] and red.started == [] and sorted(t.track_id for t in red.tracks) == [1, 2, 3]


def test_an_object_back_on_the_frame_its_lost_tracks_stale_box_takes_another_objects_detection_keeps_its_id(patient):
    """Red is lost; on one frame blue comes out where red vanished, its detection taken by red's stale box (the
    slot there takes a new id and red sleeps), and red comes back elsewhere: red's new track takes red's id at
    once (bench dev seed 3D 7109: the returning object started a new id)."""
    clock = Clock()
    hide_red_briefly(patient, clock)
    image = scene((RED_AT, BLUE), (RED_BACK, RED), (GREEN_AT, GREEN))
    both = patient.step(image, [Detection(RED_AT), Detection(RED_BACK)], stamp=clock())
    assert both.started == [4] and both.reclaimed == [1] and both.slept == [] and both.tracks_changed
    assert both.live_track_ids == [1, 2, 4] and both.dormant_track_ids == []
    assert (both.label_map[18:26, 18:26] == 1).all() and (both.label_map[4:12, 4:12] == 4).all()
    assert sorted(t.track_id for t in both.tracks) == [1, 2, 4]


def test_an_object_recorded_as_a_sliver_is_plausible_when_it_comes_back_whole():
    """Seen only half hidden (a wide, flat box), the object returns whole: taller than 3x the sliver's height but
    within 4x its longest side. Side by side the size rule refused it (bench dev seed 3D 7012). Nearer the
    camera it may come back over 3x the sliver's longest side (bench dev seeds 3D 7006, 7013: 3.26x, 3.08x)."""
    dormancy = Dormancy()
    img = scene(((4, 10, 12, 12), RED))
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[10:12, 4:12] = 1
    looks = Looks(img, labels, None)
    sliver = np.array((4, 10, 12, 12), float)
    dormancy.observe(looks, {1: sliver}, {1}, 0.5)
    dormancy.sleep(1, "", sliver, (8.0, 2.0), 0.0)
    assert dormancy.dormant[1].size == (8.0, 2.0)
    whole = Candidate(7, "", np.array((4, 4, 12, 12), float), looks.of(1, sliver))
    assert dormancy.match([whole], 0.9, 45.0) == {7: 1}
    nearer = Candidate(7, "", np.array((0, 0, 26, 8), float), whole.look)  # 3.25x its longest side
    assert dormancy.match([nearer], 0.9, 45.0) == {7: 1}
    too_big = Candidate(7, "", np.array((0, 0, 33, 8), float), whole.look)
    assert dormancy.match([too_big], 0.9, 45.0) == {}


@pytest.mark.parametrize("features", [False, True], ids=["colour", "features"])
def test_an_object_turned_into_shade_still_looks_like_itself(features):
    """The look's hue-saturation histogram leaves brightness out: a red face in shade shares no RGB bin with
    the lit one but keeps its hue; a blue object still scores apart."""
    lit, shaded, blue = (220, 30, 30), (110, 15, 15), (30, 40, 220)
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[4:12, 4:12] = 1
    box = np.array(RED_AT, float)

    def look(colour):
        img = scene((RED_AT, colour))
        feats = Seer().encode(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255) if features else None
        return Looks(img, labels, feats).of(1, box)

    dormancy = Dormancy()
    dormancy.gallery[1] = [look(lit)]
    # RGB alone 0, and 0.5 beside the features' cosine; the hue-saturation part adds about 0.5 or 0.67.
    assert dormancy.similarity(1, look(shaded)) > (0.6 if features else 0.45)
    assert dormancy.similarity(1, look(blue)) < dormancy.similarity(1, look(shaded)) - 0.3


def test_a_live_track_whose_slot_moved_onto_a_sleepers_object_gives_it_back_and_takes_its_own_id_back(tracker):
    """Red (1), green (2) and blue (3) show; blue hides until it sleeps. Then blue comes out where red was and
    red shows elsewhere, both detected: red's track is matched by its box, but its mask now looks like blue,
    so blue's id takes that slot and red's id goes with red's new detection at once (bench dev seed 3D 7013:
    a slot spread from its object onto a returning neighbour and kept it)."""
    clock = Clock()
    show_three(tracker, clock)
    for _ in range(3):
        hidden = tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), stamp=clock())
    assert hidden.dormant_track_ids == [3] and [t.track_id for t in hidden.tracks] == [1, 2]
    swapped = tracker.step(
        scene((RED_AT, BLUE), (RED_BACK, RED), (GREEN_AT, GREEN)),
        [Detection(RED_AT), Detection(RED_BACK)],
        stamp=clock(),
    )
    assert swapped.revived == [3] and swapped.reclaimed == [1] and swapped.started == [] and swapped.slept == []
    assert swapped.live_track_ids == [1, 2, 3] and swapped.dormant_track_ids == []
    assert sorted((t.track_id, t.box_xyxy) for t in swapped.tracks) == [(1, RED_BACK), (2, GREEN_AT), (3, RED_AT)]


def test_a_detected_track_on_a_sleepers_object_gives_it_back_without_being_re_anchored(tracker):
    """Red (1), green (2) and blue (3) show; blue hides until it sleeps. Red leaves and blue comes out where red
    was: red's slot, never lost, paints blue, and blue's detection matches red's track well, so nothing
    re-anchors it. Its mask looks like blue, not red: blue's id takes the slot and red's sleeps (bench dev
    seed 2D 7017: a slot followed its object out of view onto another coming in where it left)."""
    clock = Clock()
    show_three(tracker, clock)
    for _ in range(3):
        hidden = tracker.step(scene((RED_AT, RED), (GREEN_AT, GREEN)), stamp=clock())
    assert hidden.dormant_track_ids == [3]
    moved = tracker.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), stamp=clock())
    assert [t.track_id for t in moved.tracks] == [1, 2]  # no detection: no look is compared
    back = tracker.step(scene((RED_AT, BLUE), (GREEN_AT, GREEN)), [Detection(RED_AT)], stamp=clock())
    assert back.revived == [3] and back.slept == [1] and back.started == [] and back.tracks_changed
    assert back.live_track_ids == [2, 3] and back.dormant_track_ids == [1]
    assert (back.label_map == 3).sum() == 64 and not (back.label_map == 1).any()


def test_a_detection_taken_by_a_lost_tracks_stale_box_goes_to_the_live_track_on_its_object(patient):
    """Red (1) is lost behind nothing; green (2) grows over where red was. Green's detection covers red's stale
    box whole and overlaps both tracks' boxes under `new_object_iou`, so it re-anchors red's track, whose mask
    then looks like green: green's live track (no detection of its own, box overlapping the detection) takes
    that slot and red sleeps (bench dev seed 3D 7017)."""
    clock = Clock()
    hide_red_briefly(patient, clock)
    wide = (4, 2, 26, 12)  # IoU 0.29 with red's last box, 0.2 with green's, holding all of red's
    back = patient.step(scene((wide, GREEN)), [Detection(wide)], stamp=clock())
    assert back.reclaimed == [2] and back.slept == [1] and back.started == [] and back.revived == []
    assert back.live_track_ids == [2] and back.dormant_track_ids == [1]
    assert [(t.track_id, t.box_xyxy) for t in back.tracks] == [(2, wide)] and not (back.label_map == 1).any()


AHEAD = (11, 4, 27, 12)  # red ahead of its lagging slot's box (8, 4, 12, 12): IoU 0.05, a quarter of it inside


def lag_red(tracker: Tracker, clock: Clock) -> None:
    """Red (track 1) is detected and shows for 6 frames, then moves half out of its slot's box."""
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for _ in range(5):
        tracker.step(scene((RED_AT, RED)), stamp=clock())
    tracker.step(scene(((8, 4, 16, 12), RED)), stamp=clock())  # the slot keeps (8, 4, 12, 12)


def test_a_new_detection_of_a_live_tracks_object_its_slot_lagged_behind_keeps_its_id(tracker):
    """Red (1) moves faster than its slot: the slot keeps a corner of it, and red's detection overlaps that
    track's box too little to be its re-detection. The new track looks like red and its box overlaps the
    undetected live track's: it takes id 1 (reclaimed) and the lagging slot is freed, instead of a second
    track starting on red and the first sleeping with red's looks (bench dev seed 3D 7026: it later revived
    on another object)."""
    clock = Clock()
    lag_red(tracker, clock)
    back = tracker.step(scene((AHEAD, RED)), [Detection(AHEAD)], stamp=clock())
    assert back.reclaimed == [1] and back.started == [] and back.revived == [] and back.slept == []
    assert back.live_track_ids == [1] and [t.track_id for t in back.tracks] == [1]
    assert (back.label_map == 1).sum() >= 120 and (back.label_map > 1).sum() == 0  # of red's 128 pixels
    blue = tracker.step(scene((AHEAD, RED), (BLUE_AT, BLUE)), [Detection(BLUE_AT)], stamp=clock())
    assert blue.started == [2]  # the id the new track held for a moment was never shown


def test_a_track_whose_slot_loses_its_object_on_the_frame_it_is_detected_elsewhere_keeps_its_id(tracker):
    """Red (1) jumps away from its slot's box on a detection frame: its slot finds no pixels there, so it is
    lost from that frame on, and red's detection, far from its last box, looks like it: the new track takes
    id 1 (reclaimed) at once, as for a track lost before (bench dev seed 3D 7013: the object came out from
    behind the pillar away from the sliver its slot had kept, and started a new id)."""
    clock = Clock()
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for _ in range(5):
        tracker.step(scene((RED_AT, RED)), stamp=clock())
    back = tracker.step(scene((RED_BACK, RED)), [Detection(RED_BACK)], stamp=clock())
    assert back.reclaimed == [1] and back.started == [] and back.revived == [] and back.slept == []
    assert back.live_track_ids == [1] and [(t.track_id, t.box_xyxy) for t in back.tracks] == [(1, RED_BACK)]
    blue = tracker.step(scene((RED_BACK, RED), (BLUE_AT, BLUE)), [Detection(BLUE_AT)], stamp=clock())
    assert blue.started == [2]  # the id the new track held for a moment was never shown


def test_a_detection_giving_its_own_id_keeps_it_beside_a_lagging_live_track(tracker):
    """As above, but the detector names the object 9: its id becomes the track's (docs/INTERFACE.md, track
    ids), whatever it looks like."""
    clock = Clock()
    lag_red(tracker, clock)
    named = tracker.step(scene((AHEAD, RED)), [Detection(AHEAD, det_id="9")], stamp=clock())
    assert named.started == [9] and named.reclaimed == [] and 9 in named.live_track_ids


def test_a_live_track_whose_slot_stayed_on_another_object_gives_its_id_to_its_objects_detection(tracker):
    """Red (1) shows for 6 frames; then blue takes red's place and red goes away, so red's slot, never lost,
    paints blue. When red is detected far from that box, the new track looks like red and red's slot's mask
    looks like none of red's looks: the slot has left its object, so the new track takes id 1 (reclaimed) and
    the slot on blue is freed, instead of red starting a second id beside a track that shows blue under red's
    (bench dev seeds 3D 7000-7099: 5 of 11 failures were such slots)."""
    clock = Clock()
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for _ in range(5):
        tracker.step(scene((RED_AT, RED)), stamp=clock())
    for _ in range(2):
        stayed = tracker.step(scene((RED_AT, BLUE)), stamp=clock())
    assert [t.track_id for t in stayed.tracks] == [1] and stayed.slept == []  # the slot holds blue, never lost
    back = tracker.step(scene((RED_AT, BLUE), (RED_BACK, RED)), [Detection(RED_BACK)], stamp=clock())
    assert back.reclaimed == [1] and back.started == [] and back.revived == [] and back.slept == []
    assert [(t.track_id, t.box_xyxy) for t in back.tracks] == [(1, RED_BACK)]
    assert set(np.unique(back.label_map)) == {0, 1}  # blue has no track until it is detected
    blue = tracker.step(scene((RED_AT, BLUE), (RED_BACK, RED)), [Detection(RED_AT)], stamp=clock())
    assert blue.started == [2]


def test_a_live_track_whose_slot_stays_on_another_object_between_detections_sleeps_at_once(tracker):
    """Red (1) shows for 6 frames, detected on the first and the third (a detector feeds the Tracker); then
    blue takes red's place with no detection, so red's slot, never lost, paints blue. Its pixels look like
    none of red's looks: red's object is gone, and the track sleeps on that frame with its looks rather than
    show blue under red's id. Red detected elsewhere later revives id 1, and blue, never detected, has no
    track (bench dev seed 3D 7104: a slot slid from its object going behind the pillar onto a neighbour,
    which a detection then gave to that neighbour's track, and the first track ended as its duplicate; 3D
    7013: a slot stayed on the background where its object left the view)."""
    clock = Clock()
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for t in range(5):
        tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)] if t == 1 else None, stamp=clock())
    moved = tracker.step(scene((RED_AT, BLUE)), stamp=clock())
    assert moved.slept == [1] and moved.tracks == [] and moved.dormant_track_ids == [1] and moved.tracks_changed
    assert not (moved.label_map == 1).any()
    back = tracker.step(scene((RED_AT, BLUE), (RED_BACK, RED)), [Detection(RED_BACK)], stamp=clock())
    assert back.revived == [1] and back.started == [] and back.reclaimed == []
    assert [(t.track_id, t.box_xyxy) for t in back.tracks] == [(1, RED_BACK)]


def test_with_boxes_given_once_a_track_whose_slot_shows_another_object_keeps_its_slot(tracker):
    """The same slot with red's box given once, on the first frame: no detector would bring a sleeping track
    back, so a track that is not lost keeps its slot. So it does once the detector's last message is older
    than `dormant_seconds` (2 s, 8 frames here)."""
    clock = Clock()
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for _ in range(5):
        tracker.step(scene((RED_AT, RED)), stamp=clock())
    moved = tracker.step(scene((RED_AT, BLUE)), stamp=clock())
    assert moved.slept == [] and [t.track_id for t in moved.tracks] == [1]
    tracker.reset()
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for _ in range(9):
        tracker.step(scene((RED_AT, RED)), stamp=clock())
    stale = tracker.step(scene((RED_AT, BLUE)), stamp=clock())
    assert stale.slept == [] and [t.track_id for t in stale.tracks] == [1]


def test_a_live_track_that_still_looks_like_its_object_keeps_its_id_beside_a_look_alike(tracker):
    """The rule above needs the slot's mask to look unlike its object: red (1) stays in view, and a second red
    object detected elsewhere starts a new id."""
    clock = Clock()
    tracker.step(scene((RED_AT, RED)), [Detection(RED_AT)], stamp=clock())
    for _ in range(5):
        tracker.step(scene((RED_AT, RED)), stamp=clock())
    twin = tracker.step(scene((RED_AT, RED), (RED_BACK, RED)), [Detection(RED_BACK)], stamp=clock())
    assert twin.started == [2] and twin.reclaimed == [] and twin.live_track_ids == [1, 2]


def test_a_look_unlike_every_look_of_the_track_is_not_kept():
    """A slot that moved onto another object without being lost must not fill its track's gallery with that
    object: the gallery is what the track's own object is recognised by when it comes back. A look like the
    track's own is kept as before."""
    dormancy = Dormancy()
    labels = np.zeros((SIZE, SIZE), np.uint16)
    labels[4:12, 4:12] = 1
    box = {1: np.array(RED_AT, float)}
    red, blue = Looks(scene((RED_AT, RED)), labels, None), Looks(scene((RED_AT, BLUE)), labels, None)
    dormancy.observe(red, box, {1}, 0.5)
    assert dormancy.similarity(1, blue.of(1, box[1])) < 0.5
    for _ in range(2 * VIEW_EVERY):
        dormancy.observe(blue, box, {1}, 0.5)
    assert len(dormancy.gallery[1]) == 1
    for _ in range(VIEW_EVERY):
        dormancy.observe(red, box, {1}, 0.5)
    assert len(dormancy.gallery[1]) == 2
