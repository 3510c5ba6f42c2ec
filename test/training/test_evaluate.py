"""Evaluation: streaming inference, the A.8 metrics with baselines, JSON + PNG outputs, conditioning noise."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from savi_core.model.checkpoint import load_checkpoint
from training.conditioning import add_box_noise, conditioning_from_batch
from training.config import EvalConfig, load_config
from training.data import build_dataset
from savi_core.tracking.tracker import Tracker
from savi_core.tracking.tracker_config import TrackerConfig
from training.datasets.common import build_item
from training.mask_ceiling import CEILING
from training.evaluate import (
    _collate,
    box_frames,
    evaluate,
    first_frame_detections,
    main,
    model_only_ids,
    resolve_checkpoint,
    tracker_ids,
)
from training.train import main as train_main
from training.train import train
from test.training.datasets import fixtures_writer

TINY = Path(__file__).parent / "fixtures" / "tiny.yaml"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "savi_ros" / "models" / "default"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    return train(load_config(TINY, {"train.out_dir": str(out), "train.steps": 2}))


def _eval_batch(run_dir: Path) -> dict:
    cfg = load_config(TINY, {"train.out_dir": str(run_dir)})
    dataset = build_dataset(cfg.data, "eval")
    return _collate([dataset[0], dataset[1]])


def test_cli_writes_metrics_json_and_per_frame_png_with_baselines(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(run_dir), "--out", str(out), "--baselines", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in ("savi", "static_box", "flow_kmeans_com", "J&F"))
    results = json.loads((out / "metrics.json").read_text())
    assert results["checkpoint"].endswith("step_0000002") and results["step"] == 2
    assert results["num_videos"] == 3 and results["skip_first"] is True  # tiny: eval_num_videos 3
    assert results["scored"] == "tracker" and results["mask_source"] == "attention"  # the node's default
    for method in ("savi", "static_box", "flow_kmeans_com", "csrt_box", "csrt_grabcut"):
        m = results["methods"][method]
        assert len(m["fg_ari_per_video"]) == len(m["miou_per_video"]) == 3
        assert 0.0 <= m["miou"] <= 1.0 and -1.0 <= m["fg_ari"] <= 1.0
        assert 0.0 <= m["j"] <= 1.0 and 0.0 <= m["f"] <= 1.0 and m["j_and_f"] == (m["j"] + m["f"]) / 2
        assert len(m["miou_per_frame"]) == 5 and m["miou_per_frame"][0] is None  # frame 0 is skipped
        assert all(v is not None for v in m["miou_per_frame"][1:])
    assert (out / "per_frame.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --include-first-frame scores frame 0 too; the other frames' scores do not change.
    assert (
        main(["--checkpoint", str(run_dir), "--out", str(tmp_path / "first"), "--baselines", "--include-first-frame"])
        == 0
    )
    with_first = json.loads((tmp_path / "first" / "metrics.json").read_text())["methods"]["static_box"]
    assert with_first["miou_per_frame"][0] is not None
    assert with_first["miou_per_frame"][1:] == results["methods"]["static_box"]["miou_per_frame"][1:]


def test_streaming_prediction_equals_the_batched_forward_pass(run_dir):
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    batch = _eval_batch(run_dir)
    ids = model_only_ids(model, batch, "decoder")
    with torch.no_grad():
        masks = model(batch["video"], conditioning_from_batch(batch, model.config)).masks
    assert ids.shape == batch["segmentations"].shape
    assert torch.equal(ids, masks.argmax(dim=2))  # background slot 0 -> id 0, object slot i+1 -> id i+1
    assert int(ids.max()) < model.config.num_slots


def test_first_frame_detections_are_pixel_boxes_named_by_object_id():
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 1.0, 0.75]])
    dets = first_frame_detections(boxes, torch.tensor([1.0, 0.0, 1.0]), (40, 80))
    assert [d.det_id for d in dets] == ["1", "3"]
    assert dets[0].box_xyxy == pytest.approx((16.0, 4.0, 48.0, 20.0))
    assert dets[1].box_xyxy == pytest.approx((40.0, 20.0, 60.0, 40.0))


def test_tracker_scoring_is_what_the_tracker_publishes(run_dir):
    """The evaluation's label maps are the Tracker's, frame for frame, with track id = object id."""
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    batch = _eval_batch(run_dir)
    config = TrackerConfig(mask_threshold=0.0, min_mask_area=0)  # an untrained model's masks are faint
    ids = tracker_ids(Tracker(model, config), batch, input_scale=2.0)
    assert ids.shape == (2, 5, 32, 32)
    for i in range(2):
        tracker = Tracker(model, config)
        images = (batch["video"][i].permute(0, 2, 3, 1) * 255).round().byte().numpy().repeat(2, 1).repeat(2, 2)
        dets = first_frame_detections(batch["cond_boxes"][i], batch["conditioned"][i], (32, 32))
        first = tracker.step(images[0], dets)
        assert sorted(first.live_track_ids) == [int(d.det_id) for d in dets]
        assert torch.equal(ids[i, 0], torch.from_numpy(first.label_map.astype("int64")))
        objects = {int(d.det_id) for d in dets}
        assert set(ids[i].unique().tolist()) <= objects | {0} and set(ids[i, 0].unique().tolist()) - {0}


def test_without_identity_the_other_scores_are_the_same_and_no_identity_score_is_given(run_dir):
    """fit_prototypes scores only mIoU: leaving out the identity counts must not change any other score."""
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    cfg = load_config(TINY, {"train.out_dir": str(run_dir)})
    dataset = build_dataset(cfg.data, "eval")
    eval_cfg = EvalConfig(num_videos=2, mask_source="attention", batch_size=2)
    params = {"mask_threshold": 0.0, "min_mask_area": 0}
    full, lean = (
        evaluate(model, dataset, eval_cfg, torch.device("cpu"), progress=False, tracker_params=params, identity=i)[
            "methods"
        ]["savi"]
        for i in (True, False)
    )
    identity_keys = set(full) - set(lean)
    assert "idf1" in identity_keys and not set(lean) - set(full)
    same = set(lean) - {"ms_per_frame"}  # a timing
    assert {k: lean[k] for k in same} == {k: full[k] for k in same}


def test_input_scale_returns_masks_at_the_scaled_size(run_dir):
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    batch = _eval_batch(run_dir)
    ids = model_only_ids(model, batch, "attention", input_scale=2.0)
    assert ids.shape == (2, 5, 32, 32)


def test_frames_larger_than_the_model_are_resized_down_and_masks_come_back_at_frame_size(run_dir):
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    batch = _eval_batch(run_dir)
    big = dict(
        batch,
        video=torch.nn.functional.interpolate(batch["video"].flatten(0, 1), scale_factor=3, mode="nearest").unflatten(
            0, batch["video"].shape[:2]
        ),
    )
    ids = model_only_ids(model, big, "decoder")
    assert ids.shape == (2, 5, 48, 48)
    # Nearest-upscaled frames resize back to nearly the same model input: same ids almost everywhere.
    small = model_only_ids(model, batch, "decoder")
    agree = (ids[..., 1::3, 1::3] == small).float().mean().item()
    assert agree > 0.9


def test_cli_input_scale_renders_synthetic_scenes_at_that_size(run_dir, tmp_path):
    out = tmp_path / "scale2"
    assert main(["--checkpoint", str(run_dir), "--out", str(out), "--input-scale", "2", "--num-videos", "2"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["input_scale"] == 2.0 and results["frame_size"] == [32, 32]  # tiny model: 16x16
    assert 0.0 <= results["methods"]["savi"]["miou"] <= 1.0


def test_box_noise_moves_conditioned_boxes_by_a_fraction_of_their_size():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[[0.4, 0.4, 0.6, 0.5], [-1.0, -1.0, -1.0, -1.0]]]).repeat(4000, 1, 1)
    conditioned = torch.tensor([[1.0, 0.0]]).repeat(4000, 1)
    assert torch.equal(add_box_noise(boxes, conditioned, 0.0, g), boxes)
    noisy = add_box_noise(boxes, conditioned, 0.1, g)
    assert torch.equal(noisy[:, 1], boxes[:, 1])  # unconditioned entries stay -1
    shift = noisy[:, 0] - boxes[:, 0]
    assert torch.allclose(shift[:, :2], shift[:, 2:], atol=1e-6)  # the box moves, its size is kept
    assert shift[:, 0].std().item() == pytest.approx(0.1 * 0.2, rel=0.1)  # 10% of the height
    assert shift[:, 1].std().item() == pytest.approx(0.1 * 0.1, rel=0.1)  # 10% of the width
    assert noisy[:, 0].min() >= 0.0 and noisy[:, 0].max() <= 1.0


def test_noise_changes_the_model_metrics_but_not_without_sigma(run_dir, tmp_path):
    """On the bare model (--model-only): a 2-step model's faint masks give the Tracker no pixels at all."""

    def miou(*extra):
        out = tmp_path / "_".join(extra or ("clean",))
        assert main(["--checkpoint", str(run_dir), "--out", str(out), "--model-only", *extra]) == 0
        results = json.loads((out / "metrics.json").read_text())
        assert results["scored"] == "model_only"
        return results["methods"]["savi"]["miou_per_video"]

    clean = miou()
    assert miou() == clean  # deterministic
    assert miou("--noise-sigma", "0.5") != clean


