"""TDANN's spatial correlation loss as pure, batched tensor math.

For one neighbourhood of Q units with responses R (batch, Q) and sheet coordinates (Q, 2) in mm,
let r be the strict lower triangle of the Pearson correlation matrix of the units across the
batch and s the strict lower triangle of 1 / (d + 1), d the Euclidean distance in mm:

* relative (TDANN default, SL_Rel):  (1 − pearson(r, s)) / 2   ∈ [0, 1]
* absolute (the "old_scl" models, SL_Abs):  mean |r − s|

(Margalit et al. 2024, Neuron). Units with zero variance across the batch
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


def _standardise_with_norm(
    responses: torch.Tensor, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`standardise` plus each unit's 1 / ‖x − mean‖ (0 for constant units)."""
    centred = responses - responses.mean(dim=-2, keepdim=True)
    square_norm = centred.square().sum(dim=-2, keepdim=True)  # = std² · (B − 1)
    magnitude = responses.abs().mean(dim=-2, keepdim=True)
    live = square_norm > (_CONSTANT_TOLERANCE**2 * (responses.shape[-2] - 1)) * magnitude.square()
    if valid is not None:
        live = live & valid[:, None, :]
    inverse_norm = torch.where(live, square_norm.rsqrt(), 0.0)
    return centred * inverse_norm, live, inverse_norm


