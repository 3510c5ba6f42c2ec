"""Fit a prototype model's metric, the encoder's projection, by matching looks across frames:
``python -m training.fit_metric --config training/configs/pretrained_cpu.yaml --out runs/pretrained_metric``.

The prototype model gives each feature cell to the slot whose look is most similar (cosine, in the frozen
backbone's fused space). That space was made to tell ImageNet classes apart, not this object from that
background a few frames later, turned and shaded anew. The projection (``encoder.projection``, a square
matrix, identity for the untrained matching) is the one part learned by gradient here, from cached backbone
features of the run's *training* videos (held-out families are never read):

- a pair of frames of one video, a reference ``r`` and a target ``t`` up to `MAX_GAP` frames later;
- each object's look is the mean of its true cells at ``r`` (the ground truth pooled to the feature grid),
  the background's looks are `BACKGROUND_LOOKS` clusters of its cells at ``r`` (a scene's background is
  seldom one colour, and the Tracker's background slots are such clusters too);
- every cell of ``t`` is scored by a softmax over those looks at a learned temperature, the background's
  score being its best cluster's (log-sum-exp); the loss is the cross-entropy with the true segment.

Weight decay pulls the matrix toward identity. A linear map and not a network: heads learned on the
synthetic families were measured to fit them and lose on held-out ones (``savi_core.model.encoder``). The
fitted checkpoint starts ``training.fit_prototypes --init``, which then fits the temperature and the rest by
the tracking metric itself. A tenth of the videos is kept aside to report the loss and the share of cells
given to the right segment, identity against fitted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from savi_core.model.backbone import BackboneFeatures
from savi_core.model.checkpoint import save_checkpoint
from savi_core.model.config import ConfigError
from savi_core.model.encoder import fuse_taps
from savi_core.model.savi import SAVi
from training.config import load_config
from training.data import build_dataset
from training.feature_cache import TAP_KEYS, CachedFeatureDataset, FeatureCache

#: Target frames are 1 to this many frames after the reference (the Tracker's looks follow the object, so
#: a look is seldom older than this).
MAX_GAP = 12
#: Clusters of the background's cells at the reference frame.
BACKGROUND_LOOKS = 6
#: A segment has a look at the reference frame when it covers at least this many feature cells there.
MIN_CELLS = 2.0
#: Temperature the fit starts from (the fitted prototype models' own).
START_TEMPERATURE = 100.0


def grid_labels(segmentations: torch.Tensor, classes: int, stride: int) -> torch.Tensor:
    """``[T, H, W]`` segment ids (0 background) -> ``[T, classes, H/stride, W/stride]``: each cell's share of
    every segment."""
    onehot = F.one_hot(segmentations.long(), classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, stride, ceil_mode=True)


def background_clusters(features: torch.Tensor, k: int, rounds: int = 2) -> torch.Tensor:
    """Cluster index of each row of ``features [N, C]`` (unit length): farthest-point seeds, then k-means
    rounds. Discrete, so without gradients; the looks are means of their members, which keep them."""
    with torch.no_grad():
        seeds = [0]
        far = 1 - features @ features[0]
        for _ in range(1, min(k, features.shape[0])):
            seeds.append(int(far.argmax()))
            far = torch.minimum(far, 1 - features @ features[seeds[-1]])
        centres = features[seeds]
        for _ in range(rounds):
            member = F.one_hot((features @ centres.T).argmax(1), centres.shape[0]).float()
            sums = member.T @ features
            centres = torch.where(member.sum(0).unsqueeze(1) > 0, F.normalize(sums, dim=-1), centres)
        return (features @ centres.T).argmax(1)


def pair_loss(
    projection: torch.Tensor,
    log_temperature: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    target: torch.Tensor,
    target_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Cross-entropy and cell accuracy of the target frame's cells against the reference frame's looks.

    ``reference`` / ``target`` are fused features ``[N, C]``, the labels ``[S, N]`` (segment 0 the
    background). Cells of segments without a look at the reference (objects that came into view since) are
    not scored. None when the pair has no object or too little background to score."""
    ref = F.normalize(reference @ projection, dim=-1)
    tgt = F.normalize(target @ projection, dim=-1)
    segments = [s for s in range(1, reference_labels.shape[0]) if float(reference_labels[s].sum()) >= MIN_CELLS]
    background = reference_labels[0] > 0.5
    if not segments or int(background.sum()) < BACKGROUND_LOOKS:
        return None
    objects = F.normalize(reference_labels[segments] @ ref, dim=-1)  # [O, C]
    cells = ref[background]
    assign = background_clusters(cells, BACKGROUND_LOOKS)
    member = F.one_hot(assign, BACKGROUND_LOOKS).float()
    member = member[:, member.sum(0) > 0]
    looks = F.normalize(member.T @ cells, dim=-1)  # [B, C]
    logits = log_temperature.exp() * (tgt @ torch.cat([objects, looks]).T)
    scores = torch.cat([logits[:, : len(segments)], logits[:, len(segments) :].logsumexp(1, keepdim=True)], dim=1)
    truth = torch.cat([target_labels[segments], target_labels[:1]]).T  # [N, O + 1]
    scored = truth.sum(1) > 0.99
    if not bool(scored.any()):
        return None
    log_p = scores[scored].log_softmax(1)
    loss = -(truth[scored] * log_p).sum(1).mean()
    accuracy = (log_p.argmax(1) == truth[scored].argmax(1)).float().mean()
    return loss, accuracy


