"""Fused forward and closed-form backward of the spatial costs, for many layers per call.

Why: written as plain autograd, proximity + transport over the five layers of the default
SpatialMLP take ~200 small kernels and ~2× a whole training step on a 2-core CPU (these: ~0.7×;
benchmarks/RESULTS.md, 2026-12-06). Each function here handles every layer of a cost in one call of
~15 kernels forward and ~15 backward, with the analytic gradients of the two costs
(r = sqrt(d² + eps) throughout):

* proximity P = mean_ij exp(-r_ij):  dP/dp_i = -(2 / N²) Σ_j k_ij (p_i - p_j),  k = exp(-r) / r.
  All layers' pair matrices are cut into ``tile × tile`` blocks computed as one batch; the matrix
  is symmetric, so only blocks on and above the diagonal are computed (the others count twice)
  and the diagonal terms, exp(-sqrt(eps)) each, are added in closed form.
* transport T = mean_ij r_ij g(w_ij):  dT/dw_ij = r_ij g'(w_ij) / (N M),
  dT/dp_i = Σ_j h_ij (p_i - q_j) / (N M) and dT/dq_j = -Σ_i h_ij (p_i - q_j) / (N M), h = g / r.
  Each layer's (N, M) differences are written into one flat buffer laid out like the weights, so
  the elementwise work runs once over all layers and no weight is gathered.

Differences are exact (p_i - p_j per coordinate, as in the plain definitions), so values and
gradients have float rounding only (squared distances from augmented dot products lost ~1e-4
of the gradients to cancellation); coordinates come first, ``(dim, …)``, so every sum over them
adds whole planes. NaN and inf propagate as in the plain definitions, each layer's into its
own value. Both functions are ``once_differentiable`` (no double backward) and work in float32 /
float64 on any device.
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


def _squared_norms(difference: torch.Tensor, offset: torch.Tensor | float) -> torch.Tensor:
    """Σ_c difference[c]² + offset over the leading (coordinate) dimension: a multiply-add per
    coordinate plane, about twice as fast on a CPU as ``square().sum(0)``."""
    total = difference[0] * difference[0]
    for plane in difference[1:]:
        total.addcmul_(plane, plane)
    return total.add_(offset)


def _block_indices(offset: int, size: int, block: int, tile: int, pad: int) -> torch.Tensor:
    """(tile,) point indices of block ``block`` of a layer at ``offset``; ``pad`` past its end."""
    local = torch.arange(block * tile, (block + 1) * tile)
    return torch.where(local < size, local + offset, torch.full_like(local, pad))


@dataclass(frozen=True)
class ProximityPlan:
    """Block indices and constants for layers of ``sizes`` neurons (one per model and device)."""

    sizes: tuple[int, ...]
    tile: int
    n_diagonal: int  # blocks on a layer's diagonal come first in the batch
    rows: torch.Tensor  # (n_blocks * tile,) point of every block row; n (padding) past a layer
    cols: torch.Tensor  # (n_blocks * tile,)
    off_cols: torch.Tensor  # columns of the off-diagonal blocks only
    offset: torch.Tensor  # (n_blocks, tile, tile): eps, BIG on padding and on i = j
    diagonal_values: torch.Tensor  # (n_layers,): the i = j terms, exp(-sqrt(eps)) / N
    block_layers: torch.Tensor  # (n_blocks,) int64: the layer of each block
    block_weights: torch.Tensor  # (n_blocks,): block sum → layer mean, 1 / N² (2 / N² above)
    point_layers: torch.Tensor  # (n,) int64: the layer of each point
    point_weights: torch.Tensor  # (n,): 2 / N² of each point's layer

    @classmethod
    def build(
        cls, sizes: list[int], eps: float, device: torch.device, dtype: torch.dtype
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
        pairs_rows, pairs_cols = rows.view(-1, tile, 1), cols.view(-1, 1, tile)
        excluded = (pairs_rows == n) | (pairs_cols == n)  # padding
        excluded[: len(diagonal)] |= torch.eye(tile, dtype=torch.bool)  # i = j: closed form
        # Per-layer sums by index (not a product with zeros for the other layers): a NaN in one
        # layer stays in that layer's value.
        block_weights = [(1.0 if a == c else 2.0) / sizes[layer] ** 2 for layer, a, c in blocks]
        point_layers = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        inverse_squares = 1.0 / torch.tensor(sizes, dtype=torch.float64) ** 2
        offset = torch.full(excluded.shape, eps, dtype=torch.float64).masked_fill_(excluded, BIG)
        on = {"device": device, "dtype": dtype}
        return cls(
            sizes=tuple(sizes),
            tile=tile,
            n_diagonal=len(diagonal),
            rows=rows.to(device),
            cols=cols.to(device),
            off_cols=cols[len(diagonal) * tile :].to(device),
            offset=offset.to(**on),
            diagonal_values=(
                math.exp(-math.sqrt(eps)) / torch.tensor(sizes, dtype=torch.float64)
            ).to(**on),
            block_layers=torch.tensor([layer for layer, _, _ in blocks], device=device),
            block_weights=torch.tensor(block_weights, dtype=torch.float64).to(**on),
            point_layers=point_layers.to(device),
            point_weights=(2.0 * inverse_squares[point_layers]).to(**on),
        )


class FusedProximity(torch.autograd.Function):
    """(L,) proximity costs of L position tensors ``(N_l, dim)``, given their plan."""

    @staticmethod
    def forward(ctx, plan: ProximityPlan, *positions: torch.Tensor) -> torch.Tensor:
        tile = plan.tile
        padding = positions[0].new_zeros(1, positions[0].shape[1])
        points = torch.cat([*positions, padding]).T.contiguous()  # (dim, n + 1), padding last
        row_points = points.index_select(1, plan.rows).view(len(points), -1, tile, 1)
        col_points = points.index_select(1, plan.cols).view(len(points), -1, 1, tile)
        difference = row_points - col_points  # (dim, blocks, tile, tile): p_i - p_j
        distance = _squared_norms(difference, plan.offset)  # d² + eps (+ BIG)
        distance.clamp_(max=MAX_SQUARED_DISTANCE).sqrt_()  # r
        kernel = torch.neg(distance).exp_()  # exp(-r)
        block_sums = kernel.sum((1, 2)) * plan.block_weights
        values = plan.diagonal_values.index_add(0, plan.block_layers, block_sums)
        if any(ctx.needs_input_grad[1:]):
            ctx.save_for_backward(kernel.div_(distance), difference)  # k
        ctx.plan, ctx.n_points = plan, points.shape[1] - 1
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: torch.Tensor):
        kernel, difference = ctx.saved_tensors
        plan, n = ctx.plan, ctx.n_points
        pulls = difference * kernel  # k_ij (p_i - p_j)
        # Σ_j k_ij (p_i - p_j) for every row point; for each column point of an off-diagonal
        # block Σ_i k_ij (p_j - p_i) (diagonal blocks hold both orders: counted by rows).
        sums = pulls.new_zeros(len(pulls), n + 1)
        sums.index_add_(1, plan.rows, pulls.sum(3).flatten(1))
        sums.index_add_(1, plan.off_cols, pulls[:, plan.n_diagonal :].sum(2).flatten(1).neg_())
        # -2 / N² · the upstream gradient of each point's layer
        scale = grad_values.index_select(0, plan.point_layers) * plan.point_weights
        grads = sums[:, :n].mul_(scale.neg_()).T
        return (None, *grads.split(list(plan.sizes)))


@dataclass(frozen=True)
class TransportPlan:
    """Where each layer's pairs sit: post/pre rows of the points, a slice of the flat pairs."""

    point_sizes: tuple[int, ...]  # rows of each position tensor in the concatenated points
    layers: tuple[tuple[int, int, int, int], ...]  # (post start, N, pre start, M) per layer
    pair_counts: tuple[int, ...]  # N × M of each layer: its slice of the flat pair buffer
    eps: float
    norm: str
    inverse_pairs: torch.Tensor  # (n_layers,): 1 / (N M)

    @classmethod
    def build(
        cls,
        point_sizes: list[int],
        post: list[int],
        pre: list[int],
        shapes: list[tuple[int, ...]],
        eps: float,
        norm: str,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TransportPlan:
        """``post[l]`` / ``pre[l]``: which position tensor holds layer l's neurons / inputs."""
        offsets = (0, *accumulate(point_sizes))
        return cls(
            point_sizes=tuple(point_sizes),
            layers=tuple(
                (offsets[a], point_sizes[a], offsets[b], point_sizes[b])
                for a, b in zip(post, pre, strict=True)
            ),
            pair_counts=tuple(s[0] * s[1] for s in shapes),
            eps=eps,
            norm=norm,
            inverse_pairs=torch.tensor(
                [1.0 / (s[0] * s[1]) for s in shapes], device=device, dtype=dtype
            ),
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
        points = torch.cat(positions).T.contiguous()  # (dim, n)
        difference = points.new_empty(len(points), sum(plan.pair_counts))  # p_i - q_j
        for (post, n, pre, m), out in zip(
            plan.layers, difference.split(plan.pair_counts, 1), strict=True
        ):
            torch.sub(
                points[:, post : post + n, None],
                points[:, None, pre : pre + m],
                out=out.view(-1, n, m),
            )
        distance = _squared_norms(difference, plan.eps).sqrt_()  # r
        # g(w) per (post, pre) pair, summed over a kernel. (|w| summed, not
        # linalg.vector_norm(ord=1), which takes ~25× as long over 3 × 3 kernels on a CPU.)
        g = torch.cat([pair_weights(w, plan.norm).reshape(-1) for w in weights])
        dots = [
            torch.dot(r, g_layer)
            for r, g_layer in zip(
                distance.split(plan.pair_counts), g.split(plan.pair_counts), strict=True
            )
        ]
        values = torch.stack(dots) * plan.inverse_pairs
        if any(ctx.needs_input_grad[2:]):
            ctx.save_for_backward(distance, difference, g, *weights)
        ctx.plan, ctx.n_positions = plan, n_positions
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: torch.Tensor):
        distance, difference, g, *weights = ctx.saved_tensors
        plan, n_positions = ctx.plan, ctx.n_positions
        needs = ctx.needs_input_grad[2:]
        scales = (grad_values * plan.inverse_pairs).tolist()  # upstream gradient / (N M)
        grads: list[torch.Tensor | None] = [None] * len(needs)
        zero = distance.new_zeros(())
        if any(needs[n_positions:]):
            # d/dw of r g(w) / (N M): r sign(w) (l1) or 2 r w (l2), the kernel sharing r.
            for layer, (weight, r) in enumerate(
                zip(weights, distance.split(plan.pair_counts), strict=True)
            ):
                if not needs[n_positions + layer]:
                    continue
                r = r.view(weight.shape[0], weight.shape[1])
                if plan.norm == "l2":
                    slope, value = weight, 2.0 * scales[layer]
                else:
                    slope, value = weight.sign(), scales[layer]
                if weight.dim() == 4:
                    r = r[:, :, None, None]
                grads[n_positions + layer] = torch.addcmul(zero, slope, r, value=value)
        if any(needs[:n_positions]):
            pulls = difference * (g / distance)  # h_ij (p_i - q_j); saved tensors stay intact
            sums = distance.new_zeros(len(difference), sum(plan.point_sizes))
            for (post, n, pre, m), layer_pulls, scale in zip(
                plan.layers, pulls.split(plan.pair_counts, 1), scales, strict=True
            ):
                layer_pulls = layer_pulls.view(-1, n, m)
                sums[:, post : post + n].add_(layer_pulls.sum(2), alpha=scale)
                sums[:, pre : pre + m].sub_(layer_pulls.sum(1), alpha=scale)
            grads[:n_positions] = sums.T.split(plan.point_sizes)
        return (None, None, *grads)
