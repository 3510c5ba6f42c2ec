"""The synthetic generator: determinism, ground truth that matches the rendering, flow consistency."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from savi_scenes import SHAPES, SceneConfig, generate_scene
from training.datasets.common import boxes_from_segmentation
from test.savi_scenes.conftest import comebacks

SMALL = SceneConfig(height=48, width=64, num_frames=8)


def _interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood is all in ``mask`` (the image border counts as outside)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    return cv2.erode(padded, np.ones((3, 3), np.uint8))[1:-1, 1:-1].astype(bool)


def _warp_agreement(scene, t: int, direction: str, interior_only: bool) -> float:
    """Fraction of object pixels of frame t that the flow sends onto the same id in the next frame.

    Pixels sent onto another object there are skipped (occluded); those sent out of the image too. NaN when no
    pixel is left to judge.
    """
    seg = scene.segmentations
    if direction == "forward":
        src, dst, flow = t, t + 1, scene.forward_flow[t]
    else:
        src, dst, flow = t + 1, t, scene.backward_flow[t + 1]
    h, w = seg.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w]
    tr = np.floor(rows + 0.5 + flow[..., 0]).astype(int)
    tc = np.floor(cols + 0.5 + flow[..., 1]).astype(int)
    inside = (tr >= 0) & (tr < h) & (tc >= 0) & (tc < w)
    ids = seg[src]
    hit = np.zeros_like(ids)
    hit[inside] = seg[dst][tr[inside], tc[inside]]
    obj = (ids > 0) & inside
    if interior_only:
        obj &= np.logical_or.reduce([_interior(ids == k) for k in range(1, ids.max() + 1)] + [np.zeros_like(obj)])
    considered = obj & ((hit == ids) | (hit == 0))
    if not considered.any():
        return float("nan")
    return float((hit[considered] == ids[considered]).mean())


def test_deterministic_per_seed_and_seeds_differ():
    a, b, c = generate_scene(7, SMALL), generate_scene(7, SMALL), generate_scene(8, SMALL)
    for name in ("video", "segmentations", "forward_flow", "backward_flow", "boxes", "visible"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.classes == b.classes
    assert not np.array_equal(a.video, c.video)


def test_shapes_dtypes_and_object_count_range():
    cfg = SceneConfig(height=40, width=56, num_frames=5, min_objects=2, max_objects=4)
    counts = set()
    for seed in range(25):
        s = generate_scene(seed, cfg)
        n = s.num_objects
        counts.add(n)
        assert s.video.shape == (5, 40, 56, 3) and s.video.dtype == np.uint8
        assert s.segmentations.shape == (5, 40, 56) and s.segmentations.dtype == np.uint8
        assert s.forward_flow.shape == s.backward_flow.shape == (5, 40, 56, 2)
        assert s.forward_flow.dtype == s.backward_flow.dtype == np.float32
        assert s.boxes.shape == (5, n, 4) and s.boxes.dtype == np.float32
        assert s.visible.shape == (5, n) and s.visible.dtype == bool
        assert set(s.classes) <= set(SHAPES) and len(s.classes) == n
        assert set(np.unique(s.segmentations)) <= set(range(n + 1))
    assert counts == {2, 3, 4}


def test_boxes_and_visibility_match_segmentation():
    for seed in range(5):
        s = generate_scene(seed, SMALL)
        boxes, visible = boxes_from_segmentation(s.segmentations, s.num_objects)
        np.testing.assert_array_equal(s.visible, visible)
        np.testing.assert_allclose(s.boxes, boxes, atol=1e-6)
        assert np.all(s.boxes[~s.visible] == 0)
        assert np.all((s.boxes >= 0) & (s.boxes <= 1))
        vb = s.boxes[s.visible]
        assert np.all(vb[:, 2] > vb[:, 0]) and np.all(vb[:, 3] > vb[:, 1])


def test_flow_values_are_object_displacements_and_zero_at_the_ends():
    s = generate_scene(3, SceneConfig(height=48, width=48, num_frames=6, camera_pan=True))
    assert np.all(s.forward_flow[-1] == 0) and np.all(s.backward_flow[0] == 0)
    pan = s.background_offset[1] - s.background_offset[0]
    assert np.linalg.norm(pan) > 0
    for t in range(5):
        for i in range(s.num_objects):
            m = s.segmentations[t] == i + 1
            if m.any():
                np.testing.assert_allclose(
                    s.forward_flow[t][m],
                    np.broadcast_to(s.positions[t + 1, i] - s.positions[t, i], (m.sum(), 2)),
                    atol=1e-5,
                )
            m1 = s.segmentations[t + 1] == i + 1
            if m1.any():
                np.testing.assert_allclose(
                    s.backward_flow[t + 1][m1],
                    np.broadcast_to(s.positions[t, i] - s.positions[t + 1, i], (m1.sum(), 2)),
                    atol=1e-5,
                )
        bg = s.segmentations[t] == 0
        np.testing.assert_allclose(s.forward_flow[t][bg], np.broadcast_to(pan, (bg.sum(), 2)), atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_warping_segmentation_by_flow_lands_on_same_instance(direction):
    cfg = SceneConfig(height=64, width=64, num_frames=10, camera_pan=True)
    interior, everything = [], []
    for seed in range(3):
        s = generate_scene(seed, cfg)
        for t in range(cfg.num_frames - 1):
            interior.append(_warp_agreement(s, t, direction, interior_only=True))
            everything.append(_warp_agreement(s, t, direction, interior_only=False))
    # Interior pixels are exact; boundary pixels may round to the neighbouring pixel.
    assert min(interior) == 1.0
    assert np.mean(everything) > 0.93


def test_texture_moves_with_the_object():
    """Interior object pixels keep their colour when followed along the forward flow."""
    cfg = SceneConfig(height=64, width=64, num_frames=6, textured=True)
    same, total = 0, 0
    for seed in range(4):
        s = generate_scene(seed, cfg)
        h, w = s.segmentations.shape[1:]
        rows, cols = np.mgrid[0:h, 0:w]
        for t in range(5):
            tr = np.clip(np.floor(rows + 0.5 + s.forward_flow[t, ..., 0]).astype(int), 0, h - 1)
            tc = np.clip(np.floor(cols + 0.5 + s.forward_flow[t, ..., 1]).astype(int), 0, w - 1)
            ids = s.segmentations[t]
            keep = (ids > 0) & (s.segmentations[t + 1][tr, tc] == ids)
            keep &= np.logical_or.reduce([_interior(ids == k) for k in range(1, s.num_objects + 1)])
            diff = np.abs(s.video[t].astype(int) - s.video[t + 1][tr, tc].astype(int)).max(-1)
            same += int((diff[keep] <= 2).sum())
            total += int(keep.sum())
    # Textures are point-sampled, so a stripe edge may shift by half a pixel; most pixels match.
    assert same / total > 0.85


def test_camera_pan_moves_background_and_static_camera_does_not():
    still = generate_scene(1, SceneConfig(height=48, width=48, num_frames=4, camera_pan=False))
    bg = (still.segmentations[0] == 0) & (still.segmentations[3] == 0)
    np.testing.assert_array_equal(still.video[0][bg], still.video[3][bg])
    assert np.all(still.background_offset == 0)

    cfg = SceneConfig(height=48, width=48, num_frames=4, camera_pan=True, pan_speed_range=(0.05, 0.05))
    for seed in range(4):
        pan = generate_scene(seed, cfg)
        shift = pan.background_offset[3]
        assert np.linalg.norm(shift) == pytest.approx(0.05 * 48 * 3, rel=1e-4)
        # Frame 3 sampled at p + shift gives frame 0's background back; unshifted it does not.
        rows, cols = np.mgrid[0:48, 0:48].astype(np.float32)
        back = cv2.remap(pan.video[3], cols + shift[1], rows + shift[0], cv2.INTER_LINEAR)
        src_r, src_c = np.round(rows + shift[0]).astype(int), np.round(cols + shift[1]).astype(int)
        ok = (src_r >= 1) & (src_r < 47) & (src_c >= 1) & (src_c < 47)
        bg = ok & (pan.segmentations[0] == 0)
        bg[ok] &= pan.segmentations[3][src_r[ok], src_c[ok]] == 0
        err_shifted = np.abs(back.astype(int) - pan.video[0].astype(int))[bg].mean()
        err_still = np.abs(pan.video[3].astype(int) - pan.video[0].astype(int))[bg].mean()
        assert err_shifted < 0.5 * err_still


def test_objects_stay_fully_in_frame_and_rigid():
    """Single objects (no occlusion) keep their pixel count: never clipped, never deformed."""
    cfg = SceneConfig(
        height=40, width=72, num_frames=20, min_objects=1, max_objects=1, size_range=(0.5, 0.6), speed_range=(0.08, 0.1)
    )
    for seed in range(6):
        s = generate_scene(seed, cfg)
        areas = (s.segmentations == 1).sum((1, 2))
        # Sub-pixel rasterisation changes the area a little; clipping would take a big bite.
        assert areas.min() > 0.9 * areas.max()
        assert s.visible.all()


def test_any_resolution_and_untextured():
    s = generate_scene(0, SceneConfig(height=240, width=320, num_frames=3))
    assert s.video.shape == (3, 240, 320, 3)
    flat = generate_scene(0, SceneConfig(height=32, width=32, num_frames=2, textured=False))
    for i in range(flat.num_objects):
        colors = flat.video[0][flat.segmentations[0] == i + 1]
        assert len(np.unique(colors, axis=0)) <= 1
    assert len(np.unique(flat.video[0][flat.segmentations[0] == 0], axis=0)) == 1


def test_objects_are_reasonably_visible_at_frame_zero():
    areas = []
    for seed in range(10):
        s = generate_scene(seed, SceneConfig())
        areas += [(s.segmentations[0] == i + 1).mean() for i in range(s.num_objects)]
    assert np.median(areas) > 0.02


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"shapes": ("circle", "cloud")}, "shapes"),
        ({"backgrounds": ("noise", "lava")}, "backgrounds"),
        ({"textures": ()}, "textures"),
        ({"object_saturation": (0.5, 1.5)}, "object_saturation"),
        ({"distractors": (3, 1)}, "distractors"),
        ({"size_range": (0.3, 0.1)}, "size_range"),
        ({"height": 4}, "height"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"rotation_range": (0.2, 0.1)}, "rotation_range"),
        ({"scale_range": (0.0, 1.5)}, "scale_range"),
    ],
)
def test_config_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SceneConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    assert SceneConfig.from_dict({"height": 32, "size_range": [0.2, 0.3]}).size_range == (0.2, 0.3)
    with pytest.raises(ValueError, match="colour"):
        SceneConfig.from_dict({"colour": 1})


def test_randomized_world_families_render_with_exact_ground_truth():
    """Every new family renders; objects still move rigidly so flow stays exact; effects touch only pixels."""
    from savi_scenes.generator import ALL_BACKGROUNDS, ALL_TEXTURES
    from savi_scenes.shapes import SHAPES

    for shape in SHAPES:
        cfg = SceneConfig(
            height=40,
            width=48,
            num_frames=4,
            shapes=(shape,),
            backgrounds=ALL_BACKGROUNDS,
            textures=ALL_TEXTURES,
            object_saturation=(0.0, 1.0),
            background_saturation=(0.0, 1.0),
            distractors=(1, 3),
            camera_pan=True,
        )
        scene = generate_scene(7, cfg)
        assert set(scene.classes) == {shape}
        for i in range(scene.num_objects):
            vis = (scene.segmentations == i + 1).any(axis=(1, 2))
            assert np.array_equal(vis, scene.visible[:, i]), shape
    for background in ALL_BACKGROUNDS:
        canvas = generate_scene(3, SceneConfig(height=40, width=48, num_frames=2, backgrounds=(background,))).video[0]
        assert canvas.std() > 0 or background == "plain"
    plain = SceneConfig(height=40, width=48, num_frames=3, camera_pan=True)
    noisy = SceneConfig(height=40, width=48, num_frames=3, camera_pan=True, effects=True)
    a, b = generate_scene(11, plain), generate_scene(11, noisy)
    assert np.array_equal(a.segmentations, b.segmentations) and np.array_equal(a.forward_flow, b.forward_flow)
    assert not np.array_equal(a.video, b.video)


def test_a_spinning_object_s_flow_is_the_rotation_of_its_offsets():
    """Known answer: a static object turning by w per frame (its sign drawn per object) moves the point at
    offset d from its centre by (R(w) - I) d to the next frame and by (R(-w) - I) d to the previous one."""
    w = 0.08
    cfg = SceneConfig(
        height=64,
        width=64,
        num_frames=5,
        min_objects=1,
        max_objects=1,
        speed_range=(0.0, 0.0),
        rotation_range=(w, w),
        textured=False,
    )
    scene = generate_scene(2, cfg)
    centre = scene.positions[0, 0].astype(np.float64)
    assert np.allclose(scene.positions, centre)
    rows, cols = np.nonzero(scene.segmentations[1] == 1)
    d = np.stack([rows + 0.5, cols + 0.5], -1) - centre

    def turned(angle: float) -> np.ndarray:
        return d @ np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]).T - d

    forward, backward = scene.forward_flow[1][rows, cols], scene.backward_flow[1][rows, cols]
    errors = {sign: np.abs(forward - turned(sign * w)).max() for sign in (1.0, -1.0)}
    sign = min(errors, key=errors.get)
    assert errors[sign] < 1e-4 and errors[-sign] > 0.1
    assert np.abs(backward - turned(-sign * w)).max() < 1e-4
    assert np.abs(forward).max() > 0.5  # the far points really move


def _exact_boxes_and_interior_agreement(cfg: SceneConfig, direction: str) -> tuple[list, float]:
    """Scenes 0-2 of ``cfg``, each checked to carry the boxes of its segmentation, and the mean share of
    interior pixels that following the flow lands on the same instance."""
    scenes, interior = [], []
    for seed in range(3):
        scene = generate_scene(seed, cfg)
        for t in range(cfg.num_frames - 1):
            interior.append(_warp_agreement(scene, t, direction, interior_only=True))
        assert np.array_equal(scene.boxes, boxes_from_segmentation(scene.segmentations, scene.num_objects)[0])
        scenes.append(scene)
    return scenes, float(np.mean(interior))


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_rotating_and_scaling_objects_keep_exact_flow_boxes_and_stay_in_frame(direction):
    cfg = SceneConfig(
        height=64,
        width=64,
        num_frames=10,
        camera_pan=True,
        rotation_range=(0.0, 0.15),
        scale_range=(0.6, 1.6),
        textures=("stripes", "checker"),
    )
    scenes, interior = _exact_boxes_and_interior_agreement(cfg, direction)
    for scene in scenes:
        areas = [(scene.segmentations == i + 1).sum(axis=(1, 2)) for i in range(scene.num_objects)]
        assert any(a[-1] != a[0] for a in areas)  # sizes change over the video
    assert interior > 0.97  # sub-pixel rounding of rotated interiors; rigid objects are exact


def test_camera_zoom_flow_is_the_known_radial_field_of_a_static_scene():
    """Static objects, no pan: every pixel's flow is (s_t' / s_t - 1)(p - c) with the zoom s_t = z^(t/(T-1))
    in or out; the frame at magnification 1 is the unzoomed scene's."""
    h, w, num_t, z = 48, 64, 6, 1.5
    plain = SceneConfig(height=h, width=w, num_frames=num_t, speed_range=(0.0, 0.0))
    cfg = SceneConfig(height=h, width=w, num_frames=num_t, speed_range=(0.0, 0.0), zoom_range=(z, z))
    rows, cols = np.mgrid[0:h, 0:w]
    from_center = np.stack([rows + 0.5 - h / 2, cols + 0.5 - w / 2], -1)
    directions = set()
    for seed in range(4):
        zoomed, still = generate_scene(seed, cfg), generate_scene(seed, plain)
        growth = (zoomed.positions[-1, 0, 0] - h / 2) / (zoomed.positions[0, 0, 0] - h / 2)
        zoom_in = growth > 1
        directions.add(zoom_in)
        assert growth == pytest.approx(z if zoom_in else 1 / z, rel=1e-4)
        unzoomed = 0 if zoom_in else num_t - 1
        np.testing.assert_array_equal(zoomed.video[unzoomed], still.video[unzoomed])
        scale = z ** (np.arange(num_t) / (num_t - 1) if zoom_in else 1 - np.arange(num_t) / (num_t - 1))
        for t in range(num_t - 1):
            np.testing.assert_allclose(zoomed.forward_flow[t], (scale[t + 1] / scale[t] - 1) * from_center, atol=1e-4)
            np.testing.assert_allclose(
                zoomed.backward_flow[t + 1], (scale[t] / scale[t + 1] - 1) * from_center, atol=1e-4
            )
        assert np.all(zoomed.forward_flow[-1] == 0) and np.all(zoomed.backward_flow[0] == 0)
    assert directions == {True, False}


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_zooming_camera_with_moving_objects_keeps_flow_and_boxes_exact(direction):
    cfg = SceneConfig(height=64, width=64, num_frames=10, camera_pan=True, zoom_range=(1.2, 1.6))
    _, interior = _exact_boxes_and_interior_agreement(cfg, direction)
    assert interior > 0.97


