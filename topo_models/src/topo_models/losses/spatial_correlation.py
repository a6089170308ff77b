"""TDANN's spatial correlation loss as pure, batched tensor math.

For one neighbourhood of Q units with responses R (batch, Q) and sheet coordinates (Q, 2) in mm,
let r be the strict lower triangle of the Pearson correlation matrix of the units across the
batch and s the strict lower triangle of 1 / (d + 1), d the Euclidean distance in mm:

* relative (TDANN default, SL_Rel):  (1 − pearson(r, s)) / 2   ∈ [0, 1]
* absolute (the "old_scl" models, SL_Abs):  mean |r − s|

(Margalit et al. 2024, Neuron; reference/tdann.md §3). Units with zero variance across the batch
get correlation 0 with every unit, never NaN.

The relative version never forms the Q×Q correlation matrix: with z the standardised responses
(batch, Q), every sum Pearson needs is a contraction —
Σ r = (‖Σ_q z_q‖² − Σ diag) / 2, Σ r² = (‖z zᵀ‖²_F − Σ diag²) / 2 and
Σ r·s = (Σ_b z_b S z_bᵀ − Σ diag) / 2 — so its cost is one (batch × Q)·(Q × Q) product per
neighbourhood instead of several passes over a Q×Q correlation matrix.
Neighbourhoods of different sizes are padded to one width and masked, so every layer and every
neighbourhood of a step is one batched computation.
"""

from __future__ import annotations

from typing import Literal

import torch

from topo_models.errors import TopoError

Version = Literal["relative", "absolute"]
VERSIONS: tuple[str, ...] = ("relative", "absolute")

# A unit whose standard deviation is below this fraction of its mean magnitude (or exactly zero)
# counts as constant: floating-point noise around a constant must not become a correlation.
_CONSTANT_TOLERANCE = 1e-6


def standardise(responses: torch.Tensor) -> torch.Tensor:
    """(G, B, Q) responses → z with zᵀz = correlation matrix; constant units become 0.

    z_bq = (x_bq − mean_q) / (std_q · sqrt(B − 1)), std with Bessel's correction.
    """
    batch = responses.shape[-2]
    centred = responses - responses.mean(dim=-2, keepdim=True)
    norm = centred.square().sum(dim=-2, keepdim=True).sqrt()  # = std · sqrt(B − 1)
    scale = responses.abs().mean(dim=-2, keepdim=True) * (batch - 1) ** 0.5
    constant = norm <= _CONSTANT_TOLERANCE * scale
    safe_norm = torch.where(constant, torch.ones_like(norm), norm)
    return torch.where(constant, torch.zeros_like(centred), centred / safe_norm)


def inverse_distance(coordinates: torch.Tensor) -> torch.Tensor:
    """(G, Q, 2) coordinates in mm → (G, Q, Q) matrix 1 / (d + 1)."""
    x, y = coordinates[..., 0], coordinates[..., 1]
    dx = x[:, :, None] - x[:, None, :]
    dy = y[:, :, None] - y[:, None, :]
    # In place: this Q×Q matrix is the loss's largest elementwise cost.
    return dx.square_().add_(dy.square_()).sqrt_().add_(1.0).reciprocal_()


