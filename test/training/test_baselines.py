"""Baselines evaluated with the real metrics on tiny synthetic videos with exact ground truth."""

from __future__ import annotations

import pytest
import torch

from training.metrics import fg_ari, miou
from training.baselines import flow_kmeans_com_baseline, static_box_baseline

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pixel_box(r0: int, c0: int, r1: int, c1: int, h: int, w: int) -> list[float]:
    """Normalised yxyx box covering pixel rows r0..r1-1 and columns c0..c1-1."""
    return [r0 / h, c0 / w, r1 / h, c1 / w]


@pytest.mark.parametrize("device", DEVICES)
def test_static_box_baseline_is_perfect_without_motion(device: str) -> None:
    t, h, w = 4, 12, 16
    frame = torch.zeros(h, w, dtype=torch.long)
    frame[1:9, 1:11] = 1  # large rectangle
    frame[3:5, 4:7] = 2  # small rectangle in front of it
    frame[9:12, 12:16] = 3
    gt = frame.expand(1, t, h, w)
    boxes = torch.tensor([[pixel_box(1, 1, 9, 11, h, w), pixel_box(3, 4, 5, 7, h, w), pixel_box(9, 12, 12, 16, h, w)]])
    pred = static_box_baseline(boxes.to(device), torch.ones(1, 3, device=device), t, h, w)
    assert pred.shape == (1, t, h, w) and pred.dtype == torch.int64 and pred.device.type == device
    assert torch.equal(pred.cpu(), gt)
    assert float(miou(pred, gt.to(device), num_objects=3)[0]) == 1.0
    assert float(fg_ari(pred, gt.to(device))[0]) == 1.0


def test_static_box_baseline_skips_unconditioned_and_loses_moving_objects() -> None:
    t, h, w = 3, 8, 8
    boxes = torch.tensor([[pixel_box(0, 0, 2, 2, h, w), [-1.0, -1.0, -1.0, -1.0]]])
    pred = static_box_baseline(boxes, torch.tensor([[1.0, 0.0]]), t, h, w)
    assert int((pred == 2).sum()) == 0 and int((pred == 1).sum()) == t * 4
    # The object moves two pixels right per frame: the static box overlaps it less and less.
    gt = torch.zeros(1, t, h, w, dtype=torch.long)
    for f in range(t):
        gt[0, f, 0:2, 2 * f : 2 * f + 2] = 1
    assert float(miou(pred, gt, num_objects=1)[0]) == 0.0
    with pytest.raises(ValueError, match="conditioned"):
        static_box_baseline(boxes, torch.ones(1, 3), t, h, w)