def test_train_and_evaluate_on_movi_files_with_baselines(tmp_path):
    writer = fixtures_writer
    videos = {
        split: [[writer.make_movi_video(seed, num_frames=4, num_instances=2) for seed in seeds]]
        for split, seeds in (("train", range(4)), ("validation", range(10, 12)))
    }
    root = writer.write_movi_dir(tmp_path / "movi", videos)
    data = yaml.safe_load(TINY.read_text())
    data["data"] = {"kind": "movi", "resolution": [16, 16], "max_instances": 2, "window": 3}
    config = tmp_path / "movi.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert train_main(["--config", str(config), "--data", str(root), "--out", str(run), "--steps", "2"]) == 0
    assert main(["--checkpoint", str(run), "--out", str(tmp_path / "eval"), "--baselines"]) == 0
    results = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert results["data"] == {"kind": "movi", "root": str(root)} and results["num_videos"] == 2
    kmeans = results["methods"]["flow_kmeans_com"]
    assert len(kmeans["miou_per_frame"]) == 4 and 0.0 <= kmeans["miou"] <= 1.0


def test_point_prompts_are_each_object_s_centre_of_mass_for_a_model_that_takes_points(run_dir, tmp_path):
    import dataclasses

    from training.evaluate import evaluate, first_frame_points

    points = first_frame_points(
        torch.tensor([[0.25, 0.5], [-1.0, -1.0], [0.5, 0.125]]), torch.tensor([1.0, 0.0, 1.0]), (40, 80)
    )
    assert [(p.point_xy, p.track_id) for p in points] == [((40.0, 10.0), "1"), ((10.0, 20.0), "3")]
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    cfg = load_config(TINY, {"train.out_dir": str(run_dir)})
    dataset = build_dataset(cfg.data, "eval")
    with pytest.raises(ValueError, match="does not take points"):
        evaluate(model, dataset, cfg.eval, torch.device("cpu"), progress=False, prompt="points")
    model.config = dataclasses.replace(
        model.config, initializer=dataclasses.replace(model.config.initializer, points=True)
    )
    batch = _eval_batch(run_dir)
    config = TrackerConfig(mask_threshold=0.0, min_mask_area=0)
    ids = tracker_ids(Tracker(model, config), batch, prompt="points")
    tracker = Tracker(model, config)
    tracker.add_objects(first_frame_points(batch["cond_centers"][0], batch["conditioned"][0], (16, 16)))
    first = tracker.step((batch["video"][0, 0].permute(1, 2, 0) * 255).round().byte().numpy())
    assert torch.equal(ids[0, 0], torch.from_numpy(first.label_map.astype("int64")))
    result = evaluate(model, dataset, cfg.eval, torch.device("cpu"), progress=False, prompt="points")
    assert result["prompt"] == "points" and result["methods"]["savi"]["fg_ari"] is not None


