"""The wiring cost of the Interactive Topographic Network (Blauch, Behrmann & Plaut 2022, PNAS).

Units sit at fixed places on a sheet; a connection costs more the stronger and the longer it is.
For a weight W (out, in) between post units at p_i and pre units at q_j, with d_ij = |p_i − q_j|₂
and a_ij = |w_ij|^p, the variants of ITN's ``SpatialLoss`` are:

* ``"jj"`` (ITN's default, after Jacobs & Jordan 1992): Σ_ij a_ij d_ij^q / (1 + a_ij). A weak
  connection pays about a_ij d_ij^q, a strong one at most d_ij^q (the cost saturates), so the
  cost drives weak long connections to zero rather than shrinking the strong ones.
* ``"dot"``: Σ_ij a_ij d_ij^q, a distance-weighted weight decay (SpatialNetworks' transport cost
  without its 1 / (N M), with fixed positions).
* ``"norm"``: Σ_ij a_ij d_ij^q / Σ_ij a_ij, the ``"dot"`` cost per unit of weight: scaling every
  weight down does not lower it, only moving weight to shorter connections does (0 when all
  weights are 0).

As in ITN, distances are Euclidean and p = q = 2 by default; its optional toroidal wrap of the
sheet and its ``"jju"`` (unit-norm rows) and ``"sernn"`` (communicability) variants are left out.

Convolutions: units are channels, as in SpatialNetworks' conv layers (one position per channel,
shared by all its locations). A channel pair (i, j) is one connection whose strength is the L2
norm of its kh × kw kernel, so with p = 2, a_ij = Σ_k w_ijk² (the sum over the kernel that
SpatialNetworks' transport cost takes) and the saturation of ``"jj"`` acts once per channel pair.

Positions are fixed: ``WiringCost`` keeps each layer's d^q in a non-persistent buffer computed
once, so a step costs a few elementwise passes over the weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.layer_weights import checked_layer_weights
from topo_models.losses.spatial_costs import unwrap_model

Variant = Literal["jj", "norm", "dot"]
VARIANTS: tuple[str, ...] = ("jj", "norm", "dot")
PositionPair = tuple[ArrayLike | torch.Tensor, ArrayLike | torch.Tensor]


def _check_exponents(p: float, q: float, variant: str) -> None:
    for field, value in (("p", p), ("q", q)):
        number = isinstance(value, Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value > 0):
            raise TopoError(
                "the wiring cost's exponents are finite and > 0",
                field=field,
                expected="> 0 (ITN: 2)",
                found=value,
            )
    if variant not in VARIANTS:
        raise TopoError(
            "unknown wiring cost variant", field="variant", expected=VARIANTS, found=variant
        )


def _check_positions(positions: np.ndarray | torch.Tensor, field: str) -> None:
    """(N, dim) with N, dim >= 1 and every value finite."""
    if positions.ndim != 2 or positions.shape[0] < 1 or positions.shape[1] < 1:
        raise TopoError(
            "positions are one row per unit",
            field=field,
            expected="(units, dim), e.g. (units, 2)",
            found=tuple(positions.shape),
        )
    values = (
        positions.detach().cpu().double().numpy()
        if isinstance(positions, torch.Tensor)
        else positions
    )
    rows = np.flatnonzero(~np.isfinite(values).all(1))
    if len(rows):
        raise TopoError(
            "positions must be finite",
            field=field,
            expected="finite coordinates",
            found=f"{len(rows)} row(s) with NaN or inf, first row {rows[0]}: "
            f"{values[rows[0]].tolist()}",
        )


def _check_counts(
    weight_shape: tuple[int, ...], post: int, pre: int, layer: str, field: str
) -> None:
    """Positions count the weight's output (rows) and input (columns) units."""
    for side, index, found in (("post", 0, post), ("pre", 1, pre)):
        if weight_shape[index] != found:
            kind = "output" if side == "post" else "input"
            raise TopoError(
                f"{side} positions do not match the layer's {kind} units",
                field=field.format(side=side),
                expected=f"{weight_shape[index]} positions, one per {kind} unit of {layer} "
                f"(weight {weight_shape})",
                found=f"{found} positions",
            )


def connection_strength_pow(weight: torch.Tensor, p: float) -> torch.Tensor:
    """a_ij = |w_ij|^p (out, in); for a conv weight (out, in, kh, kw), w_ij is the L2 norm of the
    kernel. The gradient at a zero weight is 0 for every p > 0 (torch would give NaN for p < 1)."""
    if weight.dim() == 4:
        if p == 2:
            return weight.square().sum((2, 3))
        strength = torch.linalg.vector_norm(weight, dim=(2, 3))
    elif p == 2:
        return weight.square()
    else:
        strength = weight.abs()
    if p >= 1:
        return strength.pow(p)
    alive = strength > 0
    return torch.where(alive, torch.where(alive, strength, 1.0).pow(p), 0.0)