def two_movers(
    t: int = 4, h: int = 16, w: int = 16, same_flow: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two 4x4 squares on a static background: one moving down, one moving left, 1 px per frame.

    Returns gt ids [1,T,H,W], forward flow [1,T,H,W,2] (d_row, d_col) and first-frame centres [1,2,2].
    """
    gt = torch.zeros(1, t, h, w, dtype=torch.long)
    flow = torch.zeros(1, t, h, w, 2)
    velocities = [(1, 0), (1, 0) if same_flow else (0, -1)]
    for f in range(t):
        for obj, ((r0, c0), (dr, dc)) in enumerate(zip([(2, 2), (9, 10)], velocities)):
            r, c = r0 + dr * f, c0 + dc * f
            gt[0, f, r : r + 4, c : c + 4] = obj + 1
            flow[0, f, r : r + 4, c : c + 4] = torch.tensor([float(dr), float(dc)])
    centres = torch.tensor([[[4.0 / h, 4.0 / w], [11.0 / h, 12.0 / w]]])
    return gt, flow, centres


@pytest.mark.parametrize("device", DEVICES)
def test_flow_kmeans_separates_two_translating_regions(device: str) -> None:
    gt, flow, centres = two_movers()
    pred = flow_kmeans_com_baseline(
        flow.to(device), centres.to(device), torch.ones(1, 2, device=device), num_clusters=3
    )
    assert pred.shape == gt.shape and pred.dtype == torch.int64 and pred.device.type == device
    assert float(fg_ari(pred, gt.to(device))[0]) == 1.0
    # Clusters are seeded at the centres of mass, so ids follow the conditioning (no matching needed).
    assert float(miou(pred, gt.to(device), num_objects=2)[0]) > 0.9
    # Without a background cluster (K == N) every pixel goes to an object: still separated, but the
    # background bleeds into the objects, which is why this baseline scores so low on mIoU.
    pure = flow_kmeans_com_baseline(flow, centres, torch.ones(1, 2), num_clusters=2)
    assert int((pure == 0).sum()) == 0 and float(fg_ari(pure, gt)[0]) == 1.0
    assert float(miou(pure, gt, num_objects=2)[0]) < 0.6


def test_flow_kmeans_uses_position_and_is_deterministic() -> None:
    gt, flow, centres = two_movers(same_flow=True)
    cond = torch.ones(1, 2)
    pred = flow_kmeans_com_baseline(flow, centres, cond, num_clusters=3, seed=3)
    assert float(fg_ari(pred, gt)[0]) == 1.0  # same motion: only position can tell them apart
    assert torch.equal(pred, flow_kmeans_com_baseline(flow, centres, cond, num_clusters=3, seed=3))
    # Without position the two identically moving squares merge into one cluster.
    merged = flow_kmeans_com_baseline(flow, centres, cond, num_clusters=3, position_weight=0.0)
    assert float(fg_ari(merged, gt)[0]) == 0.0


def test_flow_kmeans_unconditioned_objects_and_errors() -> None:
    gt, flow, centres = two_movers()
    pred = flow_kmeans_com_baseline(flow, centres, torch.tensor([[1.0, 0.0]]), num_clusters=3)
    assert int((pred == 2).sum()) == 0 and int((pred == 1).sum()) > 0
    nothing = flow_kmeans_com_baseline(flow, centres, torch.zeros(1, 2), num_clusters=2)
    assert int(nothing.count_nonzero()) == 0
    with pytest.raises(ValueError, match="num_clusters"):
        flow_kmeans_com_baseline(flow, centres, torch.ones(1, 2), num_clusters=1)
    with pytest.raises(ValueError, match="flow"):
        flow_kmeans_com_baseline(flow[..., :1], centres, torch.ones(1, 2), num_clusters=3)


def test_csrt_follows_a_moving_square():
    """A textured square sliding right by 2 px a frame: CSRT's painted box follows it."""
    from training.baselines import csrt_baselines

    frames, size = 8, 64
    rng = torch.Generator().manual_seed(0)
    patch = torch.rand(3, 16, 16, generator=rng)
    video = torch.full((1, frames, 3, size, size), 0.5)
    for t in range(frames):
        video[0, t, :, 20:36, 10 + 2 * t : 26 + 2 * t] = patch
    boxes = torch.tensor([[[20 / size, 10 / size, 36 / size, 26 / size]]])
    out = csrt_baselines(video, boxes, torch.ones(1, 1))
    assert list(out) == ["csrt_box"]  # no GrabCut asked for
    ids, ms = out["csrt_box"]
    assert ids.shape == (1, frames, size, size) and ms > 0
    for t in range(frames):
        truth = torch.zeros(size, size, dtype=torch.bool)
        truth[20:36, 10 + 2 * t : 26 + 2 * t] = True
        painted = ids[0, t] == 1
        iou = (painted & truth).sum() / (painted | truth).sum()
        assert iou > 0.7, (t, float(iou))


def test_grabcut_inside_the_csrt_box_paints_the_object_not_its_box():
    """A red disc sliding over a grey floor: the box covers its corners too (IoU pi/4 at best); GrabCut's
    foreground inside the tracked box is the disc."""
    from training.baselines import csrt_baselines

    frames, size, radius = 6, 64, 10
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    video = torch.full((1, frames, 3, size, size), 0.5)
    discs = []
    for t in range(frames):
        disc = (yy - 30) ** 2 + (xx - 20 - 2 * t) ** 2 <= radius**2
        video[0, t, :, disc] = torch.tensor([0.9, 0.1, 0.1])[:, None]
        discs.append(disc)
    boxes = torch.tensor([[[20 / size, 10 / size, 41 / size, 31 / size]]])
    out = csrt_baselines(video, boxes, torch.ones(1, 1), grabcut_iterations=3)
    (box_ids, box_ms), (cut_ids, ms) = out["csrt_box"], out["csrt_grabcut"]
    assert ms > box_ms > 0  # GrabCut's time includes the tracking
    for t in range(1, frames):

        def iou(ids):
            painted = ids[0, t] == 1
            return float((painted & discs[t]).sum() / (painted | discs[t]).sum())

        assert iou(cut_ids) > 0.85 and iou(cut_ids) > iou(box_ids) + 0.05, (t, iou(cut_ids), iou(box_ids))


def test_late_object_gets_its_static_box_and_csrt_tracker_on_its_start_frame():
    """With ``start_frames`` an object is painted (static box) and tracked (CSRT) from the frame its box is
    given, nothing before; without, only the frame-0 objects exist."""
    from training.baselines import csrt_baselines

    frames, size = 5, 64
    rng = torch.Generator().manual_seed(0)
    video = torch.full((1, frames, 3, size, size), 0.5)
    video[0, :, :, 8:24, 8:24] = torch.rand(3, 16, 16, generator=rng)
    video[0, 3:, :, 40:56, 40:56] = torch.rand(3, 16, 16, generator=rng)  # object 2 appears on frame 3
    boxes = torch.tensor([[[8 / size, 8 / size, 24 / size, 24 / size], [40 / size, 40 / size, 56 / size, 56 / size]]])
    start = torch.tensor([[0, 3]])
    static = static_box_baseline(boxes, torch.ones(1, 2), frames, size, size, start_frames=start)
    tracked, _ = csrt_baselines(video, boxes, torch.ones(1, 2), start_frames=start)["csrt_box"]
    untold, _ = csrt_baselines(video, boxes, torch.tensor([[1.0, 0.0]]))["csrt_box"]
    for ids in (static, tracked):
        assert [int((ids[0, t] == 2).sum()) for t in range(frames)] == [0, 0, 0, 256, 256]
        assert all(int((ids[0, t] == 1).sum()) == 256 for t in range(frames))
    assert not bool((untold == 2).any())
