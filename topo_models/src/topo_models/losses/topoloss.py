"""TopoLoss (Deb, Deb & Murty, ICLR 2025): weight-space topography by a down/up blur.

A layer's output units are laid row-major on the most-square h × w sheet (h · w = n units,
h the largest divisor of n with h ≤ √n, so h ≤ w); each unit's feature is its flattened
incoming weight vector (a Linear row, or a Conv2d filter ``C_in·kh·kw``). The sheet is treated
as D feature maps of size h × w, down-sampled by (factor_h, factor_w) and up-sampled back to
h × w as ``F.interpolate`` does; the layer's loss is ``1 − mean_units cos(sheet, blurred)``, in
[0, 2]: 0 for a sheet already as smooth as its blur, about 1 for random weights. Minimising it
turns each unit's weights towards those of its neighbourhood (cosine ignores scale).

Details settled to match the ``topoloss`` package (0.0.2), the reference implementation:

* down-sampling passes ``scale_factor = (1/factor_h, 1/factor_w)`` (output side
  ``floor(side / factor)``, source coordinates scaled by the factor itself); up-sampling
  passes ``size = (h, w)``; ``align_corners=False``; ``"nearest"`` is torch's legacy nearest.
* the cosine is ``F.cosine_similarity``'s, over the D weights of each unit (each norm
  clamped at eps 1e-8: a unit whose weights are all zero has cosine 0), averaged over units.

Deviations, each deliberate:

* ``"antialiased"``: bilinear with ``antialias=True`` on the down-sampling. Plain bilinear
  down-sampling is a point sample (at φ = 8 each coarse pixel reads 4 of 64 units), so the
  "blur" is partly subsampling; the antialiased filter averages the whole footprint.
* refused (``TopoError``), where the original asserts or silently degrades: a prime (or 1)
  unit count, whose only sheet is 1 × n (a line, not a sheet); a factor < 1 or larger than
  its sheet side; a layer that is not Linear / Conv2d.
* ``TopoLoss`` sums ``w_l · loss_l``; topoloss averages ``τ_l · loss_l`` over its L layers, so
  its ``scale=τ`` is ``layer_weights = τ / L`` here. A layer of weight 0 is computed for
  logging without gradient (topoloss's ``scale=None``).

Speed: the blur is linear and separable, so it is applied as small matrices (probed from
``F.interpolate`` itself, hence the same conventions) instead of interpolating D maps of a
tiny sheet. When the coarse sheet has at most h + w units (e.g. factor 4 on ResNet-18's
convolutions) the cosines come from the coarse sheet alone, never forming the blurred one
(``_CoarseCosine``): several times faster on CPU than interpolating the maps, which matters
at 11 M weights.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.layer_weights import checked_layer_weights
from topo_models.losses.spatial_costs import unwrap_model

INTERPOLATIONS = ("bilinear", "nearest", "antialiased")
EPS = 1e-8  # as F.cosine_similarity: a norm below it counts as EPS


def sheet_shape(units: int) -> tuple[int, int]:
    """(h, w) of the most-square sheet for ``units``: h the largest divisor ≤ √units.

    64 → (8, 8), 1000 → (25, 40), 2048 → (32, 64); a prime gives (1, units).
    """
    if units < 1:
        raise TopoError("a sheet needs units", field="units", expected=">= 1", found=units)
    h = math.isqrt(units)
    while units % h:
        h -= 1
    return h, units // h


def cortical_sheet(weight: torch.Tensor) -> torch.Tensor:
    """weight: (out, in) or (out, in, kh, kw) → (h, w, D) view; unit u at (u // w, u % w)."""
    h, w = sheet_shape(weight.shape[0])
    return weight.reshape(h, w, -1)


def _check_factor(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TopoError("a blur factor is a number", field=field, expected=">= 1", found=value)
    if not (math.isfinite(value) and value >= 1):
        raise TopoError(
            "a blur factor down-samples the sheet, so it is >= 1",
            field=field,
            expected=">= 1",
            found=value,
        )
    return float(value)


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise TopoError(
            "unknown interpolation",
            field="interpolation",
            expected=INTERPOLATIONS,
            found=interpolation,
        )


def _check_weight(weight: torch.Tensor, factor_h: float, factor_w: float, field: str) -> None:
    """TopoError unless ``weight`` makes a 2-D sheet that both factors fit."""
    if weight.dim() not in (2, 4):
        raise TopoError(
            "TopoLoss takes a Linear or Conv2d weight",
            field=field,
            expected="(out, in) or (out, in, kh, kw)",
            found=tuple(weight.shape),
        )
    units = weight.shape[0]
    h, w = sheet_shape(units)
    if h == 1:
        raise TopoError(
            "the unit count is prime (or 1): its only sheet is 1 × n, a line that the 2-D blur "
            "cannot smooth; use a layer whose unit count has a divisor in 2..√n",
            field=field,
            expected="a non-prime unit count > 1",
            found=f"{units} units (sheet 1 × {units})",
        )
    for side, factor, name in ((h, factor_h, "factor_h"), (w, factor_w, "factor_w")):
        if factor > side:
            raise TopoError(
                f"{name} is larger than the sheet side it down-samples",
                field=field,
                expected=f"{name} <= {side} (sheet {h} × {w} of {units} units)",
                found=f"{name} = {factor}",
            )


def _resize(side: int, interpolation: str, factor: float | None, size: int | None) -> torch.Tensor:
    """The 1-D resampling operator ``F.interpolate`` applies along a side, (out, side) float64.

    Probed on a basis along the width of a 1-pixel-high image: the sheet's blur is separable,
    so this pins every convention (align_corners, scale from ``scale_factor``, legacy
    nearest, antialias) to ``F.interpolate``'s own. (Probing along the height would hit a bug
    of torch's CPU antialiased kernel, 2.14: an output one column wide repeats its first row.)
    """
    mode = "nearest" if interpolation == "nearest" else "bilinear"
    basis = torch.eye(side, dtype=torch.float64).view(1, side, 1, side)
    out = F.interpolate(
        basis,
        scale_factor=None if factor is None else (1.0, 1.0 / factor),
        size=None if size is None else (1, size),
        mode=mode,
        align_corners=None if mode == "nearest" else False,
        antialias=interpolation == "antialiased" and factor is not None,
    )
    return out[0, :, 0, :].t().contiguous()


@functools.lru_cache(maxsize=128)
def _operators(
    h: int, w: int, factor_h: float, factor_w: float, interpolation: str
) -> tuple[torch.Tensor, ...]:
    """Down (coarse, h or w) and up (h or w, coarse) operators of the rows and the columns."""
    down_h = _resize(h, interpolation, factor_h, None)
    down_w = _resize(w, interpolation, factor_w, None)
    up_h = _resize(down_h.shape[0], interpolation, None, h)
    up_w = _resize(down_w.shape[0], interpolation, None, w)
    return down_h, down_w, up_h, up_w


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product: the 2-D operator on row-major units from row and column operators."""
    return (a[:, None, :, None] * b[None, :, None, :]).reshape(a.shape[0] * b.shape[0], -1)


class _CoarseCosine(torch.autograd.Function):
    """cos(a_u, b_u) per unit from the coarse sheet alone, with a closed-form gradient.

    With coarse C = D·A (m × D) and blurred B = U·C: a_u·b_u = Σ_j U_uj (A Cᵀ)_uj and
    |b_u|² = (U C Cᵀ Uᵀ)_uu, so the (n × D) blurred sheet is never formed. Costs O(n·m·D)
    and a few passes over the weights (autograd of the same formula needs twice as many).
    """

    @staticmethod
    def forward(ctx, feats: torch.Tensor, down: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        coarse = down @ feats  # (m, D)
        dot = (up * (feats @ coarse.t())).sum(1)
        sb = ((up @ (coarse @ coarse.t())) * up).sum(1)
        sa = torch.linalg.vector_norm(feats, dim=1).square()
        na, nb = sa.clamp_min(EPS * EPS).sqrt(), sb.clamp_min(EPS * EPS).sqrt()
        cos = dot / (na * nb)
        ctx.save_for_backward(feats, coarse, down, up, cos, sa, sb, na, nb)
        return cos

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        feats, coarse, down, up, cos, sa, sb, na, nb = ctx.saved_tensors
        grad_dot = grad / (na * nb)
        # 2 ∂cos/∂|a|² and ∂cos/∂|b|²; zero where the norm is clamped at EPS
        grad_sa = -grad * cos / na.square() * (sa > EPS * EPS)
        grad_sb = -grad * cos / (2 * nb.square()) * (sb > EPS * EPS)
        grad_p = grad_dot[:, None] * up  # (n, m)
        grad_gram = up.t() @ (grad_sb[:, None] * up)  # (m, m), symmetric
        grad_coarse = grad_p.t() @ feats + 2 * (grad_gram @ coarse)
        # through A Cᵀ and C = D A at once: [grad_p | Dᵀ] @ [C ; grad_coarse]
        grad_feats = torch.cat([grad_p, down.t()], 1) @ torch.cat([coarse, grad_coarse], 0)
        return grad_feats.addcmul_(feats, grad_sa[:, None]), None, None


def _loss(
    weight: torch.Tensor, factor_h: float, factor_w: float, interpolation: str
) -> torch.Tensor:
    """The unchecked loss of one weight (see the module docstring), in the weight's dtype
    whatever autocast says (a half-precision blur would bias the cosines)."""
    with torch.autocast(weight.device.type, enabled=False):
        return _loss_of(weight, factor_h, factor_w, interpolation)


def _loss_of(
    weight: torch.Tensor, factor_h: float, factor_w: float, interpolation: str
) -> torch.Tensor:
    units = weight.shape[0]
    h, w = sheet_shape(units)
    feats = weight.reshape(units, -1)  # (n, D), unit u = row u = sheet (u // w, u % w)
    down_h, down_w, up_h, up_w = (
        t.to(weight) for t in _operators(h, w, factor_h, factor_w, interpolation)
    )
    if down_h.shape[0] * down_w.shape[0] <= h + w:  # small coarse sheet: the fast path
        cos = _CoarseCosine.apply(feats, _kron(down_h, down_w), _kron(up_h, up_w))
        return 1 - cos.mean()
    # the definition: blur rows, then columns, and compare unit by unit
    blur_h, blur_w = up_h @ down_h, up_w @ down_w  # (h, h), (w, w)
    depth = feats.shape[1]
    blurred = (blur_h @ feats.view(h, w * depth)).view(h, w, depth)
    blurred = torch.matmul(blur_w, blurred).view(units, depth)
    return 1 - F.cosine_similarity(feats, blurred, dim=1, eps=EPS).mean()


def laplacian_pyramid_loss(
    weight: torch.Tensor,
    factor_h: float,
    factor_w: float,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """TopoLoss of one Linear or Conv2d weight: ``1 − mean cos(sheet, blurred sheet)``.

    Args:
        weight: (out, in) or (out, in, kh, kw); the ``out`` units make the sheet.
        factor_h: down-sampling factor of the sheet's rows, 1 ≤ factor_h ≤ h.
        factor_w: down-sampling factor of the sheet's columns, 1 ≤ factor_w ≤ w.
        interpolation: ``"bilinear"`` (original default), ``"nearest"`` or ``"antialiased"``.

    Returns:
        Scalar in [0, 2], differentiable in ``weight``.

    Raises:
        TopoError: a weight of another rank, a prime unit count, a factor out of range.
    """
    _check_interpolation(interpolation)
    factor_h = _check_factor(factor_h, "factor_h")
    factor_w = _check_factor(factor_w, "factor_w")
    _check_weight(weight, factor_h, factor_w, "weight")
    return _loss(weight, factor_h, factor_w, interpolation)


def _per_layer(
    value: float | Mapping[str, float], names: list[str], field: str
) -> dict[str, float]:
    """One factor for every layer, or a mapping that names exactly the loss's layers."""
    if not isinstance(value, Mapping):
        factor = _check_factor(value, field)
        return dict.fromkeys(names, factor)
    if set(value) != set(names):
        raise TopoError(
            f"a per-layer {field} names exactly the layers of layer_weights",
            field=field,
            expected=sorted(names),
            found=sorted(value),
        )
    return {name: _check_factor(value[name], f"{field}.{name}") for name in names}


class TopoLoss(nn.Module):
    """Σ_l w_l · TopoLoss_l over named Linear / Conv2d layers of any model.

    ``loss(model)`` returns ``(total, per_layer)``: the weighted sum for training and each
    layer's unweighted value (detached) for logging. Layers are resolved through
    ``model.named_modules()`` (inside (Distributed)DataParallel) and checked at the first call
    for a model, before any step trains; ``check(model)`` does it earlier.

    Args:
        layer_weights: module name → weight ≥ 0; a weight 0 layer is logged, not trained.
        factor_h: the rows' down-sampling factor, for every layer or per layer name.
        factor_w: the columns' down-sampling factor, for every layer or per layer name.
        interpolation: ``"bilinear"``, ``"nearest"`` or ``"antialiased"``.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float],
        factor_h: float | Mapping[str, float],
        factor_w: float | Mapping[str, float],
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        _check_interpolation(interpolation)
        self.layer_weights = checked_layer_weights(layer_weights, "TopoLoss")
        names = list(self.layer_weights)
        self.factor_h = _per_layer(factor_h, names, "factor_h")
        self.factor_w = _per_layer(factor_w, names, "factor_w")
        self.interpolation = interpolation
        self._checked: weakref.ref | None = None  # the model last checked (not owned)

    def check(self, model: nn.Module) -> dict[str, nn.Module]:
        """The layers the loss covers, name → module; TopoError for any bad layer."""
        model = unwrap_model(model)
        modules = dict(model.named_modules())
        layers: dict[str, nn.Module] = {}
        for name in self.layer_weights:
            if name not in modules:
                candidates = [
                    n for n, m in modules.items() if isinstance(m, (nn.Linear, nn.Conv2d))
                ]
                raise TopoError(
                    "layer_weights names a layer the model does not have",
                    field=f"layer_weights.{name}",
                    expected=f"one of the model's Linear / Conv2d layers {candidates}",
                    found=name,
                )
            module = modules[name]
            if not isinstance(module, (nn.Linear, nn.Conv2d)):
                raise TopoError(
                    "TopoLoss takes the weights of a Linear or Conv2d layer",
                    field=f"layer_weights.{name}",
                    expected="nn.Linear or nn.Conv2d",
                    found=type(module).__name__,
                )
            _check_weight(module.weight, self.factor_h[name], self.factor_w[name], name)
            layers[name] = module
        return layers

    def channel_positions(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Where the loss puts each output unit (channel) of its layers, in [0, 1]²: the
        row-major cell centres of the layer's sheet (what the topography of a run is measured
        on, see ``topo_models.positions.tile_channels``)."""
        from topo_models.positions.channel_layouts import channel_grid

        return {name: channel_grid(m.weight.shape[0]) for name, m in self.check(model).items()}

    def forward(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """model → (total: scalar, {layer: its loss, detached})."""
        model = unwrap_model(model)
        if self._checked is None or self._checked() is not model:
            self.check(model)
            self._checked = weakref.ref(model)
        total: torch.Tensor | None = None
        per_layer: dict[str, torch.Tensor] = {}
        for name, strength in self.layer_weights.items():
            weight = model.get_submodule(name).weight
            with torch.set_grad_enabled(torch.is_grad_enabled() and strength > 0):
                value = _loss(weight, self.factor_h[name], self.factor_w[name], self.interpolation)
            per_layer[name] = value.detach()
            if strength > 0:
                total = strength * value if total is None else total + strength * value
        if total is None:  # every weight 0: a zero leaf, so no parameter gets a zero gradient
            first = next(iter(per_layer.values()))
            total = torch.zeros((), device=first.device, dtype=first.dtype).requires_grad_()
        return total, per_layer
