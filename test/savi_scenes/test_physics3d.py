"""The 3D physics family: exact flow on cases with a known answer, deterministic scenes, sane ground truth."""

import numpy as np
import pytest

pytest.importorskip("pybullet")

from savi_scenes.physics3d import (
    Camera,
    PhysicsSceneConfig,
    PhysicsWorld,
    generate_physics_scene,  # noqa: E402
    rigid_flow,
)
from test.savi_scenes.conftest import comebacks

H = W = 64
CAM_HEIGHT = 3.0


def top_down(x: float = 0.0, y: float = 0.0) -> Camera:
    """Looking straight down at (x, y) from CAM_HEIGHT (up vector +y, so image rows follow -y)."""
    import pybullet as p

    view = np.array(p.computeViewMatrix([x, y, CAM_HEIGHT], [x, y, 0.0], [0, 1, 0])).reshape(4, 4).T
    proj = np.array(p.computeProjectionMatrixFOV(45.0, 1.0, 0.1, 20.0)).reshape(4, 4).T
    return Camera(view, proj)


def focal_px() -> float:
    return (H / 2) / np.tan(np.radians(45.0) / 2)


def test_a_translating_box_flows_by_its_projected_displacement():
    world = PhysicsWorld()
    try:
        world.p.setGravity(0, 0, 0, physicsClientId=world.client)
        half = 0.2
        box = world.box([half, half, half], [0.0, 0.0, half], mass=0.0)
        cam = top_down()
        _, ids, depth = world.render(cam, H, W)
        before = world.pose(box)
        dx = 0.05  # metres along +x: columns grow
        world.p.resetBasePositionAndOrientation(box, [dx, 0.0, half], [0, 0, 0, 1], physicsClientId=world.client)
        after = world.pose(box)
        flow = rigid_flow(depth, ids, {box: before}, {box: after}, cam, cam)
    finally:
        world.close()
    top = ids == box
    assert top.sum() > 50
    expected_cols = dx * focal_px() / (CAM_HEIGHT - 2 * half)  # the top face is 2*half above the floor
    np.testing.assert_allclose(flow[top][:, 1], expected_cols, atol=0.02)
    np.testing.assert_allclose(flow[top][:, 0], 0.0, atol=0.02)
    np.testing.assert_allclose(flow[~top], 0.0, atol=1e-3)  # the floor does not move


def test_a_panning_camera_moves_the_static_floor_the_other_way():
    world = PhysicsWorld()
    try:
        cam0, cam1 = top_down(0.0, 0.0), top_down(0.0, 0.1)  # the camera moves 0.1 m along +y
        _, ids, depth = world.render(cam0, H, W)
        flow = rigid_flow(depth, ids, {}, {}, cam0, cam1)
    finally:
        world.close()
    # Image rows grow towards -y: the floor appears to move down the image by 0.1 m at CAM_HEIGHT.
    np.testing.assert_allclose(flow[..., 0], 0.1 * focal_px() / CAM_HEIGHT, atol=0.02)
    np.testing.assert_allclose(flow[..., 1], 0.0, atol=0.02)


def test_scenes_are_deterministic_with_consistent_ground_truth():
    cfg = PhysicsSceneConfig(height=48, width=64, num_frames=6, min_objects=2, max_objects=3)
    a, b = generate_physics_scene(3, cfg), generate_physics_scene(3, cfg)
    assert np.array_equal(a.video, b.video) and np.array_equal(a.forward_flow, b.forward_flow)
    assert a.video.shape == (6, 48, 64, 3) and a.segmentations.shape == (6, 48, 64)
    assert 2 <= a.num_objects <= 3 and set(a.classes) <= set(cfg.objects)
    for i in range(a.num_objects):
        vis = (a.segmentations == i + 1).any(axis=(1, 2))
        assert np.array_equal(vis, a.visible[:, i])
    assert np.all(a.forward_flow[-1] == 0) and np.all(a.backward_flow[0] == 0)
    # Forward flow of frame t, followed to frame t+1, lands on the same object most of the time.
    t = 2
    rows, cols = np.nonzero(a.segmentations[t] > 0)
    r1 = np.round(rows + a.forward_flow[t, rows, cols, 0]).astype(int)
    c1 = np.round(cols + a.forward_flow[t, rows, cols, 1]).astype(int)
    inside = (r1 >= 0) & (r1 < 48) & (c1 >= 0) & (c1 < 64)
    same = a.segmentations[t + 1, r1[inside], c1[inside]] == a.segmentations[t, rows[inside], cols[inside]]
    assert same.mean() > 0.8  # object boundaries and occlusions account for the rest


def test_bad_configs_are_refused_by_name():
    with pytest.raises(ValueError, match="objects"):
        PhysicsSceneConfig(objects=("spaceships",))
    with pytest.raises(ValueError, match="floors"):
        PhysicsSceneConfig(floors=())


def test_the_reid_family_hides_objects_behind_a_background_pillar_and_pans_them_out_of_view_and_back():
    base = dict(height=36, width=48, num_frames=30, min_objects=2, max_objects=3, moving_camera=False)
    plain = generate_physics_scene(5, PhysicsSceneConfig(**base))
    pillar = generate_physics_scene(5, PhysicsSceneConfig(**base, occluder=True))
    # The same objects and camera on the first frame (before any physics step); the pillar is drawn as
    # background (no id), and no object shows more of itself than without it.
    assert pillar.num_objects == plain.num_objects and pillar.segmentations.max() <= pillar.num_objects
    drawn = (pillar.video[0] != plain.video[0]).any(axis=-1) & (pillar.segmentations[0] == 0)
    assert drawn.mean() > 0.05
    assert (pillar.segmentations[0] > 0).sum() <= (plain.segmentations[0] > 0).sum()
    static = generate_physics_scene(5, PhysicsSceneConfig(**base))
    panning = [generate_physics_scene(s, PhysicsSceneConfig(**base, exits=True)) for s in range(5, 8)]
    assert comebacks(static.visible) == 0 and sum(comebacks(s.visible) for s in panning) >= 2