def test_detect_every_gives_the_tracker_the_true_boxes_of_visible_objects_on_those_frames(run_dir, monkeypatch):
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    batch = _eval_batch(run_dir)
    seen: list[tuple[int, list]] = []
    tracker = Tracker(model, TrackerConfig(mask_threshold=0.0, min_mask_area=0))
    step = tracker.step
    monkeypatch.setattr(
        tracker, "step", lambda image, detections=None: seen.append(detections) or step(image, detections)
    )
    tracker_ids(tracker, batch, detect_every=2)
    frames = batch["video"].shape[1]
    assert [d is not None for d in seen] == [f % 2 == 0 for f in range(frames)] * 2
    for i in range(2):
        for f in range(2, frames, 2):
            dets = seen[i * frames + f]
            expected = first_frame_detections(batch["boxes"][i, f], batch["visible"][i, f].float(), (16, 16))
            assert dets == expected and len(dets) == int(batch["visible"][i, f].sum())


def test_cli_tracker_parameters_are_checked_by_name_and_value_and_recorded(run_dir, tmp_path, capsys):
    out = tmp_path / "gate"
    assert (
        main(
            [
                "--checkpoint",
                str(run_dir),
                "--out",
                str(out),
                "--num-videos",
                "2",
                "--detect-every",
                "2",
                "--tracker",
                "gate_margin=0",
                "--tracker",
                "reinit=refresh",
            ]
        )
        == 0
    )
    results = json.loads((out / "metrics.json").read_text())
    assert results["tracker"] == {"gate_margin": 0, "reinit": "refresh"} and results["detect_every"] == 2
    assert main(["--checkpoint", str(run_dir), "--tracker", "gate=1"]) == 1
    assert "--tracker: expected NAME=VALUE with NAME one of" in capsys.readouterr().err
    assert main(["--checkpoint", str(run_dir), "--tracker", "gate_margin=-1"]) == 1
    assert "gate_margin: must be a number >= 0" in capsys.readouterr().err


