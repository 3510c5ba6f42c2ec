"""Prototype slots: slot attention kept in the frozen backbone's feature space.

Measured before this module existed: frozen EfficientNet-Lite0 features with the first frame's boxes
turned into prototypes and every later pixel given to its nearest prototype scored about 70 mIoU on
held-out families, while a slot-attention head trained on synthetic families scored 48 (its learned
parts fitted the families). So here a slot *is* a prototype in the normalised feature space, plus the
object's geometry, and training only tunes how the matching behaves over time (temperature, spatial
prior, prototype and geometry update rates, the box pooling, the fusion of scales) starting from the
untrained matching: ``PrototypeCorrector.neutral()`` *is* the feature-prototype baseline.

Slot layout ``[prototypes (S x C) | cy, cx, h, w, vy, vx | object]``: S prototypes per slot (an object's
looks are seldom one feature: stripes, shading, a logo), normalised image coordinates, and 1 for an
object slot conditioned by a box or point, 0 for a background slot.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GEOMETRY = 7  # cy, cx, h, w, vy, vx, object flag
# The expected size (share of the image per axis) of an object given by a point.
POINT_SIZE = 0.25
# Background prototypes: farthest-point seeds refined by this many k-means rounds over their cells.
KMEANS_ROUNDS = 2


def slot_dim(feature_dim: int, prototypes: int = 1) -> int:
    return prototypes * feature_dim + GEOMETRY


def split(slots: torch.Tensor, prototypes: int = 1) -> tuple[torch.Tensor, ...]:
    """(prototypes [.., S, C], centre [.., 2], size [.., 2], velocity [.., 2], object flag [..])."""
    c = slots.shape[-1] - GEOMETRY
    return (
        slots[..., :c].unflatten(-1, (prototypes, c // prototypes)),
        slots[..., c : c + 2],
        slots[..., c + 2 : c + 4],
        slots[..., c + 4 : c + 6],
        slots[..., c + 6],
    )


def join(
    proto: torch.Tensor, centre: torch.Tensor, size: torch.Tensor, velocity: torch.Tensor, obj: torch.Tensor
) -> torch.Tensor:
    """Inverse of :func:`split`; ``proto [.., S, C]``."""
    return torch.cat([proto.flatten(-2), centre, size, velocity, obj.unsqueeze(-1)], dim=-1)


def cell_axes(height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ys [h], xs [w])``: the centres of the feature cells' rows and columns, normalised to [0, 1]."""
    ys = (torch.arange(height, device=device) + 0.5) / height
    xs = (torch.arange(width, device=device) + 0.5) / width
    return ys, xs


def cell_centres(height: int, width: int, device: torch.device) -> torch.Tensor:
    """``[h*w, 2]`` (y, x) centres of the feature cells, normalised to [0, 1]."""
    return torch.stack(torch.meshgrid(*cell_axes(height, width, device), indexing="ij"), dim=-1).reshape(-1, 2)


