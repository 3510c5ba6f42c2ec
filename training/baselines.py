"""Non-learned baselines, producing id maps for the same evaluation as SAVi (``training.metrics``).

All follow the mIoU convention: object ``i`` (0-based) is predicted with id ``i + 1``, 0 = background;
unconditioned objects are never predicted (their mask stays empty).

* :func:`static_box_baseline` — "nothing moves": every frame repeats the first-frame boxes.
* :func:`flow_kmeans_com_baseline` — the paper's "Flow k-Means + Center of Mass" (Sec. 4.3, Table 1b):
  k-means on the optical flow enriched with pixel positions, cluster centres initialised from the
  objects' centre-of-mass coordinates. The paper gives no further detail; what is inferred is listed in
  that function's docstring.
* :func:`csrt_baselines` — OpenCV's CSRT box tracker per object, its boxes painted as masks or, with
  GrabCut, the foreground found inside each box.
* :func:`feature_prototype_model` — frozen EfficientNet-Lite0 features, each first-frame box pooled into
  a prototype, every pixel given to its nearest prototype (background prototypes from the scene), inside
  the Tracker's window around each object's last box: no training. Run through the Tracker like SAVi.
"""

from __future__ import annotations

import torch
from torch import Tensor

from savi_core.model.config import prototype_config
from savi_core.model.savi import SAVi

#: Method name of the feature-prototype baseline in evaluation results.
FEATURE_PROTOTYPE = "feature_prototype"


def feature_prototype_model(resolution: tuple[int, int] = (128, 160)) -> SAVi:
    """The untrained prototype model: nearest prototype in the raw backbone space, prototypes fixed,
    no spatial prior (``PrototypeCorrector.make_neutral``); a trained prototype model starts from it."""
    model = SAVi(prototype_config(resolution))
    model.corrector.make_neutral()
    return model.eval()


