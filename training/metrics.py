"""Evaluation metrics of the SAVi paper (appendix A.8): FG-ARI and mIoU, batched in torch.

Conventions shared by every function here:

* ``pred_ids`` / ``gt_ids`` are integer id maps ``[B, T, H, W]``; ground-truth id 0 is background and
  id ``i + 1`` is object ``i``. For mIoU the prediction of the slot conditioned on object ``i`` must
  carry id ``i + 1`` (no matching).
* The evaluated frames of a video are the real frames (``frame_mask``, default all) minus frame 0 when
  ``skip_first`` is true (the paper skips it because the conditioning is given there).
* A value that is undefined for a video (nothing to evaluate) is NaN, so that means over a data set
  can drop it explicitly with :func:`mean_over_videos` instead of silently counting it as 0 or 1.
  In particular FG-ARI of a video without ground-truth foreground in its evaluated frames is NaN,
  where sklearn's ``adjusted_rand_score([], [])`` says 1.0; everywhere else FG-ARI equals sklearn's.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_id_maps(pred_ids: Tensor, gt_ids: Tensor) -> None:
    if pred_ids.dim() != 4 or gt_ids.dim() != 4:
        raise ValueError(
            f"pred_ids and gt_ids must be [B,T,H,W], got {tuple(pred_ids.shape)} and {tuple(gt_ids.shape)}"
        )
    if pred_ids.shape != gt_ids.shape:
        raise ValueError(f"pred_ids {tuple(pred_ids.shape)} and gt_ids {tuple(gt_ids.shape)} differ in shape")
    for name, ids in (("pred_ids", pred_ids), ("gt_ids", gt_ids)):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor of ids, got dtype {ids.dtype}")


def evaluated_frames(
    batch: int, frames: int, skip_first: bool, frame_mask: Tensor | None, device: torch.device
) -> Tensor:
    """Bool ``[B, T]``: the frames a metric looks at (real frames, frame 0 dropped if ``skip_first``)."""
    if frame_mask is None:
        mask = torch.ones(batch, frames, dtype=torch.bool, device=device)
    else:
        if tuple(frame_mask.shape) != (batch, frames):
            raise ValueError(f"frame_mask must be [B,T] = {(batch, frames)}, got {tuple(frame_mask.shape)}")
        mask = frame_mask.to(device=device, dtype=torch.bool).clone()
    if skip_first:
        mask[:, 0] = False
    return mask


# Largest dense contingency table (groups x gt ids x pred ids) built directly; beyond it the table is sparse.
_DENSE_TABLE_LIMIT = 1 << 22


def _compact(ids: Tensor) -> tuple[Tensor, int]:
    """Relabel ids to 0..K-1 (keeping equality), so products of label counts stay small."""
    values, inverse = torch.unique(ids, return_inverse=True)
    return inverse, values.numel()


def _sum_squared_group_sizes(group: Tensor, labels: Tensor, num_labels: int, num_groups: int) -> Tensor:
    """Per group g: sum over labels l of |{pixels of g with label l}|^2, int64 ``[num_groups]``."""
    keys, counts = torch.unique(group * num_labels + labels, return_counts=True)
    out = torch.zeros(num_groups, dtype=torch.int64, device=group.device)
    return out.scatter_add_(0, keys // num_labels, counts * counts)


def _contingency_sums(group: Tensor, pred: Tensor, gt: Tensor, num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per group: (sum_ij n_ij^2, sum_i a_i^2, sum_j b_j^2) of the gt x pred contingency table, int64.

    Small non-negative ids (the usual case) get a dense table from one ``bincount``; otherwise the
    table is kept sparse (only non-empty cells, via ``torch.unique``) so that ids of any size and any
    number of clusters cost memory linear in the number of pixels.
    """
    if group.numel() and int(torch.minimum(pred.min(), gt.min())) >= 0:
        rows, cols = int(gt.max()) + 1, int(pred.max()) + 1
        if num_groups * rows * cols <= _DENSE_TABLE_LIMIT:
            cells = (group * rows + gt) * cols + pred
            table = torch.bincount(cells, minlength=num_groups * rows * cols).view(num_groups, rows, cols)
            return (table * table).sum((1, 2)), table.sum(2).square().sum(1), table.sum(1).square().sum(1)
    gt_c, num_gt = _compact(gt)
    pred_c, num_pred = _compact(pred)
    joint_c, num_joint = _compact(gt_c * num_pred + pred_c)
    return (
        _sum_squared_group_sizes(group, joint_c, num_joint, num_groups),
        _sum_squared_group_sizes(group, gt_c, num_gt, num_groups),
        _sum_squared_group_sizes(group, pred_c, num_pred, num_groups),
    )