class _SymmetricQuadraticForm(torch.autograd.Function):
    """Σ_b z_b S z_bᵀ per group for a constant symmetric S, with a one-product backward.

    d/dz Σ_b z_b S z_bᵀ = 2 z S, which the forward already computed: saving it halves the
    (batch × Q)·(Q × Q) products autograd would otherwise run.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, symmetric: torch.Tensor) -> torch.Tensor:
        product = z @ symmetric  # (G, B, Q)
        ctx.save_for_backward(product)
        return (z * product).sum(dim=(1, 2), dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (product,) = ctx.saved_tensors
        return 2.0 * grad.to(product.dtype)[:, None, None] * product, None


def _check_inputs(responses: torch.Tensor, coordinates: torch.Tensor, version: str) -> None:
    if version not in VERSIONS:
        raise TopoError(
            "unknown spatial loss version", field="version", expected=VERSIONS, found=version
        )
    if responses.dim() != 3 or coordinates.dim() != 3 or coordinates.shape[-1] != 2:
        raise TopoError(
            "bad shapes for the spatial correlation loss",
            field="responses / coordinates",
            expected="(G, batch, Q) and (G, Q, 2)",
            found=(tuple(responses.shape), tuple(coordinates.shape)),
        )
    if responses.shape[0] != coordinates.shape[0] or responses.shape[2] != coordinates.shape[1]:
        raise TopoError(
            "responses and coordinates disagree on neighbourhoods or units",
            field="responses / coordinates",
            expected="same G and Q",
            found=(tuple(responses.shape), tuple(coordinates.shape)),
        )
    if responses.shape[1] < 2:
        raise TopoError(
            "correlations across the batch need at least two samples",
            field="batch size",
            expected=">= 2",
            found=responses.shape[1],
        )


def batched_spatial_correlation_loss(
    responses: torch.Tensor,
    coordinates: torch.Tensor,
    valid: torch.Tensor | None = None,
    version: Version = "relative",
) -> torch.Tensor:
    """Spatial correlation loss of G neighbourhoods at once.

    Args:
        responses: (G, batch, Q) responses of each neighbourhood's units; padded units are 0.
        coordinates: (G, Q, 2) unit positions in mm; no gradient flows into them.
        valid: (G, Q) bool, False marks padding (units excluded from every pair). None: all valid.
        version: ``"relative"`` or ``"absolute"``.

    Returns:
        (G,) loss of each neighbourhood.
    """
    _check_inputs(responses, coordinates, version)
    groups, _, width = responses.shape
    if valid is None:
        valid = torch.ones(groups, width, dtype=torch.bool, device=responses.device)
    mask = valid.to(torch.float64)
    # Float64 for the sums over correlations: when they cluster tightly (deep layers at init)
    # their variance is lost to cancellation in float32. The Q×Q products stay float32.
    z64 = standardise(responses.double()) * mask[:, None, :]
    z = z64.float()
    similarity = inverse_distance(coordinates.detach().float())  # (G, Q, Q)
    n_units = mask.sum(dim=1)
    pairs = (n_units * (n_units - 1) / 2).clamp_min(1)
    if version == "absolute":
        lower = torch.tril(valid[:, :, None] & valid[:, None, :], diagonal=-1)
        correlation = (z.transpose(1, 2) @ z).clamp(-1.0, 1.0)
        gap = ((correlation - similarity).abs() * lower).sum(dim=(1, 2), dtype=torch.float64)
        return (gap / pairs).to(responses.dtype)
    maskf = mask.float()
    diag_r = z64.square().sum(dim=1)  # (G, Q): 1 for varying units, 0 for constant/padded
    column_sums = z64.sum(dim=2)  # (G, B): Σ_q z_bq
    sum_r = (column_sums.square().sum(dim=1) - diag_r.sum(dim=1)) / 2
    gram = z64 @ z64.transpose(1, 2)  # (G, B, B); ‖z zᵀ‖_F = ‖zᵀ z‖_F
    sum_r2 = (gram.square().sum(dim=(1, 2)) - diag_r.square().sum(dim=1)) / 2
    if not bool(valid.all()):  # padded units take no part in any pair
        similarity.mul_(maskf[:, :, None]).mul_(maskf[:, None, :])
    # float32 reductions (tree-summed, accurate); a float64 dtype here would copy the Q×Q matrix.
    sum_s = (similarity.sum(dim=(1, 2)).double() - n_units) / 2  # s_ii = 1
    norm_s = torch.linalg.vector_norm(similarity, dim=(1, 2)).double()
    sum_s2 = (norm_s.square() - n_units) / 2
    s_mean = sum_s / pairs
    var_s = (sum_s2 - sum_s * s_mean).clamp_min(0)
    # Σ over pairs of r·(s − s̄), which is the covariance (Σ (s − s̄) = 0): shifting s first keeps
    # float32 products small where r̄·s̄ would swamp the covariance. Padded units have z = 0.
    similarity.sub_(s_mean.float()[:, None, None])
    quadratic = _SymmetricQuadraticForm.apply(z, similarity)
    covariance = (quadratic - (diag_r * (1.0 - s_mean)[:, None]).sum(dim=1)) / 2
    var_r = (sum_r2 - sum_r.square() / pairs).clamp_min(0)
    # Pearson is undefined when all correlations (or all distances) are equal: count it as 0.
    # The thresholds are per-pair variances far below what the sums can resolve.
    defined = (var_r > 1e-12 * pairs) & (var_s > 1e-10 * pairs)
    denominator = torch.where(defined, var_r * var_s, 1.0).sqrt()
    pearson = torch.where(defined, covariance / denominator, 0.0)
    return ((1.0 - pearson) / 2).to(responses.dtype)


def spatial_correlation_loss(
    responses: torch.Tensor, coordinates: torch.Tensor, version: Version = "relative"
) -> torch.Tensor:
    """Spatial correlation loss of one neighbourhood.

    Args:
        responses: (batch, Q) responses of the neighbourhood's units across the batch.
        coordinates: (Q, 2) the units' sheet positions in mm.
        version: ``"relative"`` (``(1 − pearson(r, s)) / 2``) or ``"absolute"`` (``mean|r − s|``).

    Returns:
        0-d tensor.
    """
    if responses.dim() != 2 or coordinates.dim() != 2:
        raise TopoError(
            "spatial_correlation_loss takes one neighbourhood",
            field="responses / coordinates",
            expected="(batch, Q) and (Q, 2)",
            found=(tuple(responses.shape), tuple(coordinates.shape)),
        )
    return batched_spatial_correlation_loss(responses[None], coordinates[None], None, version)[0]