def standardise(
    responses: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, B, Q) responses → (z, live): zᵀz is the correlation matrix; constant units give 0.

    z_bq = (x_bq − mean_q) / (std_q · sqrt(B − 1)), std with Bessel's correction, and
    ``live`` (G, 1, Q) marks units that vary (and are not padding, per ``valid`` (G, Q)).
    """
    z, live, _ = _standardise_with_norm(responses, valid)
    return z, live


def inverse_distance(coordinates: torch.Tensor) -> torch.Tensor:
    """(G, Q, 2) coordinates in mm → (G, Q, Q) matrix 1 / (d + 1).

    Distances from exact coordinate differences (not ‖a‖² + ‖b‖² − 2ab, which loses nearby
    pairs to cancellation), in one kernel; the rest in place: this Q×Q matrix is the loss's
    largest elementwise cost.
    """
    distance = torch.cdist(coordinates, coordinates, compute_mode="donot_use_mm_for_euclid_dist")
    return distance.add_(1.0).reciprocal_()


class _RelativeLoss(torch.autograd.Function):
    """The relative loss of G neighbourhoods as one autograd node with a closed-form backward.

    Autograd of the ~90 small operations below costs more than the forward itself at TDANN's
    sizes; written out, the gradient is a few (batch × Q) products. With r the pair
    correlations, t = s − s̄, P pairs and ρ = cov / √(var_r var_s):
    ∂L/∂r_ij = −½ (t_ij / √(var_r var_s) − ρ (r_ij − r̄) / var_r), and since r_ij = z_i · z_j,
    ∂L/∂z = z G (G the symmetric matrix of those values, zero diagonal), which is a sum of
    z S − (1 − s̄) z (S the shifted similarity, its product saved by the forward),
    (z zᵀ) z − z and (Σ_q z_q) 1ᵀ − z. The standardisation's backward then follows z = c / ‖c‖.
    """

    @staticmethod
    def forward(
        ctx, responses: torch.Tensor, similarity: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        # Float64 for the sums over correlations: when they cluster tightly (deep layers at
        # init) their variance is lost to cancellation in float32. The Q×Q products stay float32.
        z64, live, inverse_norm = _standardise_with_norm(responses.double(), valid)
        z = z64.float()
        n_units = (
            torch.full(
                (responses.shape[0],),
                float(responses.shape[2]),
                dtype=torch.float64,
                device=responses.device,
            )
            if valid is None
            else valid.sum(dim=1, dtype=torch.float64)
        )
        pairs = (n_units * (n_units - 1) / 2).clamp_min(1)
        # s statistics over valid pairs (padding is zeroed by the caller); s_ii = 1/(0 + 1) = 1.
        # float32 reductions (tree-summed, accurate); float64 here would copy the Q×Q matrix.
        sum_s = (similarity.sum(dim=(1, 2)).double() - n_units) / 2
        sum_s2 = (torch.linalg.vector_norm(similarity, dim=(1, 2)).double().square() - n_units) / 2
        s_mean = sum_s / pairs
        var_s = (sum_s2 - sum_s * s_mean).clamp_min(0)
        # r statistics: the diagonal of zᵀz is 1 for live units and 0 otherwise.
        n_live = live.sum(dim=(1, 2), dtype=torch.float64)
        unit_sum = z64.sum(dim=2, keepdim=True)  # (G, B, 1): Σ_q z_q
        sum_r = (unit_sum.square().sum(dim=(1, 2)) - n_live) / 2
        gram = z64 @ z64.transpose(1, 2)  # (G, B, B); ‖z zᵀ‖_F = ‖zᵀ z‖_F
        sum_r2 = (gram.square().sum(dim=(1, 2)) - n_live) / 2
        var_r = (sum_r2 - sum_r.square() / pairs).clamp_min(0)
        # Σ over pairs of r·(s − s̄) is the covariance (Σ (s − s̄) = 0): shifting s first keeps
        # the float32 products small where r̄·s̄ would swamp the covariance. Padded units have
        # z = 0, so their rows and columns of s take no part.
        product = z @ similarity.sub_(s_mean.float()[:, None, None])  # (G, B, Q)
        quadratic = (z * product).sum(dim=(1, 2), dtype=torch.float64)
        covariance = (quadratic - n_live * (1.0 - s_mean)) / 2
        # Pearson is undefined when all correlations (or all distances) are equal: count it as
        # 0. The thresholds are per-pair variances far below what the sums can resolve.
        defined = (var_r > 1e-12 * pairs) & (var_s > 1e-10 * pairs)
        scale = (var_r * var_s).clamp_min(1e-300).rsqrt()
        pearson = torch.where(defined, covariance * scale, 0.0)
        # ∂L/∂z = a (z S − (1 − s̄) z) + b ((z zᵀ) z − z − r̄ ((Σ_q z_q) 1ᵀ − z)), see above.
        a = torch.where(defined, -0.5 * scale, 0.0)
        b = torch.where(defined, 0.5 * pearson / var_r.clamp_min(1e-300), 0.0)
        ctx.save_for_backward(
            z64, inverse_norm, product, gram, unit_sum, a, b, s_mean, sum_r / pairs
        )
        return ((1.0 - pearson) / 2).to(responses.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        z, inverse_norm, product, gram, unit_sum, a, b, s_mean, r_mean = ctx.saved_tensors
        a, b, r_mean = a[:, None, None], b[:, None, None], r_mean[:, None, None]
        grad_z = a * (product.double() - (1.0 - s_mean[:, None, None]) * z)
        grad_z += b * (gram @ z - z - r_mean * (unit_sum - z))
        grad_z *= grad.double()[:, None, None]
        # z = c / ‖c‖ per unit (0 for constant units), c = x − mean over the batch.
        grad_c = inverse_norm * (grad_z - z * (grad_z * z).sum(dim=1, keepdim=True))
        grad_x = grad_c - grad_c.mean(dim=1, keepdim=True)
        return grad_x.to(grad.dtype), None, None


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
    similarity = inverse_distance(coordinates.detach().float())  # (G, Q, Q)
    if valid is not None and not bool(valid.all()):  # padded units take no part in any pair
        maskf = valid.float()
        similarity.mul_(maskf[:, :, None]).mul_(maskf[:, None, :])
    else:
        valid = None
    if version == "relative":
        return _RelativeLoss.apply(responses, similarity, valid)
    z = standardise(responses.double(), valid)[0].float()
    n_units = (
        torch.full((responses.shape[0],), float(responses.shape[2]), device=responses.device)
        if valid is None
        else valid.sum(dim=1).float()
    )
    pairs = (n_units * (n_units - 1) / 2).clamp_min(1).double()
    lower = torch.ones_like(similarity, dtype=torch.bool).tril_(diagonal=-1)
    if valid is not None:
        lower &= valid[:, :, None] & valid[:, None, :]
    correlation = (z.transpose(1, 2) @ z).clamp(-1.0, 1.0)
    gap = ((correlation - similarity).abs() * lower).sum(dim=(1, 2), dtype=torch.float64)
    return (gap / pairs).to(responses.dtype)


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