def _grouped_ari(group: Tensor, pred: Tensor, gt: Tensor, num_groups: int) -> Tensor:
    """Adjusted Rand index of ``pred`` vs ``gt`` within each group; 1-D inputs of the selected pixels.

    Pair counts are exact int64 (sklearn's pair-confusion form); the final ratio is float64. As in
    sklearn, identical partitions (no false-positive and no false-negative pair) score exactly 1.0 —
    this covers one cluster on both sides, every pixel its own cluster on both sides and a single
    pixel. A group with no pixel is NaN (sklearn would say 1.0; see the module docstring).
    """
    n = torch.bincount(group, minlength=num_groups).to(torch.int64)
    sum_nij2, sum_a2, sum_b2 = _contingency_sums(group, pred, gt, num_groups)
    # Ordered pair counts: tp same/same, fp split in gt but joined in pred, fn the converse.
    tp = sum_nij2 - n
    fp = sum_b2 - sum_nij2
    fn = sum_a2 - sum_nij2
    tn = n * n - fp - fn - sum_nij2
    tp, fp, fn, tn = (x.to(torch.float64) for x in (tp, fp, fn, tn))
    denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    identical = (fp == 0) & (fn == 0)
    ari = 2.0 * (tp * tn - fn * fp) / torch.where(identical, torch.ones_like(denominator), denominator)
    ari = torch.where(identical, torch.ones_like(ari), ari)
    return torch.where(n == 0, torch.full_like(ari, float("nan")), ari)


def _fg_ari_groups(pred_ids: Tensor, gt_ids: Tensor, frames: Tensor, per_frame: bool) -> Tensor:
    batch, num_frames = gt_ids.shape[:2]
    selected = (gt_ids != 0) & frames[:, :, None, None]
    if per_frame:
        group_map = torch.arange(batch * num_frames, device=gt_ids.device).view(batch, num_frames, 1, 1)
        num_groups = batch * num_frames
    else:
        group_map = torch.arange(batch, device=gt_ids.device).view(batch, 1, 1, 1)
        num_groups = batch
    group = group_map.expand_as(gt_ids)[selected]
    return _grouped_ari(group, pred_ids[selected].long(), gt_ids[selected].long(), num_groups)


def fg_ari(pred_ids: Tensor, gt_ids: Tensor, skip_first: bool = True, frame_mask: Tensor | None = None) -> Tensor:
    """Foreground ARI per video, float64 ``[B]`` (<= 1, can be negative; NaN if no foreground pixel).

    All ground-truth foreground pixels of all evaluated frames of a video form one clustering problem,
    so an object must keep one predicted id for the whole video (identity switches are penalised).
    Equals ``sklearn.metrics.adjusted_rand_score(gt[fg], pred[fg])`` whenever the foreground is non-empty.
    """
    _check_id_maps(pred_ids, gt_ids)
    frames = evaluated_frames(*gt_ids.shape[:2], skip_first, frame_mask, gt_ids.device)
    return _fg_ari_groups(pred_ids, gt_ids, frames, per_frame=False)


def per_frame_fg_ari(
    pred_ids: Tensor, gt_ids: Tensor, skip_first: bool = True, frame_mask: Tensor | None = None
) -> Tensor:
    """FG-ARI of every frame on its own, float64 ``[B, T]``; NaN for unevaluated or foreground-free frames."""
    _check_id_maps(pred_ids, gt_ids)
    frames = evaluated_frames(*gt_ids.shape[:2], skip_first, frame_mask, gt_ids.device)
    return _fg_ari_groups(pred_ids, gt_ids, frames, per_frame=True).view(gt_ids.shape[:2])


def _iou_table(pred_ids: Tensor, gt_ids: Tensor, num_objects: int) -> tuple[Tensor, Tensor]:
    """IoU of id ``i+1`` in prediction vs ground truth, float64 ``[B, T, N]``, plus the gt areas.

    Empty union counts as IoU 1, which is exactly the A.8 rule for absent objects: when the object is
    absent from the ground truth the union is the predicted area, so the score is 1.0 if the
    prediction is empty too and 0.0 otherwise (one stray pixel costs the whole frame).
    """
    batch, frames = gt_ids.shape[:2]
    gt = gt_ids.long()
    if bool((gt < 0).any()) or bool((gt > num_objects).any()):
        raise ValueError(
            f"gt_ids must lie in [0, num_objects={num_objects}], got range [{int(gt.min())}, {int(gt.max())}]"
        )
    pred = pred_ids.long()
    # Predicted ids that name no evaluated object (0, negatives, > N) all land in bin 0 and are ignored.
    pred = torch.where((pred >= 1) & (pred <= num_objects), pred, torch.zeros_like(pred))
    bins = num_objects + 1
    offset = torch.arange(batch * frames, device=gt.device).view(batch, frames, 1, 1) * bins
    size = batch * frames * bins

    def count(index: Tensor) -> Tensor:
        return torch.bincount(index.reshape(-1), minlength=size).view(batch, frames, bins)[..., 1:]

    pred_area = count(offset + pred)
    gt_area = count(offset + gt)
    inter = count((offset + gt).masked_select(pred == gt))
    union = pred_area + gt_area - inter
    iou = inter.to(torch.float64) / union.clamp_min(1).to(torch.float64)
    return torch.where(union == 0, torch.ones_like(iou), iou), gt_area