def test_zoom_range_below_one_is_refused():
    with pytest.raises(ValueError, match="zoom_range"):
        SceneConfig(zoom_range=(0.8, 1.2))


REID = SceneConfig(height=120, width=160, num_frames=60, min_objects=2, max_objects=4)


def test_occluder_pillar_is_static_hides_objects_whole_and_leaves_the_rest_of_the_scene_unchanged():
    plain = generate_scene(3, REID)
    scene = generate_scene(3, dataclasses.replace(REID, occluder=True))
    changed = (scene.video != plain.video).any(axis=(0, 1, 3))  # columns the pillar covers
    columns = np.flatnonzero(changed)
    assert columns.size and np.array_equal(columns, np.arange(columns[0], columns[-1] + 1))
    pillar = scene.video[:, :, columns]
    assert (pillar == pillar[:1]).all() and not scene.segmentations[:, :, columns].any()
    assert not scene.forward_flow[:, :, columns].any() and not scene.backward_flow[:, :, columns].any()
    outside = np.ones(REID.width, bool)
    outside[columns] = False
    np.testing.assert_array_equal(scene.video[:, :, outside], plain.video[:, :, outside])
    np.testing.assert_array_equal(scene.segmentations[:, :, outside], plain.segmentations[:, :, outside])
    hidden = sum(comebacks(generate_scene(s, dataclasses.replace(REID, occluder=True)).visible) for s in range(10))
    assert hidden >= 5  # objects do pass behind it whole and come out again


def test_exits_objects_leave_the_view_whole_and_come_back_with_exact_ground_truth():
    config = dataclasses.replace(REID, exits=True)
    scenes = [generate_scene(s, config) for s in range(10)]
    assert sum(comebacks(s.visible) for s in scenes) >= 5
    assert sum(comebacks(generate_scene(s, REID).visible) for s in range(10)) < sum(
        comebacks(s.visible) for s in scenes
    )
    for scene in scenes[:3]:
        boxes, visible = boxes_from_segmentation(scene.segmentations, scene.num_objects)
        np.testing.assert_array_equal(scene.visible, visible)
        np.testing.assert_allclose(scene.boxes, boxes, atol=1e-6)
        for t in range(REID.num_frames - 1):
            agreement = _warp_agreement(scene, t, "forward", interior_only=True)
            assert agreement > 0.99 or (np.isnan(agreement) and scene.visible[t].sum() <= 1), (t, agreement)
