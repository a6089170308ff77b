"""Fused forward and closed-form backward of the spatial costs, for many layers per call.

Why: written as plain autograd, proximity + transport over the five layers of the default
SpatialMLP take ~200 small kernels and 1.3× a whole training step on a 2-core CPU (fused:
0.58×; benchmarks/RESULTS.md, 2026-12-01). Each function here handles every layer of a cost in one
call of ~20 kernels forward and ~15 backward, with the analytic gradients of
reference/spatialnets.md §1.4 (r = sqrt(d² + eps) throughout):

* proximity P = mean_ij exp(-r_ij):  dP/dp_i = (2 / N²) Σ_j k_ij (p_j - p_i),  k = exp(-r) / r.
  All layers' pair matrices are cut into ``tile × tile`` blocks computed as one batch; the matrix
  is symmetric, so only blocks on and above the diagonal are computed (the others count twice)
  and the diagonal terms, exp(-sqrt(eps)) each, are added in closed form.
* transport T = mean_ij r_ij g(w_ij):  dT/dw_ij = r_ij g'(w_ij) / (N M),
  dT/dp_i = Σ_j h_ij (p_i - q_j) / (N M) and dT/dq_j = Σ_i h_ij (q_j - p_i) / (N M), h = g / r.
  Each layer's (N, M) distances are one product written into a flat buffer laid out like the
  weights, so the elementwise work runs once over all layers and no weight is gathered.

Squared distances are products of augmented coordinates ([p, 1, |p|²] · [-2q, |q|² + eps, 1]),
clamped at eps against rounding. Both functions are ``once_differentiable`` (no double
backward) and work in float32 / float64 on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch.autograd.function import once_differentiable

# A padded or diagonal slot of a proximity block gets BIG added to its squared distance, and
# every distance is clamped at 80: exp(-80) = 2e-35 is far below the resolution of any sum of
# these terms, while exp of anything further would be a float32 denormal, which CPUs compute
# ~10x slower (a padded block would cost more than the whole layer).
BIG = 1e8
MAX_SQUARED_DISTANCE = 80.0**2
MAX_TILE = 64  # block side: 64 balances padding waste against the number of blocks
KERNEL_DTYPES = (torch.float32, torch.float64)


def _block_indices(offset: int, size: int, block: int, tile: int, pad: int) -> torch.Tensor:
    """(tile,) point indices of block ``block`` of a layer at ``offset``; ``pad`` past its end."""
    local = torch.arange(block * tile, (block + 1) * tile)
    return torch.where(local < size, local + offset, torch.full_like(local, pad))


@dataclass(frozen=True)
class ProximityPlan:
    """Block indices and constants for layers of ``sizes`` neurons (one per model and device)."""

    sizes: tuple[int, ...]
    eps: float
    tile: int
    n_diagonal: int  # blocks on a layer's diagonal come first in the batch
    rows: torch.Tensor  # (n_blocks * tile,) point of every block row; n (padding) past a layer
    cols: torch.Tensor  # (n_blocks * tile,)
    off_rows: torch.Tensor  # rows of the off-diagonal blocks only
    zero_row: torch.Tensor  # (1, dim): the padding point
    ones_dim: torch.Tensor  # (dim,)
    ones: torch.Tensor  # (n + 1, 1)
    pad: torch.Tensor  # (n + 1, 1): 1 at the padding point
    right_offset: torch.Tensor  # (n + 1,): eps, and eps + BIG at the padding point
    big: torch.Tensor  # (n + 1, 1): BIG
    diagonal_values: torch.Tensor  # (n_layers,): the i = j terms, exp(-sqrt(eps)) / N
    value_weights: torch.Tensor  # (n_layers, n_blocks): block sum → layer mean
    point_weights: torch.Tensor  # (n, n_layers): 2 / N² for each point's layer

    @classmethod
    def build(
        cls, sizes: list[int], dim: int, eps: float, device: torch.device, dtype: torch.dtype
    ) -> ProximityPlan:
        tile, n = min(MAX_TILE, max(sizes)), sum(sizes)
        offsets = [0, *accumulate(sizes)]
        diagonal, off_diagonal = [], []
        for layer, size in enumerate(sizes):
            blocks = math.ceil(size / tile)
            for a in range(blocks):
                diagonal.append((layer, a, a))
                off_diagonal.extend((layer, a, c) for c in range(a + 1, blocks))
        blocks = diagonal + off_diagonal
        rows = torch.cat([_block_indices(offsets[k], sizes[k], a, tile, n) for k, a, _ in blocks])
        cols = torch.cat([_block_indices(offsets[k], sizes[k], c, tile, n) for k, _, c in blocks])
        value_weights = torch.zeros(len(sizes), len(blocks), dtype=torch.float64)
        for index, (layer, a, c) in enumerate(blocks):
            value_weights[layer, index] = (1.0 if a == c else 2.0) / sizes[layer] ** 2
        point_weights = torch.zeros(n, len(sizes), dtype=torch.float64)
        for layer, size in enumerate(sizes):
            point_weights[offsets[layer] : offsets[layer] + size, layer] = 2.0 / size**2
        pad = torch.zeros(n + 1, 1, dtype=torch.float64)
        pad[n] = 1.0
        on = {"device": device, "dtype": dtype}
        return cls(
            sizes=tuple(sizes),
            eps=eps,
            tile=tile,
            n_diagonal=len(diagonal),
            rows=rows.to(device),
            cols=cols.to(device),
            off_rows=rows[len(diagonal) * tile :].to(device),
            zero_row=torch.zeros(1, dim, **on),
            ones_dim=torch.ones(dim, **on),
            ones=torch.ones(n + 1, 1, **on),
            pad=pad.to(**on),
            right_offset=(eps + BIG * pad).view(-1).to(**on),
            big=torch.full((n + 1, 1), BIG, **on),
            diagonal_values=(
                math.exp(-math.sqrt(eps)) / torch.tensor(sizes, dtype=torch.float64)
            ).to(**on),
            value_weights=value_weights.to(**on),
            point_weights=point_weights.to(**on),
        )


class FusedProximity(torch.autograd.Function):
    """(L,) proximity costs of L position tensors ``(N_l, dim)``, given their plan."""

    @staticmethod
    def forward(ctx, plan: ProximityPlan, *positions: torch.Tensor) -> torch.Tensor:
        tile, width = plan.tile, positions[0].shape[1] + 3
        points = torch.cat([*positions, plan.zero_row])  # (n + 1, dim), padding point last
        squares = torch.mv(points.square(), plan.ones_dim)
        left = torch.cat([points, plan.ones, squares[:, None], plan.pad], 1)
        right = torch.cat(
            [points * -2.0, (squares + plan.right_offset)[:, None], plan.ones, plan.big], 1
        )
        row_points = left.index_select(0, plan.rows).view(-1, tile, width)
        col_points = right.index_select(0, plan.cols).view(-1, tile, width)
        distance = torch.bmm(row_points, col_points.transpose(1, 2))  # d² + eps (+ BIG)
        distance[: plan.n_diagonal].diagonal(dim1=1, dim2=2).fill_(BIG)  # in diagonal_values
        distance.clamp_(plan.eps, MAX_SQUARED_DISTANCE)
        inverse = distance.rsqrt()
        kernel = torch.mul(distance, inverse, out=distance).neg_().exp_()  # exp(-r)
        values = torch.addmv(plan.diagonal_values, plan.value_weights, kernel.sum((1, 2)))
        if any(ctx.needs_input_grad[1:]):
            ctx.save_for_backward(kernel.mul_(inverse), row_points, left, points)  # k
        ctx.plan = plan
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: torch.Tensor):
        kernel, row_points, left, points = ctx.saved_tensors
        plan = ctx.plan
        tile, dim, off = plan.tile, points.shape[1], plan.n_diagonal
        rows = row_points[..., : dim + 1]  # [p, 1] of every block row
        cols = left.index_select(0, plan.cols[off * tile :]).view(-1, tile, dim + 3)
        # For each column point Σ_i k_ij [p_i, 1] (all blocks); for each row point of an
        # off-diagonal block Σ_j k_ij [p_j, 1] (diagonal blocks are symmetric: counted once).
        to_cols = torch.bmm(rows.transpose(1, 2), kernel)  # (blocks, dim + 1, tile)
        to_rows = torch.bmm(cols[..., : dim + 1].transpose(1, 2), kernel[off:].transpose(1, 2))
        sums = points.new_zeros(dim + 1, points.shape[0])
        sums.index_add_(1, plan.cols, to_cols.permute(1, 0, 2).reshape(dim + 1, -1))
        sums.index_add_(1, plan.off_rows, to_rows.permute(1, 0, 2).reshape(dim + 1, -1))
        n = points.shape[0] - 1
        scale = (plan.point_weights @ grad_values)[:, None]  # 2 / N² · upstream gradient
        grads = (sums[:dim, :n].T - points[:n] * sums[dim:, :n].T) * scale
        return (None, *grads.split(list(plan.sizes)))


@dataclass(frozen=True)
class TransportPlan:
    """Where each layer's pairs sit: post/pre rows of the points, a slice of the flat pairs."""

    point_sizes: tuple[int, ...]  # rows of each position tensor in the concatenated points
    layers: tuple[tuple[int, int, int, int], ...]  # (post start, N, pre start, M) per layer
    pair_counts: tuple[int, ...]  # N × M of each layer: its slice of the flat pair buffer
    eps: float
    norm: str
    ones_dim: torch.Tensor  # (dim,)
    ones: torch.Tensor  # (n, 1)
    inverse_pairs: torch.Tensor  # (n_layers,): 1 / (N M)

    @classmethod
    def build(
        cls,
        point_sizes: list[int],
        post: list[int],
        pre: list[int],
        shapes: list[tuple[int, ...]],
        dim: int,
        eps: float,
        norm: str,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TransportPlan:
        """``post[l]`` / ``pre[l]``: which position tensor holds layer l's neurons / inputs."""
        offsets = (0, *accumulate(point_sizes))
        on = {"device": device, "dtype": dtype}
        return cls(
            point_sizes=tuple(point_sizes),
            layers=tuple(
                (offsets[a], point_sizes[a], offsets[b], point_sizes[b])
                for a, b in zip(post, pre, strict=True)
            ),
            pair_counts=tuple(s[0] * s[1] for s in shapes),
            eps=eps,
            norm=norm,
            ones_dim=torch.ones(dim, **on),
            ones=torch.ones(sum(point_sizes), 1, **on),
            inverse_pairs=torch.tensor([1.0 / (s[0] * s[1]) for s in shapes], **on),
        )


def pair_weights(weight: torch.Tensor, norm: str) -> torch.Tensor:
    """g(W) per (out, in) pair, (N, M): |w| or w², summed over a convolution's kernel."""
    g = weight.abs() if norm == "l1" else weight.square()
    return g.sum((2, 3)) if g.dim() == 4 else g


class FusedTransport(torch.autograd.Function):
    """(L,) transport costs of L layers; ``tensors`` = the U position tensors, then L weights."""

    @staticmethod
    def forward(ctx, plan: TransportPlan, n_positions: int, *tensors: torch.Tensor):
        positions, weights = tensors[:n_positions], tensors[n_positions:]
        points = torch.cat(positions)
        squares = torch.mv(points.square(), plan.ones_dim)
        left = torch.cat([points, plan.ones, squares[:, None]], 1)
        right = torch.cat([points * -2.0, (squares + plan.eps)[:, None], plan.ones], 1).T
        distance = points.new_empty(sum(plan.pair_counts))
        for (post, n, pre, m), out in zip(
            plan.layers, distance.split(plan.pair_counts), strict=True
        ):
            torch.mm(left.narrow(0, post, n), right.narrow(1, pre, m), out=out.view(n, m))
        distance.clamp_min_(plan.eps)
        inverse = distance.rsqrt()
        distance.mul_(inverse)  # r
        # A linear weight enters as it is, a kernel as its l1 / l2 norm: |.| or the square of
        # that is the kernel sum of g.
        order = 1 if plan.norm == "l1" else 2
        raw = torch.cat(
            [
                torch.linalg.vector_norm(w, order, dim=(2, 3)).view(-1)
                if w.dim() == 4
                else w.view(-1)
                for w in weights
            ]
        )
        g = raw.abs() if plan.norm == "l1" else raw.square()
        dots = [
            torch.dot(r, g_layer)
            for r, g_layer in zip(
                distance.split(plan.pair_counts), g.split(plan.pair_counts), strict=True
            )
        ]
        values = torch.stack(dots) * plan.inverse_pairs
        if any(ctx.needs_input_grad[2:]):
            ctx.save_for_backward(distance, inverse, g, raw, left, points, *weights)
        ctx.plan, ctx.n_positions = plan, n_positions
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: torch.Tensor):
        distance, inverse, g, raw, left, points, *weights = ctx.saved_tensors
        plan, n_positions = ctx.plan, ctx.n_positions
        needs = ctx.needs_input_grad[2:]
        scales = (grad_values * plan.inverse_pairs).tolist()  # upstream gradient / (N M)
        grads: list[torch.Tensor | None] = [None] * len(needs)
        zero = points.new_zeros(())
        if any(needs[n_positions:]):
            # d/dw of r g(w) / (N M): r sign(w) (l1) or 2 r w (l2), the kernel sharing r.
            slopes = raw.sign().split(plan.pair_counts) if plan.norm == "l1" else None
            for layer, (weight, r) in enumerate(
                zip(weights, distance.split(plan.pair_counts), strict=True)
            ):
                if not needs[n_positions + layer]:
                    continue
                r = r.view(weight.shape[0], weight.shape[1])
                if plan.norm == "l2":
                    slope, value = weight, 2.0 * scales[layer]
                else:
                    slope, value = (
                        weight.sign() if weight.dim() == 4 else slopes[layer],
                        scales[layer],
                    )
                if weight.dim() == 4:
                    r = r[:, :, None, None]
                grad = torch.addcmul(zero, slope.view_as(weight), r, value=value)
                grads[n_positions + layer] = grad
        if any(needs[:n_positions]):
            dim = points.shape[1]
            h = g * inverse  # g / r (saved tensors stay intact for a retained graph)
            augmented = left.T[: dim + 1]  # (dim + 1, n): [p; 1]
            sums = points.new_zeros(dim + 1, points.shape[0])
            for (post, n, pre, m), h_layer, scale in zip(
                plan.layers, h.split(plan.pair_counts), scales, strict=True
            ):
                h_layer = h_layer.view(n, m)
                sums.narrow(1, post, n).addmm_(augmented.narrow(1, pre, m), h_layer.T, alpha=scale)
                sums.narrow(1, pre, m).addmm_(augmented.narrow(1, post, n), h_layer, alpha=scale)
            point_grads = points * sums[dim:].T - sums[:dim].T
            grads[:n_positions] = point_grads.split(plan.point_sizes)
        return (None, None, *grads)