def _miou_weights(
    gt_ids: Tensor,
    gt_area: Tensor,
    num_objects: int,
    skip_first: bool,
    frame_mask: Tensor | None,
    instance_mask: Tensor | None,
) -> Tensor:
    """Bool ``[B, T, N]``: which (frame, object) IoUs enter the mean.

    Objects counted: ``instance_mask`` when given; otherwise every object visible in the ground truth in
    at least one real frame of the video, frame 0 included even when it is skipped (an object seen only
    at conditioning time that then leaves must be predicted empty afterwards, DAVIS style).
    """
    batch, frames = gt_ids.shape[:2]
    frames_eval = evaluated_frames(batch, frames, skip_first, frame_mask, gt_ids.device)
    if instance_mask is None:
        real = evaluated_frames(batch, frames, False, frame_mask, gt_ids.device)
        objects = ((gt_area > 0) & real[:, :, None]).any(dim=1)
    else:
        if tuple(instance_mask.shape) != (batch, num_objects):
            raise ValueError(f"instance_mask must be [B,N] = {(batch, num_objects)}, got {tuple(instance_mask.shape)}")
        objects = instance_mask.to(device=gt_ids.device, dtype=torch.bool)
    return frames_eval[:, :, None] & objects[:, None, :]


def _validate_num_objects(num_objects: int) -> None:
    if not isinstance(num_objects, int) or num_objects < 1:
        raise ValueError(f"num_objects must be a positive int, got {num_objects!r}")


def _masked_mean(values: Tensor, weights: Tensor, dims: tuple[int, ...]) -> Tensor:
    total = weights.sum(dim=dims)
    mean = (values * weights).sum(dim=dims) / total.clamp_min(1)
    return torch.where(total == 0, torch.full_like(mean, float("nan")), mean)


def miou(
    pred_ids: Tensor,
    gt_ids: Tensor,
    num_objects: int,
    skip_first: bool = True,
    frame_mask: Tensor | None = None,
    instance_mask: Tensor | None = None,
    per_frame: bool = False,
) -> Tensor:
    """Tracking mIoU per video (A.8), float64 ``[B]`` in [0, 1]; NaN if no object or no frame is evaluated.

    Per object: IoU of prediction id ``i+1`` with ground-truth id ``i+1`` in every evaluated frame
    (absent object: 1.0 if predicted empty, else 0.0), averaged over frames; then averaged over the
    counted objects (see ``_miou_weights``). With ``per_frame``: the mIoU of every frame (mean over the
    counted objects), float64 ``[B, T]``, NaN for unevaluated frames; the per-video value is the mean of
    that row over evaluated frames.
    """
    _check_id_maps(pred_ids, gt_ids)
    _validate_num_objects(num_objects)
    iou, gt_area = _iou_table(pred_ids, gt_ids, num_objects)
    weights = _miou_weights(gt_ids, gt_area, num_objects, skip_first, frame_mask, instance_mask).to(iou.dtype)
    if per_frame:
        return _masked_mean(iou, weights, dims=(2,))
    return torch.nanmean(_masked_mean(iou, weights, dims=(1,)), dim=1)  # per object [B, N], then over objects


def known_objects_ids(gt_ids: Tensor, given_from: Tensor) -> Tensor:
    """What a perfect tracker predicts when it learns of object ``i`` only on frame ``given_from[b, i]``
    (-1: never): the ground truth ``[B, T, H, W]``, with every object not yet given set to background.
    Its :func:`miou` is the ceiling of a box protocol: what no tracker can beat when objects without a
    box can never be predicted."""
    if gt_ids.dim() != 4 or given_from.dim() != 2 or given_from.shape[0] != gt_ids.shape[0]:
        raise ValueError(
            f"gt_ids must be [B,T,H,W] and given_from [B,N], got {tuple(gt_ids.shape)}, {tuple(given_from.shape)}"
        )
    batch, frames = gt_ids.shape[:2]
    num_objects = given_from.shape[1]
    start = given_from.to(gt_ids.device).long()[:, None, :]  # [B, 1, N]
    frame = torch.arange(frames, device=gt_ids.device).view(1, frames, 1)
    known = (start >= 0) & (frame >= start)  # [B, T, N]
    known = torch.cat([torch.zeros_like(known[..., :1]), known], dim=2)  # id 0 (background) stays 0
    gt = gt_ids.long()
    inside = (gt >= 1) & (gt <= num_objects)
    keep = known.gather(2, torch.where(inside, gt, 0).view(batch, frames, -1)).view_as(gt)
    return torch.where(keep, gt, torch.zeros_like(gt))


def mean_over_videos(values: Tensor) -> tuple[float, int]:
    """Data-set mean of per-video (or per-frame) scores, skipping NaN (undefined) entries.

    Returns ``(mean, count)``; the mean is NaN when nothing is defined, so callers can tell.
    """
    defined = ~torch.isnan(values)
    count = int(defined.sum())
    return (float(values[defined].double().mean()) if count else float("nan")), count
