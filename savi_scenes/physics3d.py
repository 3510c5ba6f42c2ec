"""A second, independent scene family: 3D objects dropped and thrown onto a textured floor, simulated
and rendered by pybullet's CPU renderer (MOVi-style physics, no GL, no display).

Ground truth is exact: instance ids from the renderer's segmentation buffer, metric depth from its
depth buffer, and optical flow from depth and each body's rigid motion between frames together with
the camera's (a pixel of body k at frame t is back-projected with its depth and the camera of t,
moved by T_k(t+1) T_k(t)^-1, and projected with the camera of t+1; the floor and the sky are static).
Flow channels are (d_row, d_col) in pixels, boxes normalised [ymin, xmin, ymax, xmax], as in
``savi_scenes.generator``; a ``Scene`` of either family has the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from savi_scenes.generator import BaseSceneConfig, Scene

#: Object families: primitives built from geometry, procedurally made meshes, and toy-like meshes.
OBJECT_FAMILIES = ("primitives", "meshes", "toys")
FLOOR_FAMILIES = ("plain", "checker", "image")
_TOYS = ("duck_vhacd.urdf", "teddy_vhacd.urdf", "soccerball.urdf", "sphere2.urdf", "cube_small.urdf")
_FLOOR_IMAGES = ("checker_grid.jpg", "cube.png", "duckCM.png", "checker_blue.png")
_NEAR, _FAR, _FOV = 0.1, 20.0, 45.0
_SKY_DEPTH = _FAR


@dataclass
class PhysicsSceneConfig(BaseSceneConfig):
    """What a physics scene looks like; sizes in metres."""

    objects: tuple[str, ...] = field(default=OBJECT_FAMILIES)
    floors: tuple[str, ...] = field(default=FLOOR_FAMILIES)
    size_range: tuple[float, float] = (0.2, 0.45)
    moving_camera: bool = True
    steps_per_frame: int = 8  # 240 Hz physics: 30 frames per second
    # Re-identification family: objects that vanish and come back.
    occluder: bool = False  # a static pillar (background, not an object) between the camera and the objects
    exits: bool = False  # the camera pans sideways and back, so objects leave the view and return

    def __post_init__(self) -> None:
        for name in ("height", "width", "num_frames", "min_objects", "max_objects", "steps_per_frame"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"PhysicsSceneConfig.{name} must be a positive int, got {value!r}")
        if not self.min_objects <= self.max_objects <= 254:
            raise ValueError(
                "PhysicsSceneConfig needs min_objects <= max_objects <= 254, got "
                f"{self.min_objects}..{self.max_objects}"
            )
        for name, known in (("objects", OBJECT_FAMILIES), ("floors", FLOOR_FAMILIES)):
            values = tuple(getattr(self, name))
            if not values or any(v not in known for v in values):
                raise ValueError(f"PhysicsSceneConfig.{name} must be a non-empty subset of {known}, got {values}")
            setattr(self, name, values)
        lo, hi = (float(v) for v in self.size_range)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"PhysicsSceneConfig.size_range must satisfy 0 < low <= high <= 1, got {self.size_range}")
        self.size_range = (lo, hi)
        self.moving_camera = bool(self.moving_camera)
        self.occluder = bool(self.occluder)
        self.exits = bool(self.exits)


@dataclass
class Camera:
    """A pinhole camera: OpenGL view and projection matrices (row-major 4x4)."""

    view: np.ndarray
    projection: np.ndarray

    @classmethod
    def look_at(cls, eye, target, width: int, height: int) -> "Camera":
        import pybullet as p

        view = np.array(p.computeViewMatrix(list(map(float, eye)), list(map(float, target)), [0, 0, 1])).reshape(4, 4).T
        proj = np.array(p.computeProjectionMatrixFOV(_FOV, width / height, _NEAR, _FAR)).reshape(4, 4).T
        return cls(view, proj)

    def flat(self) -> tuple[list[float], list[float]]:
        return self.view.T.reshape(-1).tolist(), self.projection.T.reshape(-1).tolist()

    def unproject(self, depth: np.ndarray) -> np.ndarray:
        """World points ``[H,W,3]`` of every pixel centre at its metric ``depth`` (distance along the axis)."""
        h, w = depth.shape
        x_ndc = (np.arange(w) + 0.5) / w * 2.0 - 1.0
        y_ndc = 1.0 - (np.arange(h) + 0.5) / h * 2.0
        eye = np.empty((h, w, 4))
        eye[..., 0] = x_ndc[None, :] * depth / self.projection[0, 0]
        eye[..., 1] = y_ndc[:, None] * depth / self.projection[1, 1]
        eye[..., 2] = -depth
        eye[..., 3] = 1.0
        return (eye @ np.linalg.inv(self.view).T)[..., :3]

    def project(self, points: np.ndarray, height: int, width: int) -> np.ndarray:
        """Pixel coordinates ``[..., 2]`` (row, col; pixel centres at +0.5) of world points ``[..., 3]``."""
        homo = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
        clip = homo @ (self.projection @ self.view).T
        ndc = clip[..., :3] / np.where(np.abs(clip[..., 3:4]) < 1e-9, 1e-9, clip[..., 3:4])
        col = (ndc[..., 0] + 1.0) / 2.0 * width
        row = (1.0 - ndc[..., 1]) / 2.0 * height
        return np.stack([row, col], -1)


def pose_matrix(position, orientation) -> np.ndarray:
    import pybullet as p

    m = np.eye(4)
    m[:3, :3] = np.array(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    m[:3, 3] = position
    return m


def metric_depth(buffer: np.ndarray) -> np.ndarray:
    """OpenGL's non-linear depth buffer -> distance along the optical axis."""
    return _FAR * _NEAR / (_FAR - (_FAR - _NEAR) * buffer)