def _late_object_batch() -> dict:
    """A 6-frame 96x128 video on a noise floor: a reddish square (object 1) from frame 0, a bluish one
    (object 2) from frame 3, and a greenish one (object 3) showing 4 pixels on frames 1-3 (below the minimum
    area) and 400 from frame 4."""
    frames, h, w = 6, 96, 128
    video = np.full((frames, h, w, 3), 0.5, np.float32)
    seg = np.zeros((frames, h, w), np.int64)
    seg[:, 20:44, 16:40] = 1
    seg[3:, 50:74, 80:104] = 2
    seg[1:4, 0:2, 60:62] = 3
    seg[4:, 0:20, 50:70] = 3
    rng = np.random.default_rng(0)
    video[:] = 0.4 + 0.2 * rng.random((1, h, w, 3), np.float32)  # textured, as the pretrained features expect
    for i, colour in enumerate(([0.9, 0.1, 0.1], [0.1, 0.1, 0.9], [0.1, 0.8, 0.1])):
        inside = seg == i + 1
        video[inside] = np.clip(np.array(colour, np.float32) + 0.15 * rng.standard_normal((int(inside.sum()), 3)), 0, 1)
    return _collate([build_item(video=video, target=video, max_instances=4, segmentations=seg)])


def test_first_appearance_gives_a_late_object_its_box_on_the_frame_it_shows_and_the_tracker_tracks_it():
    """Known answer, with the shipped default model and Tracker parameters: under first-appearance object 2
    is boxed on frame 3 and tracked from there on (object 3 only once 0.1% of the frame shows, frame 4);
    under first-frame neither is ever given nor predicted."""
    batch = _late_object_batch()
    assert box_frames(batch, "first-frame").tolist() == [[0, -1, -1, -1]]
    assert box_frames(batch, "first-appearance").tolist() == [[0, 3, 4, -1]]
    model, _ = load_checkpoint(DEFAULT_MODEL)
    tracker = Tracker(model, TrackerConfig())
    late = tracker_ids(tracker, batch, boxes="first-appearance")
    truth = batch["segmentations"]
    for obj, start in ((2, 3), (3, 4)):
        assert not bool((late[0, :start] == obj).any())
        for f in range(start, 6):
            painted, true = late[0, f] == obj, truth[0, f] == obj
            assert float((painted & true).sum() / (painted | true).sum()) > 0.5, (obj, f)
    first = tracker_ids(tracker, batch)
    assert set(first.unique().tolist()) == {0, 1}
    assert torch.equal(first[:, :3], late[:, :3])  # the same until a late box is given