class Videos:
    """The backbone taps (fp16, from the feature cache when the run config has one) and the grid labels of
    whole training videos, kept in memory; fused features of a frame on request."""

    def __init__(self, model: SAVi, dataset, indices: Sequence[int]) -> None:  # noqa: ANN001 - any dataset
        self.encoder = model.encoder
        self.stride = model.config.encoder.output_stride
        self.taps: list[dict[str, torch.Tensor]] = []
        self.labels: list[torch.Tensor] = []
        for index in indices:
            item = dataset[index]
            if "s4" in item:
                taps = {k: item[k].half() for k in TAP_KEYS}
            else:
                taps = dict(zip(TAP_KEYS, (t.half() for t in self.encoder.frozen(item["video"]).as_tuple())))
            self.taps.append(taps)
            seg = item["segmentations"]
            self.labels.append(grid_labels(seg, int(item["boxes"].shape[1]) + 1, self.stride).half())

    def __len__(self) -> int:
        return len(self.taps)

    def frames(self, video: int) -> int:
        return int(self.labels[video].shape[0])

    def frame(self, video: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused features ``[N, C]`` (the fusion's current tap weights, no projection) and labels ``[S, N]``."""
        taps = BackboneFeatures(*(self.taps[video][k][t : t + 1].float() for k in TAP_KEYS))
        with torch.no_grad():
            fused = fuse_taps(taps, self.stride, self.encoder.tap_weights)[0]
        return fused.reshape(-1, fused.shape[-1]), self.labels[video][t].float().flatten(1)


def _pair(videos: Videos, video: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    length = videos.frames(video)
    r = int(torch.randint(length - 1, (1,), generator=generator))
    t = min(length - 1, r + 1 + int(torch.randint(MAX_GAP, (1,), generator=generator)))
    return (*videos.frame(video, r), *videos.frame(video, t))


def score(
    videos: Videos, indices: Sequence[int], projection: torch.Tensor, log_temperature: torch.Tensor, pairs: int
) -> dict[str, float]:
    """Mean loss and cell accuracy over ``pairs`` fixed random pairs of the ``indices`` videos."""
    generator = torch.Generator().manual_seed(1)
    losses, accuracies = [], []
    with torch.no_grad():
        for _ in range(pairs):
            video = indices[int(torch.randint(len(indices), (1,), generator=generator))]
            result = pair_loss(projection, log_temperature, *_pair(videos, video, generator))
            if result is not None:
                losses.append(float(result[0]))
                accuracies.append(float(result[1]))
    if not losses:
        raise ValueError("no scorable frame pair: the videos have no object with a look")
    return {"loss": sum(losses) / len(losses), "accuracy": sum(accuracies) / len(accuracies)}


def fit(
    config: str,
    out: Path,
    videos: int,
    first: int = 0,
    steps: int = 1500,
    batch: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Fit the projection on ``videos`` training videos from ``first``; write a checkpoint of the untrained
    matching with the fitted projection to ``out``. Returns the held-aside scores and the time taken."""
    cfg = load_config(config)
    if cfg.model.corrector.kind != "prototype" or not cfg.model.encoder.projection:
        raise ConfigError("model.encoder.projection: fitting a metric needs a prototype model with a projection")
    if videos < 2:
        raise ValueError(f"--videos: needs at least 2 (one kept aside), got {videos}")
    if cfg.data.num_frames < 2:
        raise ConfigError(f"data.num_frames: pairs of frames need at least 2, got {cfg.data.num_frames}")
    begun = time.perf_counter()
    dataset = build_dataset(cfg.data, "train")
    if first + videos > len(dataset):
        raise ValueError(f"--first {first} + --videos {videos} is past the {len(dataset)} training videos")
    if hasattr(dataset, "window"):
        dataset.window = None  # whole videos
    model = SAVi(cfg.model)
    model.corrector.make_neutral()
    model.eval()
    if cfg.data.feature_cache:
        dataset = CachedFeatureDataset(dataset, FeatureCache(cfg.data.feature_cache, model.encoder.backbone))
    data = Videos(model, dataset, range(first, first + videos))
    loaded = time.perf_counter() - begun
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator).tolist()
    aside, train = order[: max(1, len(data) // 10)], order[max(1, len(data) // 10) :]
    dim = cfg.model.encoder.feature_dim
    identity = torch.eye(dim)
    projection = torch.nn.Parameter(identity.clone())
    log_temperature = torch.nn.Parameter(torch.tensor(math.log(START_TEMPERATURE)))
    optimizer = torch.optim.Adam([projection, log_temperature], lr=lr)
    before = score(data, aside, identity, log_temperature.detach(), pairs=200)
    print(f"identity: kept-aside loss {before['loss']:.4f}, cell accuracy {100 * before['accuracy']:.2f}%", flush=True)
    for step in range(1, steps + 1):
        losses = []
        for _ in range(batch):
            video = train[int(torch.randint(len(train), (1,), generator=generator))]
            result = pair_loss(projection, log_temperature, *_pair(data, video, generator))
            if result is not None:
                losses.append(result[0])
        if not losses:
            continue
        loss = torch.stack(losses).mean() + weight_decay * (projection - identity).square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps:
            with torch.no_grad():
                shown = (loss.item(), log_temperature.exp().item(), (projection - identity).norm().item())
            print("step {}: loss {:.4f}, temperature {:.1f}, |P - I| {:.3f}".format(step, *shown), flush=True)
    after = score(data, aside, projection.detach(), log_temperature.detach(), pairs=200)
    print(f"fitted: kept-aside loss {after['loss']:.4f}, cell accuracy {100 * after['accuracy']:.2f}%", flush=True)
    with torch.no_grad():
        model.encoder.projection.copy_(projection)
    result = {
        "videos": videos,
        "aside_videos": len(aside),
        "first": first,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "weight_decay": weight_decay,
        "temperature": log_temperature.detach().exp().item(),
        "aside_before": before,
        "aside_after": after,
        "load_seconds": loaded,
        "seconds": time.perf_counter() - begun,
    }
    save_checkpoint(out, model, extra={"run_config": cfg.to_dict(), "metric": result})
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.fit_metric", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="run config of a prototype model with encoder.projection: true")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--videos", type=int, default=400, help="training videos to fit on (a tenth kept aside)")
    p.add_argument("--first", type=int, default=100, help="index of the first one (fit_prototypes scores the first)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8, help="frame pairs per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-3, help="pull of the matrix toward identity")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    try:
        result = fit(args.config, args.out, args.videos, args.first, args.steps, args.batch, args.lr, args.weight_decay)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"fitted in {result['seconds']:.0f} s (features {result['load_seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