def rigid_flow(
    depth: np.ndarray,
    ids: np.ndarray,
    poses_from: dict[int, np.ndarray],
    poses_to: dict[int, np.ndarray],
    cam_from: Camera,
    cam_to: Camera,
) -> np.ndarray:
    """Flow ``[H,W,2]`` (d_row, d_col) from one frame to another: every pixel back-projected with its
    depth, moved with its body (``ids``; bodies missing from the pose maps are static), re-projected."""
    h, w = depth.shape
    points = cam_from.unproject(depth)
    for body, pose in poses_from.items():
        inside = ids == body
        if inside.any():
            motion = poses_to[body] @ np.linalg.inv(pose)
            pts = points[inside]
            points[inside] = pts @ motion[:3, :3].T + motion[:3, 3]
    target = cam_to.project(points, h, w)
    rows, cols = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    return np.stack([target[..., 0] - rows, target[..., 1] - cols], -1).astype(np.float32)


class PhysicsWorld:
    """One pybullet DIRECT client: a floor, bodies, and the renderer's buffers for a camera."""

    def __init__(self) -> None:
        import pybullet as p
        import pybullet_data

        self.p = p
        self.client = p.connect(p.DIRECT)
        self.data = pybullet_data.getDataPath()
        p.setAdditionalSearchPath(self.data, physicsClientId=self.client)
        p.setGravity(0, 0, -9.81, physicsClientId=self.client)
        self.floor = p.loadURDF("plane.urdf", physicsClientId=self.client)
        self.light = ([0.5, 0.3, 1.0], [1.0, 1.0, 1.0])

    def close(self) -> None:
        self.p.disconnect(self.client)

    def box(self, half_extents, position, rgba=(1, 0, 0, 1), mass: float = 1.0) -> int:
        p, c = self.p, self.client
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=list(half_extents), physicsClientId=c)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=list(rgba), physicsClientId=c)
        return p.createMultiBody(mass, col, vis, list(position), physicsClientId=c)

    def render(self, camera: Camera, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RGB uint8 ``[H,W,3]``, body id per pixel ``[H,W]`` (-1 = sky), metric depth ``[H,W]``)."""
        p = self.p
        view, proj = camera.flat()
        _, _, rgba, depth, seg = p.getCameraImage(
            width,
            height,
            view,
            proj,
            renderer=p.ER_TINY_RENDERER,
            shadow=1,
            lightDirection=self.light[0],
            lightColor=self.light[1],
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, np.uint8).reshape(height, width, 4)[..., :3].copy()
        ids = np.asarray(seg, np.int64).reshape(height, width)
        depth = metric_depth(np.asarray(depth, np.float64).reshape(height, width))
        depth[ids < 0] = _SKY_DEPTH
        return rgb, ids, depth

    def pose(self, body: int) -> np.ndarray:
        return pose_matrix(*self.p.getBasePositionAndOrientation(body, physicsClientId=self.client))


def _random_object(
    world: PhysicsWorld, rng: np.random.Generator, family: str, size: float, position: np.ndarray
) -> int:
    p, c = world.p, world.client
    rgba = [*rng.uniform(0.05, 1.0, 3), 1.0]
    if family == "primitives":
        kind = str(rng.choice(("box", "sphere", "cylinder", "capsule")))
        r = size / 2.0
        if kind == "box":
            half = (rng.uniform(0.4, 1.0, 3) * r).tolist()
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=c)
        elif kind == "sphere":
            col = p.createCollisionShape(p.GEOM_SPHERE, radius=r, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=r, rgbaColor=rgba, physicsClientId=c)
        else:
            geom = p.GEOM_CYLINDER if kind == "cylinder" else p.GEOM_CAPSULE
            length = float(rng.uniform(0.8, 2.0)) * r
            col = p.createCollisionShape(geom, radius=r * 0.6, height=length, physicsClientId=c)
            vis = p.createVisualShape(geom, radius=r * 0.6, length=length, rgbaColor=rgba, physicsClientId=c)
        orientation = p.getQuaternionFromEuler(rng.uniform(0, np.pi, 3).tolist())
        return p.createMultiBody(
            float(rng.uniform(0.2, 2.0)), col, vis, position.tolist(), orientation, physicsClientId=c
        )
    if family == "meshes":
        index = int(rng.integers(0, 1000))
        name = f"random_urdfs/{index:03d}/{index:03d}.urdf"
        scale = size / 0.1
    else:
        name = str(rng.choice(_TOYS))
        scale = (
            size
            / {
                "duck_vhacd.urdf": 0.1,
                "teddy_vhacd.urdf": 0.2,
                "soccerball.urdf": 1.0,
                "sphere2.urdf": 1.0,
                "cube_small.urdf": 0.05,
            }[name]
        )
    orientation = p.getQuaternionFromEuler(rng.uniform(0, np.pi, 3).tolist())
    body = p.loadURDF(name, position.tolist(), orientation, globalScaling=float(scale), physicsClientId=c)
    if family == "meshes" or rng.random() < 0.5:
        p.changeVisualShape(body, -1, rgbaColor=rgba, physicsClientId=c)
    return body


def _dress_floor(world: PhysicsWorld, rng: np.random.Generator, family: str) -> None:
    p, c = world.p, world.client
    if family == "plain":
        p.changeVisualShape(world.floor, -1, rgbaColor=[*rng.uniform(0.1, 0.9, 3), 1.0], physicsClientId=c)
        return
    name = "checker_blue.png" if family == "checker" else str(rng.choice(_FLOOR_IMAGES))
    texture = p.loadTexture(name, physicsClientId=c)
    p.changeVisualShape(
        world.floor, -1, textureUniqueId=texture, rgbaColor=[*rng.uniform(0.6, 1.0, 3), 1.0], physicsClientId=c
    )


def _camera_path(rng: np.random.Generator, cfg: PhysicsSceneConfig) -> list[Camera]:
    distance = float(rng.uniform(1.3, 2.1))
    elevation = float(rng.uniform(np.radians(30), np.radians(65)))
    azimuth = float(rng.uniform(0, 2 * np.pi))
    spin = float(rng.uniform(-0.02, 0.02)) if cfg.moving_camera else 0.0
    drift = rng.uniform(-0.01, 0.01, 2) if cfg.moving_camera else np.zeros(2)
    # A pan sweeps the view one and a half frame widths to one side and back, over half the video.
    pan = float(rng.choice((-1.0, 1.0))) * 1.5 * distance * np.tan(np.radians(_FOV) / 2) if cfg.exits else 0.0
    cams = []
    for t in range(cfg.num_frames):
        a = azimuth + spin * t
        side = np.array([-np.sin(a), np.cos(a), 0.0])  # the camera's horizontal right (or left)
        sweep = np.sin(np.pi * min(2.0 * t / max(cfg.num_frames - 1, 1), 1.0)) * pan
        target = np.array([drift[0] * t, drift[1] * t, 0.0]) + sweep * side
        eye = target + distance * np.array(
            [np.cos(elevation) * np.cos(a), np.cos(elevation) * np.sin(a), np.sin(elevation)]
        )
        cams.append(Camera.look_at(eye, target, cfg.width, cfg.height))
    return cams


def _add_pillar(world: PhysicsWorld, rng: np.random.Generator, camera: Camera) -> None:
    """A static grey pillar a quarter of the way from the scene's centre to the camera, taller than the objects
    fly and wide enough to hide any of them whole; it is background (no id)."""
    eye = np.linalg.inv(camera.view)[:3, 3]
    towards = np.array([eye[0], eye[1], 0.0])
    towards /= max(float(np.linalg.norm(towards)), 1e-9)
    base = towards * float(np.linalg.norm(eye[:2])) / 4.0 + np.cross([0.0, 0.0, 1.0], towards) * rng.uniform(-0.2, 0.2)
    grey = float(rng.uniform(0.3, 0.7))
    body = world.box((0.1, 0.1, 0.6), [base[0], base[1], 0.6], rgba=(grey, grey, grey, 1.0), mass=0.0)
    yaw = float(np.arctan2(towards[1], towards[0]))
    world.p.resetBasePositionAndOrientation(
        body, [base[0], base[1], 0.6], world.p.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=world.client
    )


def generate_physics_scene(seed: int, config: PhysicsSceneConfig | None = None) -> Scene:
    """Simulate and render scene ``seed``; the same (seed, config) always gives the same scene."""
    cfg = config if config is not None else PhysicsSceneConfig()
    rng = np.random.default_rng(int(seed))
    h, w, num_t = cfg.height, cfg.width, cfg.num_frames
    world = PhysicsWorld()
    try:
        world.light = (rng.uniform([-1, -1, 0.6], [1, 1, 1.5]).tolist(), rng.uniform(0.7, 1.0, 3).tolist())
        _dress_floor(world, rng, str(rng.choice(cfg.floors)))
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        bodies, classes = [], []
        for i in range(n):
            family = str(rng.choice(cfg.objects))
            size = float(rng.uniform(*cfg.size_range))
            position = np.array([*rng.uniform(-0.5, 0.5, 2), rng.uniform(0.15, 0.8) + 0.4 * i / max(n, 1)])
            body = _random_object(world, rng, family, size, position)
            world.p.resetBaseVelocity(
                body,
                [*rng.uniform(-1.0, 1.0, 2), float(rng.uniform(-0.5, 1.0))],
                rng.uniform(-3, 3, 3).tolist(),
                physicsClientId=world.client,
            )
            bodies.append(body)
            classes.append(family)
        cameras = _camera_path(rng, cfg)
        if cfg.occluder:
            _add_pillar(world, rng, cameras[0])
        frames = np.empty((num_t, h, w, 3), np.uint8)
        ids = np.empty((num_t, h, w), np.int64)
        depth = np.empty((num_t, h, w))
        poses: list[dict[int, np.ndarray]] = []
        for t in range(num_t):
            if t:
                for _ in range(cfg.steps_per_frame):
                    world.p.stepSimulation(physicsClientId=world.client)
            frames[t], ids[t], depth[t] = world.render(cameras[t], h, w)
            poses.append({b: world.pose(b) for b in bodies})
    finally:
        world.close()
    return _scene_from_buffers(frames, ids, depth, poses, cameras, bodies, classes)


def _scene_from_buffers(
    frames: np.ndarray,
    ids: np.ndarray,
    depth: np.ndarray,
    poses: list[dict[int, np.ndarray]],
    cameras: list[Camera],
    bodies: list[int],
    classes: list[str],
) -> Scene:
    num_t, h, w = ids.shape
    seg = np.zeros((num_t, h, w), np.uint8)
    for i, body in enumerate(bodies):
        seg[ids == body] = i + 1
    forward = np.zeros((num_t, h, w, 2), np.float32)
    backward = np.zeros((num_t, h, w, 2), np.float32)
    for t in range(num_t):
        if t + 1 < num_t:
            forward[t] = rigid_flow(depth[t], ids[t], poses[t], poses[t + 1], cameras[t], cameras[t + 1])
        if t > 0:
            backward[t] = rigid_flow(depth[t], ids[t], poses[t], poses[t - 1], cameras[t], cameras[t - 1])
    centres = np.stack([np.stack([cameras[t].project(poses[t][b][:3, 3], h, w) for b in bodies]) for t in range(num_t)])
    return Scene.labelled(frames, seg, forward, backward, classes, centres, np.zeros((num_t, 2)))