def _cost(weight: torch.Tensor, distance_q: torch.Tensor, p: float, variant: str) -> torch.Tensor:
    """The cost from the weight and the precomputed d^q (out, in); no checks."""
    a = connection_strength_pow(weight, p)
    if variant == "jj":
        return (a * distance_q / (1 + a)).sum()
    numerator = (a * distance_q).sum()
    if variant == "dot":
        return numerator
    # "norm": 0 / 0 (all weights zero) is 0, with a finite gradient.
    total = a.sum()
    return numerator / torch.where(total > 0, total, 1.0)


def wiring_cost(
    weight: torch.Tensor,
    post_positions: torch.Tensor,
    pre_positions: torch.Tensor,
    p: float = 2,
    q: float = 2,
    variant: Variant = "jj",
) -> torch.Tensor:
    """ITN's wiring cost of one layer (see the module docstring for the variants).

    Args:
        weight: (out, in), or (out, in, kh, kw) for a convolution (channel pairs, L2 over the
            kernel).
        post_positions: (out, dim) positions of the output units, row i ↔ ``weight[i]``.
        pre_positions: (in, dim) positions of the input units, row j ↔ ``weight[:, j]``.
        p: exponent of the weight magnitude (ITN: 2).
        q: exponent of the Euclidean distance (ITN: 2).
        variant: ``"jj"`` (ITN's default), ``"norm"`` or ``"dot"``.

    Returns:
        Scalar ≥ 0 in the distance units^q; positions get no gradient.
    """
    _check_exponents(p, q, variant)
    if weight.dim() not in (2, 4):
        raise TopoError(
            "the weight pairs output units (rows) with input units (columns)",
            field="weight",
            expected="(out, in) or (out, in, kh, kw)",
            found=tuple(weight.shape),
        )
    _check_positions(post_positions, "post_positions")
    _check_positions(pre_positions, "pre_positions")
    _check_counts(
        tuple(weight.shape), len(post_positions), len(pre_positions), "weight", "{side}_positions"
    )
    if post_positions.shape[1] != pre_positions.shape[1]:
        raise TopoError(
            "post and pre positions live in spaces of different dimension",
            field="pre_positions",
            expected=f"dim {post_positions.shape[1]}",
            found=f"dim {pre_positions.shape[1]}",
        )
    dtype = torch.promote_types(post_positions.dtype, weight.dtype)
    distances = torch.cdist(
        post_positions.detach().to(weight.device, dtype),
        pre_positions.detach().to(weight.device, dtype),
        compute_mode="donot_use_mm_for_euclid_dist",  # exact, not |a|² + |b|² − 2ab
    )
    return _cost(weight, distances.pow(q), p, variant)


def weight_layer(
    model: nn.Module, name: str, what: str = "the wiring cost"
) -> nn.Linear | nn.Conv2d:
    """The Linear / Conv2d layer ``name`` of ``model``; TopoError if absent or of another kind
    (``what`` names the regulariser in the error)."""
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        layer = None
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        candidates = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        shown = candidates[:8] + (["…"] if len(candidates) > 8 else [])
        raise TopoError(
            f"{what} names a layer the model does not have"
            if layer is None
            else f"{what} needs a Linear or Conv2d layer",
            field=f"layer_weights.{name}",
            expected=f"a Linear or Conv2d layer of {type(model).__name__}: {shown}",
            found=name if layer is None else f"{name} ({type(layer).__name__})",
        )
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise TopoError(
            "grouped convolutions are not supported (weight columns are not input channels)",
            field=f"{name}.groups",
            expected=1,
            found=layer.groups,
        )
    return layer


def unit_sheet(n_units: int, seed: int = 0) -> np.ndarray:
    """(n_units, 2) positions i.i.d. uniform on [0, 1]², drawn from (seed, n_units) alone."""
    return np.random.default_rng([int(seed), int(n_units)]).uniform(size=(int(n_units), 2))