def _per_cell(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``[B, M, N]`` from a test of the grid's rows ``[B, M, h]`` and one of its columns ``[B, M, w]``: a test
    of each cell's centre (y, x) that is true where both are, made on h + w values instead of h * w."""
    return (rows.unsqueeze(-1) & columns.unsqueeze(-2)).flatten(-2)


def _box_weights(
    axes: tuple[torch.Tensor, torch.Tensor], centre: torch.Tensor, half: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """``[B, M, N]``: a Gaussian of width ``sigma`` around ``centre`` over the cells within ``half`` of it (all
    ``[B, M, 2]``), 0 elsewhere. The grid is separable: offsets, squares and the box test per row and per
    column, then combined."""
    offsets = [a - centre[..., i : i + 1] for i, a in enumerate(axes)]  # [B, M, h], [B, M, w]
    inside = _per_cell(*(o.abs() <= half[..., i : i + 1] for i, o in enumerate(offsets)))
    dy, dx = ((o / sigma[..., i : i + 1]).square() for i, o in enumerate(offsets))
    exponent = (dy.unsqueeze(-1) + dx.unsqueeze(-2)).flatten(-2)
    # Outside the box the weight is 0 whatever its exponent: a zero exponent there spares exp its slow path
    # for arguments far below its range (10x the time of the whole pooling).
    return torch.exp(-0.5 * exponent.masked_fill(~inside, 0.0)) * inside


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class PrototypeInitializer(nn.Module):
    """Slots from one frame's features: a box or point pools the features around it (a Gaussian over the
    box, so its corners, usually background, weigh little); every other slot becomes a background
    prototype of the scene itself (farthest-point seeds among the cells outside the conditioned boxes and
    unlike every object prototype, refined by k-means)."""

    def __init__(self, num_slots: int, feature_dim: int, prototypes: int = 1) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.feature_dim = feature_dim
        self.prototypes = prototypes
        # Gaussian width as a share of the box's side (softplus); 0.3 keeps the middle of a round object.
        self.pool_width = nn.Parameter(torch.tensor(math.log(math.expm1(0.3))))

    def forward(
        self,
        features: torch.Tensor,
        grid: tuple[int, int],
        boxes: torch.Tensor,
        conditioned: torch.Tensor,
        offset: int,
        kept: torch.Tensor | None = None,
        objects_only: bool = False,
    ) -> torch.Tensor:
        """``features [B, N, C]`` (unit length), ``boxes [B, M, 4]`` normalised (ymin, xmin, ymax, xmax; a
        point is a zero-size box), ``conditioned [B, M]``; object ``i`` goes to slot ``i + offset``.
        ``kept [B, E, C]`` are prototypes of slots that carry on (new background avoids them).
        ``objects_only``: only the conditioned object slots are wanted (a re-anchor keeps the others); with
        one prototype per slot their looks need no background, whose search (farthest-point seeds and
        k-means over every cell: most of a restart) is then skipped and the other slots come out zero."""
        b, n, c = features.shape
        h, w = grid
        axes = tuple(a.to(features.dtype) for a in cell_axes(h, w, features.device))
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        size = (boxes[..., 2:] - boxes[..., :2]).clamp_min(0)
        cell = features.new_tensor([1.0 / h, 1.0 / w])
        extent = torch.maximum(size, 1.5 * cell)  # a point pools a few cells around it
        sigma = F.softplus(self.pool_width) * extent  # [B, M, 2]
        weights = _box_weights(axes, centre, extent / 2 + cell / 2, sigma)  # [B, M, N]
        protos = F.normalize(torch.einsum("bmn,bnc->bmc", weights, features), dim=-1)
        on = conditioned > 0.5
        # A point says nothing of its object's size: its slot expects a large one (a weak spatial prior, and
        # no background prototype seeded around it) and learns the real size from what it attends to.
        point = (size <= 0).all(-1, keepdim=True)
        expected = torch.where(point, torch.full_like(size, POINT_SIZE), size)
        region = torch.cat([centre - expected / 2, centre + expected / 2], dim=-1)
        if objects_only and self.prototypes == 1:
            background = features.new_zeros(b, self.num_slots, c)
        else:
            background = self._background(features, axes, region, on, protos, kept)  # [B, K, C]
        looks = self._looks(features, weights, protos, background)  # [B, M, S, C]
        obj_slots = join(looks, centre, expected, torch.zeros_like(centre), on.to(features.dtype))
        s = self.prototypes
        nowhere = features.new_zeros(b, self.num_slots, 2)  # a background slot has no geometry
        bg_slots = join(background.unsqueeze(2).expand(-1, -1, s, -1), nowhere, nowhere, nowhere, nowhere[..., 0])
        slots = bg_slots.clone()
        m = boxes.shape[1]
        slots[:, offset : offset + m] = torch.where(on.unsqueeze(-1), obj_slots, bg_slots[:, offset : offset + m])
        return slots

    def _looks(
        self, features: torch.Tensor, weights: torch.Tensor, main: torch.Tensor, background: torch.Tensor
    ) -> torch.Tensor:
        """``[B, M, S, C]``: the box's mean feature, then farthest-point seeds among the box's central cells
        refined by weighted k-means; a look nearer to some background prototype than to the mean is the
        box's background showing between its corners, and is replaced by the mean."""
        s = self.prototypes
        if s == 1:
            return main.unsqueeze(2)
        b, m, n = weights.shape
        central = weights > 0.2 * weights.amax(-1, keepdim=True).clamp_min(1e-12)  # [B, M, N]
        with torch.no_grad():
            seeds = [main]
            far = torch.where(central, 1 - torch.einsum("bnc,bmc->bmn", features, main), torch.full_like(weights, -1))
            for _ in range(s - 1):
                pick = far.argmax(-1)  # [B, M]
                seed = torch.gather(features, 1, pick.reshape(b, m, 1).expand(-1, -1, features.shape[-1]))
                seeds.append(seed)
                far = torch.minimum(
                    far,
                    torch.where(
                        central, 1 - torch.einsum("bnc,bmc->bmn", features, seed), torch.full_like(weights, -1)
                    ),
                )
            centres = torch.stack(seeds, 2)  # [B, M, S, C]
            for _ in range(KMEANS_ROUNDS + 1):
                assign = torch.einsum("bnc,bmsc->bmns", features, centres).argmax(-1)  # [B, M, N]
                member = F.one_hot(assign, s).to(features.dtype) * (weights * central).unsqueeze(-1)
                sums = torch.einsum("bmns,bnc->bmsc", member, features)
                centres = torch.where(member.sum(2).unsqueeze(-1) > 0, F.normalize(sums, dim=-1), centres)
        looks = F.normalize(torch.einsum("bmns,bnc->bmsc", member, features), dim=-1)
        looks = torch.where(member.sum(2).unsqueeze(-1) > 0, looks, main.unsqueeze(2))
        to_main = torch.einsum("bmsc,bmc->bms", looks, main)
        to_background = torch.einsum("bmsc,bkc->bmsk", looks, background).amax(-1)
        looks = torch.where((to_background > to_main).unsqueeze(-1), main.unsqueeze(2), looks)
        return torch.cat([main.unsqueeze(2), looks[:, :, 1:]], dim=2)

    def _background(
        self,
        features: torch.Tensor,
        axes: tuple[torch.Tensor, torch.Tensor],
        boxes: torch.Tensor,
        on: torch.Tensor,
        protos: torch.Tensor,
        kept: torch.Tensor | None,
    ) -> torch.Tensor:
        """``[B, K, C]`` background prototypes, one per slot (an object slot's is used only while it is
        unconditioned). Selection is discrete; the chosen prototypes are means of features, so gradients
        still reach the fusion of scales."""
        b, n, c = features.shape
        k = self.num_slots
        inside = _per_cell(
            *((a >= boxes[..., i : i + 1]) & (a <= boxes[..., i + 2 : i + 3]) for i, a in enumerate(axes))
        )
        inside = inside & on.unsqueeze(-1)
        candidate = ~inside.any(1)  # [B, N]
        candidate = torch.where(candidate.any(1, keepdim=True), candidate, torch.ones_like(candidate))
        with torch.no_grad():
            known = protos * on.unsqueeze(-1)
            if kept is not None:
                known = torch.cat([known, kept], dim=1)
            # Distance of each cell to the nearest known prototype (2 where none is known).
            near = 1 - torch.einsum("bnc,bec->bne", features, known)
            near = torch.where((known.abs().sum(-1) > 0).unsqueeze(1), near, torch.full_like(near, 2.0))
            dist = near.amin(-1) if near.shape[-1] else torch.full((b, n), 2.0, device=features.device)
            dist = torch.where(candidate, dist, torch.full_like(dist, -1.0))
            # Features are unit length, so 1 - similarity >= -1: the cells that are no candidates stay at -1.
            seeds = []
            for _ in range(k):
                seed = features.gather(1, dist.argmax(1).view(b, 1, 1).expand(b, 1, c))  # [B, 1, C]
                seeds.append(seed)
                dist = torch.minimum(dist, 1 - torch.bmm(features, seed.mT).view(b, n))
            centres = torch.cat(seeds, 1)  # [B, K, C]
            # Memberships: each candidate cell's 1 scattered to its nearest centre (one_hot times the
            # candidate mask, in one small kernel instead of four).
            weight = candidate.to(features.dtype).unsqueeze(-1)
            for _ in range(KMEANS_ROUNDS):
                assign = torch.einsum("bnc,bkc->bnk", features, centres).argmax(-1, keepdim=True)
                member = features.new_zeros(b, n, k).scatter_(-1, assign, weight)  # [B, N, K]
                sums = torch.einsum("bnk,bnc->bkc", member, features)
                centres = torch.where(member.sum(1).unsqueeze(-1) > 0, F.normalize(sums, dim=-1), centres)
            assign = torch.einsum("bnc,bkc->bnk", features, centres).argmax(-1, keepdim=True)
            member = features.new_zeros(b, n, k).scatter_(-1, assign, weight)
        means = F.normalize(torch.einsum("bnk,bnc->bkc", member, features), dim=-1)
        return torch.where(member.sum(1).unsqueeze(-1) > 0, means, centres)


class PrototypeCorrector(nn.Module):
    """Each slot attends to the cells by cosine similarity to its prototype (softmax over slots), an object
    slot also by distance to its expected place; then prototypes, centres, sizes and velocities move
    towards what was attended, at learned rates. Returns (slots, attention ``[B, K, N]``) like
    ``SlotAttention``."""

    def __init__(self, spatial_prior: bool = True, prototypes: int = 1) -> None:
        super().__init__()
        self.spatial_prior = spatial_prior
        self.prototypes = prototypes
        self.log_temperature = nn.Parameter(torch.tensor(math.log(30.0)))
        self.prior = nn.Parameter(torch.tensor(0.5))  # spatial prior strength (softplus-free: may go to 0)
        self.object_rate = nn.Parameter(torch.tensor(_logit(0.05)))  # prototype update, object slots
        self.background_rate = nn.Parameter(torch.tensor(_logit(0.2)))  # prototype update, background
        self.velocity_rate = nn.Parameter(torch.tensor(_logit(0.5)))
        self.size_rate = nn.Parameter(torch.tensor(_logit(0.2)))
        self.register_buffer("prior_mass", torch.tensor(2.0))  # cells of evidence a centre needs to move

    @torch.no_grad()
    def make_neutral(self) -> None:
        """The untrained matching: nearest prototype, fixed prototypes, no spatial prior."""
        self.log_temperature.fill_(math.log(100.0))
        self.prior.fill_(0.0)
        self.object_rate.fill_(-30.0)
        self.background_rate.fill_(-30.0)

    def forward(
        self, slots: torch.Tensor, features: torch.Tensor, grid: tuple[int, int], bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        proto, centre, size, velocity, obj = split(slots, self.prototypes)
        h, w = grid
        axes = [a.to(features.dtype) for a in cell_axes(h, w, features.device)]
        cells = cell_centres(h, w, features.device).to(features.dtype)
        proto = F.normalize(proto, dim=-1)  # [B, K, S, C]
        looks = torch.einsum("bksc,bnc->bksn", proto, features)
        # A slot's best look; with one look per slot that is the look itself (no arg-max, no one-hot below).
        similarity, nearest = (looks[:, :, 0], None) if self.prototypes == 1 else looks.max(dim=2)
        logits = similarity * self.log_temperature.exp()
        cell = features.new_tensor([1.0 / h, 1.0 / w])
        if self.spatial_prior:
            extent = torch.maximum(size, 2 * cell)
            # Squared distances per grid row and column, summed per cell (the same sums as over cells).
            dy, dx = (((a - centre[..., i : i + 1]) / extent[..., i : i + 1]).square() for i, a in enumerate(axes))
            logits = logits - (obj * self.prior).unsqueeze(-1) * (dy.unsqueeze(-1) + dx.unsqueeze(-2)).flatten(-2)
        if bias is not None:
            logits = logits + bias
        attn = logits.softmax(dim=1)
        mass = attn.sum(-1)  # [B, K] in cells
        per_look = attn.unsqueeze(2)
        if nearest is not None:
            per_look = per_look * F.one_hot(nearest, self.prototypes).permute(0, 1, 3, 2).to(attn.dtype)
        seen = F.normalize(torch.einsum("bksn,bnc->bksc", per_look, features), dim=-1)
        look_mass = per_look.sum(-1)  # [B, K, S]
        rate = torch.where(obj > 0.5, torch.sigmoid(self.object_rate), torch.sigmoid(self.background_rate))
        look_trust = (look_mass / (look_mass + self.prior_mass)).unsqueeze(-1)
        proto = F.normalize(proto + rate.view(*rate.shape, 1, 1) * look_trust * (seen - proto), dim=-1)
        trust = (mass / (mass + self.prior_mass)).unsqueeze(-1)
        where = torch.einsum("bkn,nd->bkd", attn, cells) / mass.clamp_min(1e-6).unsqueeze(-1)
        new_centre = centre + trust * (where - centre)
        spread = torch.einsum("bkn,bknd->bkd", attn, (cells.view(1, 1, -1, 2) - new_centre.unsqueeze(2)).square())
        observed = (12 * spread / mass.clamp_min(1e-6).unsqueeze(-1)).clamp_min(0).sqrt()
        new_size = size + torch.sigmoid(self.size_rate) * trust * (observed - size)
        previous = centre - velocity
        new_velocity = velocity + torch.sigmoid(self.velocity_rate) * trust * (new_centre - previous - velocity)
        keep = (obj > 0.5).unsqueeze(-1)
        out = join(
            proto,
            torch.where(keep, new_centre, centre),
            torch.where(keep, new_size, size),
            torch.where(keep, new_velocity, velocity),
            obj,
        )
        return out, attn


class KinematicPredictor(nn.Module):
    """Carries an object slot's centre along its velocity to the next frame; prototypes unchanged."""

    def __init__(self, prototypes: int = 1) -> None:
        super().__init__()
        self.prototypes = prototypes

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        proto, centre, size, velocity, obj = split(slots, self.prototypes)
        return join(proto, centre + velocity * obj.unsqueeze(-1), size, velocity, obj)