def _pixel_centres(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Normalised (y, x) of pixel centres, ``[H]`` and ``[W]``: pixel r covers [r/H, (r+1)/H)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    return ys, xs


def _conditioned_bool(conditioned: Tensor, batch: int, num_objects: int) -> Tensor:
    if tuple(conditioned.shape) != (batch, num_objects):
        raise ValueError(f"conditioned must be [B,N] = {(batch, num_objects)}, got {tuple(conditioned.shape)}")
    return conditioned > 0.5 if conditioned.dtype.is_floating_point else conditioned.bool()


def static_box_baseline(
    first_frame_boxes: Tensor,
    conditioned: Tensor,
    num_frames: int,
    height: int,
    width: int,
    start_frames: Tensor | None = None,
) -> Tensor:
    """Paint each conditioned object's first-frame box in every frame, int64 ``[B, T, H, W]``.

    A pixel belongs to a box when its centre lies in [ymin, ymax) x [xmin, xmax) (so a box of whole
    pixels reproduces them exactly). Where boxes overlap the smaller box wins (ties: lower index):
    small objects in front of large ones would otherwise vanish entirely. ``start_frames`` ``[B, N]``
    (default all 0): the frame on which each object's box is given (the box then is that frame's); it is
    painted from there on.
    """
    if first_frame_boxes.dim() != 3 or first_frame_boxes.shape[-1] != 4:
        raise ValueError(f"first_frame_boxes must be [B,N,4] yxyx, got {tuple(first_frame_boxes.shape)}")
    if min(num_frames, height, width) < 1:
        raise ValueError(f"num_frames, height, width must be >= 1, got {(num_frames, height, width)}")
    batch, num_objects = first_frame_boxes.shape[:2]
    active = _conditioned_bool(conditioned, batch, num_objects).to(first_frame_boxes.device)
    boxes = first_frame_boxes.float()
    ys, xs = _pixel_centres(height, width, boxes.device)
    ymin, xmin, ymax, xmax = (boxes[..., k, None, None] for k in range(4))  # [B, N, 1, 1]
    inside = (ys[:, None] >= ymin) & (ys[:, None] < ymax) & (xs[None, :] >= xmin) & (xs[None, :] < xmax)
    inside &= active[:, :, None, None]  # [B, N, H, W]
    area = ((ymax - ymin) * (xmax - xmin)).expand_as(inside)

    def paint(shown: Tensor) -> Tensor:
        owner = torch.where(shown, area, torch.full_like(area, float("inf"))).argmin(dim=1)  # [B, H, W]
        return torch.where(shown.any(dim=1), owner + 1, torch.zeros_like(owner))

    if start_frames is None:
        return paint(inside)[:, None].expand(batch, num_frames, height, width).contiguous()
    start = start_frames.to(inside.device)[:, :, None, None]
    return torch.stack([paint(inside & (start <= t)) for t in range(num_frames)], dim=1)


def _lloyd(features: Tensor, centres: Tensor, active: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Batched k-means: ``features [B,P,F]``, ``centres [B,K,F]``, ``active [B,K]`` -> (assignment, centres).

    Inactive clusters never receive points; a cluster that empties keeps its previous centre.
    """

    def assign(current: Tensor) -> Tensor:
        return torch.cdist(features, current).masked_fill(~active[:, None, :], float("inf")).argmin(dim=2)

    for _ in range(iterations):
        assignment = assign(centres)
        index = assignment[..., None]
        sums = torch.zeros_like(centres).scatter_add_(1, index.expand_as(features), features)
        counts = torch.zeros_like(centres[..., :1]).scatter_add_(1, index, torch.ones_like(features[..., :1]))
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return assign(centres), centres


def flow_kmeans_com_baseline(
    flow: Tensor,
    first_frame_centers: Tensor,
    conditioned: Tensor,
    num_clusters: int,
    *,
    iterations: int = 10,
    position_weight: float = 1.0,
    seed: int = 0,
) -> Tensor:
    """Per-frame k-means on (flow, position), clusters seeded at the objects' centres of mass.

    ``flow [B,T,H,W,2]`` in pixels (d_row, d_col); ``first_frame_centers [B,N,2]`` normalised (y, x);
    ``conditioned [B,N]``; ``num_clusters = K >= N``. Returns int64 ``[B,T,H,W]`` ids.

    Inferred details (the paper only says "k-means clustering to the optical flow signal (enriched with
    pixel position information) where we use the center of mass coordinates of objects to initialize
    the cluster centers"):

    * Pixel feature: (flow / max flow magnitude of that frame, position_weight * normalised (y, x)).
      Dividing by the frame's largest motion makes flow and position comparable at any resolution.
    * Clusters 0..N-1 belong to the objects: cluster i starts at object i's centre of mass, its flow
      part being the flow at that pixel, and its pixels are predicted as id i+1. Unconditioned objects
      get no cluster. The remaining K-N clusters soak up background (id 0); they start at positions
      drawn with ``seed`` and zero flow (a static background is the natural prior; starting from a
      random pixel's flow lets a background cluster land on, and steal, an object). With K == N every
      pixel goes to some object, as a k-means seeded only with object centres would.
    * Only the first frame has centres of mass, so frame t starts from frame t-1's converged centres;
      this keeps cluster i bound to object i through time (needed for the no-matching mIoU).
    """
    if flow.dim() != 5 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be [B,T,H,W,2] (d_row, d_col), got {tuple(flow.shape)}")
    batch, num_frames, height, width = flow.shape[:4]
    if first_frame_centers.dim() != 3 or first_frame_centers.shape[0] != batch or first_frame_centers.shape[2] != 2:
        raise ValueError(f"first_frame_centers must be [B={batch},N,2] (y, x), got {tuple(first_frame_centers.shape)}")
    num_objects = first_frame_centers.shape[1]
    if num_clusters < num_objects:
        raise ValueError(f"num_clusters ({num_clusters}) must be >= the number of objects N ({num_objects})")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    device = flow.device
    object_active = _conditioned_bool(conditioned, batch, num_objects).to(device)
    active = torch.cat(
        [object_active, torch.ones(batch, num_clusters - num_objects, dtype=torch.bool, device=device)], 1
    )
    labels = torch.cat([torch.arange(1, num_objects + 1), torch.zeros(num_clusters - num_objects, dtype=torch.int64)])
    labels = labels.to(device)

    ys, xs = _pixel_centres(height, width, device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(1, height * width, 2)
    positions = (position_weight * grid).expand(batch, -1, -1)

    def frame_features(t: int) -> Tensor:
        motion = flow[:, t].reshape(batch, height * width, 2).float()
        scale = torch.linalg.vector_norm(motion, dim=-1).amax(dim=1).clamp_min(1e-6)
        return torch.cat([motion / scale[:, None, None], positions], dim=-1)  # [B, P, 4]

    features = frame_features(0)
    centers = first_frame_centers.to(device=device, dtype=torch.float32).clamp(0.0, 1.0 - 1e-6)
    pixel = (centers[..., 0] * height).long() * width + (centers[..., 1] * width).long()  # [B, N]
    object_flow = features[..., :2].gather(1, pixel[..., None].expand(-1, -1, 2))
    object_centres = torch.cat([object_flow, position_weight * centers], dim=-1)
    generator = torch.Generator().manual_seed(seed)
    background_pixels = torch.randint(height * width, (batch, num_clusters - num_objects), generator=generator)
    background_positions = positions.gather(1, background_pixels.to(device)[..., None].expand(-1, -1, 2))
    background_centres = torch.cat([torch.zeros_like(background_positions), background_positions], dim=-1)
    centres = torch.cat([object_centres, background_centres], dim=1)

    frames = []
    for t in range(num_frames):
        if t > 0:
            features = frame_features(t)
        assignment, centres = _lloyd(features, centres, active, iterations)
        ids = torch.where(active.gather(1, assignment), labels[assignment], torch.zeros_like(assignment))
        frames.append(ids.view(batch, height, width))
    return torch.stack(frames, dim=1)


def csrt_baselines(
    video: Tensor,
    first_frame_boxes: Tensor,
    conditioned: Tensor,
    grabcut_iterations: int = 0,
    start_frames: Tensor | None = None,
) -> dict[str, tuple[Tensor, float]]:
    """What a user would pick instead of a learned tracker: OpenCV's CSRT tracker (opencv-contrib) per
    object, started from the first-frame box (or, with ``start_frames [B, N]``, from the box given on
    that frame: the object is tracked from there on). ``csrt_box``: each tracked box painted as the object's mask;
    with ``grabcut_iterations`` > 0 also ``csrt_grabcut``: the foreground that OpenCV's GrabCut finds inside
    each tracked box (started from the box, that many iterations; a box GrabCut cannot work on, e.g. one
    covering the whole image, is painted whole). Smaller boxes on top, as in :func:`static_box_baseline`.
    ``video [B,T,3,H,W]`` in [0, 1]; returns each method's id maps ``[B,T,H,W]`` and mean milliseconds per
    frame (all objects of a frame together; GrabCut's include the tracking), from one tracking pass."""
    import time

    import cv2
    import numpy as np

    batch, frames, _, height, width = video.shape
    boxes_out = torch.zeros(batch, frames, height, width, dtype=torch.long)
    cut_out = torch.zeros_like(boxes_out)
    active = _conditioned_bool(conditioned, batch, first_frame_boxes.shape[1])
    starts = torch.zeros(active.shape, dtype=torch.long) if start_frames is None else start_frames.cpu().long()
    images = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    tracking, cutting, steps = 0.0, 0.0, 0
    for b in range(batch):
        trackers: dict[int, object] = {}
        boxes: dict[int, tuple[float, float, float, float]] = {}
        for t in range(frames):
            frame = np.ascontiguousarray(images[b, t][..., ::-1])  # OpenCV takes BGR
            start = time.perf_counter()
            for i, tracker in trackers.items():  # objects started on an earlier frame
                try:
                    ok, box = tracker.update(frame)
                except cv2.error:
                    ok = False
                if ok:
                    boxes[i] = tuple(float(v) for v in box)
            for i in torch.nonzero(active[b] & (starts[b] == t)).flatten().tolist():
                ymin, xmin, ymax, xmax = first_frame_boxes[b, i].tolist()
                x, y = xmin * width, ymin * height
                w, h = (xmax - xmin) * width, (ymax - ymin) * height
                boxes[i] = (x, y, w, h)
                tracker = cv2.TrackerCSRT_create()
                try:  # CSRT refuses boxes of a pixel or two: such an object keeps its first box
                    tracker.init(frame, (int(round(x)), int(round(y)), max(2, int(round(w))), max(2, int(round(h)))))
                except cv2.error:
                    continue
                trackers[i] = tracker
            tracking += time.perf_counter() - start
            steps += 1
            for i, (x, y, w, h) in sorted(boxes.items(), key=lambda kv: -kv[1][2] * kv[1][3]):
                r0, c0 = max(0, int(round(y))), max(0, int(round(x)))
                r1, c1 = min(height, int(round(y + h))), min(width, int(round(x + w)))
                if r1 <= r0 or c1 <= c0:
                    continue
                boxes_out[b, t, r0:r1, c0:c1] = i + 1
                if grabcut_iterations > 0:
                    start = time.perf_counter()
                    inside = _grabcut(frame, r0, c0, r1, c1, grabcut_iterations)
                    cutting += time.perf_counter() - start
                    region = cut_out[b, t, r0:r1, c0:c1]
                    if inside is None:
                        region[...] = i + 1
                    else:
                        region[torch.from_numpy(inside)] = i + 1
    steps = max(steps, 1)
    out = {"csrt_box": (boxes_out, 1000.0 * tracking / steps)}
    if grabcut_iterations > 0:
        out["csrt_grabcut"] = (cut_out, 1000.0 * (tracking + cutting) / steps)
    return out


def _grabcut(frame, r0: int, c0: int, r1: int, c1: int, iterations: int):
    """GrabCut's foreground (definite or probable) inside the box as a bool array, or None where none is
    possible (OpenCV needs background pixels outside the box)."""
    import cv2
    import numpy as np

    mask = np.zeros(frame.shape[:2], np.uint8)
    try:
        cv2.grabCut(
            frame,
            mask,
            (c0, r0, c1 - c0, r1 - r0),
            np.zeros((1, 65), np.float64),
            np.zeros((1, 65), np.float64),
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return None
    return np.isin(mask[r0:r1, c0:c1], (cv2.GC_FGD, cv2.GC_PR_FGD))