def unit_sheet_positions(
    model: nn.Module, layer_names: Iterable[str], seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (post, pre)}`` for ``WiringCost``: channels (Linear: features) on unit sheets.

    Every channel space of width n gets the same layout ``unit_sheet(n, seed)``. A layer's input
    channels are its producer's output channels, of the same width, so they keep one place
    from the producer's post positions to the consumer's pre positions, without tracing the
    graph (ResNet-18's stages are then one 64-, 128-, 256- and 512-channel sheet each).
    """
    model = unwrap_model(model)
    positions = {}
    for name in layer_names:
        n_out, n_in = weight_layer(model, name).weight.shape[:2]
        positions[name] = (unit_sheet(n_out, seed), unit_sheet(n_in, seed))
    return positions


class WiringCost(nn.Module):
    """Σ_l w_l · wiring_cost(layer l) over named Linear / Conv2d layers of a trunk, fixed positions.

    ``cost(model)`` returns ``(total, per_layer)``: the weighted sum for training and each
    layer's cost (detached) for logging. Layers of weight 0 are still computed, for logging.

    Args:
        positions: layer name → (post (out, dim), pre (in, dim)) positions, e.g. from
            ``unit_sheet_positions``; rows follow the weight's output / input channels. None
            (what a config gives): ``unit_sheet_positions(model, layers, seed)``, laid out
            when the model is first seen (:meth:`check`).
        layer_weights: layer name → weight ≥ 0 for every layer the cost covers.
        p: exponent of the weight magnitude (ITN: 2).
        q: exponent of the distance (ITN: 2).
        variant: ``"jj"``, ``"norm"`` or ``"dot"`` (module docstring).
        seed: of the unit sheets when ``positions`` is None.
    """

    def __init__(
        self,
        positions: Mapping[str, PositionPair] | None = None,
        layer_weights: Mapping[str, float] | None = None,
        p: float = 2,
        q: float = 2,
        variant: Variant = "jj",
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_exponents(p, q, variant)
        layer_weights = checked_layer_weights(layer_weights, "the wiring cost")
        for name in layer_weights:
            if positions is not None and name not in positions:
                raise TopoError(
                    "layer has no positions",
                    field=f"layer_weights.{name}",
                    expected=sorted(positions),
                    found=name,
                )
        self.layer_names: tuple[str, ...] = tuple(layer_weights)
        self.p, self.q, self.variant = float(p), float(q), variant
        self.register_buffer(
            "weights",
            torch.tensor([float(layer_weights[n]) for n in self.layer_names]),
            persistent=False,
        )
        self.seed = int(seed)
        self.units: dict[str, tuple[int, int]] = {}
        self.post_positions: dict[str, np.ndarray] = {}
        if positions is not None:
            self._place(positions)

    def _place(self, positions: Mapping[str, PositionPair]) -> None:
        """Check the positions and keep each layer's distance^q as a buffer."""
        for index, name in enumerate(self.layer_names):
            post, pre = (_as_array(x) for x in positions[name])
            _check_positions(post, f"positions.{name} (post)")
            _check_positions(pre, f"positions.{name} (pre)")
            if post.shape[1] != pre.shape[1]:
                raise TopoError(
                    "post and pre positions live in spaces of different dimension",
                    field=f"positions.{name}",
                    expected=f"dim {post.shape[1]}",
                    found=f"dim {pre.shape[1]}",
                )
            self.units[name] = (len(post), len(pre))
            self.post_positions[name] = post
            distances = torch.cdist(
                torch.from_numpy(post),
                torch.from_numpy(pre),
                compute_mode="donot_use_mm_for_euclid_dist",
            )
            self.register_buffer(
                f"distance_q_{index}",
                distances.pow(self.q).to(torch.get_default_dtype()),
                persistent=False,
            )

    def check(self, model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
        """The covered layers of ``model`` (laying out unit sheets the first time when no
        positions were given); TopoError if one is missing or has other unit counts."""
        if not self.units:
            self._place(unit_sheet_positions(model, self.layer_names, self.seed))
        return self.layers(model)

    def channel_positions(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Each covered layer's output channels (Linear: features) where the cost places them,
        ``(out, dim)``: the given post positions, else the seeded unit sheet."""
        self.check(model)
        return dict(self.post_positions)

    def layers(self, model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
        """The covered layers of ``model``; TopoError if one is missing or has other unit counts."""
        model = unwrap_model(model)
        layers = []
        for name in self.layer_names:
            layer = weight_layer(model, name)
            _check_counts(
                tuple(layer.weight.shape), *self.units[name], name, f"positions.{name} ({{side}})"
            )
            layers.append(layer)
        return layers

    def forward(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """model → (total, {layer: cost (detached)})."""
        values = []
        for index, layer in enumerate(self.check(model)):
            weight = layer.weight
            distance_q = getattr(self, f"distance_q_{index}").to(weight.device, weight.dtype)
            with torch.autocast(weight.device.type, enabled=False):
                values.append(_cost(weight, distance_q, self.p, self.variant))
        per_layer = torch.stack(values)
        total = (per_layer * self.weights.to(per_layer.device, per_layer.dtype)).sum()
        logged = {name: per_layer[i].detach() for i, name in enumerate(self.layer_names)}
        return total, logged


def _as_array(positions: ArrayLike | torch.Tensor) -> np.ndarray:
    """Positions as a float64 numpy array (they are fixed, so no gradient is kept)."""
    if isinstance(positions, torch.Tensor):
        positions = positions.detach().cpu()
    return np.asarray(positions, dtype=np.float64)