def test_first_appearance_protocol_is_recorded_with_both_ceilings_and_refused_where_it_cannot_apply(run_dir):
    """Every box-taking method is scored under it; the flow k-means baseline (seeded on frame 0) is not."""
    model, _ = load_checkpoint(resolve_checkpoint(run_dir))
    dataset = build_dataset(load_config(TINY, {"train.out_dir": str(run_dir)}).data, "eval")
    eval_cfg = EvalConfig(num_videos=2, mask_source="attention", batch_size=2)
    cpu = torch.device("cpu")
    result = evaluate(model, dataset, eval_cfg, cpu, baselines=True, progress=False, boxes="first-appearance")
    assert result["boxes"] == "first-appearance" and result["min_appearance_area"] == 0.001
    assert set(result["methods"]) == {"savi", "static_box", "csrt_box", "csrt_grabcut"}
    ceiling = result["ceiling_miou"]
    assert set(ceiling) == {"first-frame", "first-appearance", CEILING}
    assert ceiling["first-frame"] <= ceiling["first-appearance"]
    # The mask path fed perfect attention for the objects given under the protocol cannot beat the protocol.
    assert ceiling[CEILING] <= ceiling["first-appearance"]
    assert evaluate(model, dataset, eval_cfg, cpu, progress=False)["boxes"] == "first-frame"
    with pytest.raises(ValueError, match="baselines take"):
        evaluate(model, dataset, eval_cfg, cpu, baselines=True, progress=False, boxes="first-appearance-detector")
    for wrong in ({"model_only": True}, {"noise_sigma": 0.1}, {"boxes": "every-frame"}):
        with pytest.raises(ValueError, match="first-appearance|boxes must be"):
            evaluate(model, dataset, eval_cfg, cpu, progress=False, **{"boxes": "first-appearance", **wrong})


@pytest.mark.parametrize("boxes", ["first-appearance", "first-appearance-detector"])
def test_on_an_appearance_frame_the_detector_protocol_also_gives_every_visible_objects_box(boxes, monkeypatch):
    """first-appearance gives the new object's box alone; first-appearance-detector every visible object's, as
    a detector firing on that frame would (the Tracker restarts the slots of tracks not re-detected with a
    new one); the other frames get none."""
    batch = _late_object_batch()
    model, _ = load_checkpoint(DEFAULT_MODEL)
    tracker = Tracker(model, TrackerConfig())
    seen: list = []
    step = tracker.step
    monkeypatch.setattr(
        tracker, "step", lambda image, detections=None: seen.append(detections) or step(image, detections)
    )
    tracker_ids(tracker, batch, boxes=boxes)
    given = [None if d is None else sorted(int(x.det_id) for x in d) for d in seen]
    detector = boxes == "first-appearance-detector"
    assert given == [[1], None, None, [1, 2] if detector else [2], [1, 2, 3] if detector else [3], None]
