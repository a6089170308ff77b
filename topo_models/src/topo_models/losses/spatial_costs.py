"""Proximity and transport costs of spatial networks (Wołczyk et al. 2019).

* proximity, within a layer: mean_ij exp(-sqrt(|p_i - p_j|² + eps)) over all N² pairs, the
  diagonal included (as the original). Neurons have a size and repel each other.
* transport, between a layer and the spatial layer feeding it:
  mean_ij |p_i^post - p_j^pre|₂ · g(W_ij), g = |w| ("l1") or w² ("l2"). Long, strong
  connections are expensive: connected neurons are pulled together and weights shrink with
  distance. For a convolution ``W`` is (out, in, kh, kw) and g is summed over the kernel, giving
  one term per (out, in) channel pair, each channel having one position.

Every distance is sqrt(d² + eps) (eps = 1e-8 unless given, as the original), so gradients stay
finite at coincident points; the distance is off by at most sqrt(eps) = 1e-4.

The functions are the plain, exact definitions (autograd through broadcast differences). The
objects, built from layer names like topoloss, return ``(total, {layer: cost})`` and compute
all their layers in one fused call with closed-form gradients (``spatial_cost_kernels``, the
one fast path; float32/64 on any device, plain autograd otherwise). ``SpatialCosts`` is the
objective of a spatial network: both costs, weighted.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.spatial_cost_kernels import (
    KERNEL_DTYPES,
    FusedProximity,
    FusedTransport,
    ProximityPlan,
    TransportPlan,
    pair_weights,
)
from topo_models.spatial.layers import is_spatial

DISTANCE_EPS = 1e-8
NORMS = ("l1", "l2")


def _check_positions(positions: torch.Tensor, field: str) -> None:
    if positions.dim() != 2 or positions.shape[0] < 1:
        raise TopoError(
            "positions are one row per neuron",
            field=field,
            expected="(N, dim) with N >= 1",
            found=tuple(positions.shape),
        )


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise TopoError("unknown transport norm", field="norm", expected=NORMS, found=norm)


def _distances(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """(N, M) sqrt(|a_i - b_j|² + eps); exact differences, so 0 gradient at coincident points."""
    return (a[:, None, :] - b[None, :, :]).square().sum(-1).add(eps).sqrt()


def proximity_cost(positions: torch.Tensor, eps: float = DISTANCE_EPS) -> torch.Tensor:
    """Mean over all N² pairs (diagonal included) of exp(-sqrt(|p_i - p_j|² + eps)).

    Args:
        positions: (N, dim) neuron positions of one layer.
        eps: added under the square root; keeps the gradient finite at coincident points.

    Returns:
        Scalar in (0, 1]; about 1/N for neurons far apart.
    """
    _check_positions(positions, "positions")
    return torch.exp(-_distances(positions, positions, eps)).mean()


def transport_cost(
    positions_post: torch.Tensor,
    positions_pre: torch.Tensor,
    weight: torch.Tensor,
    norm: str = "l2",
) -> torch.Tensor:
    """Mean over (post i, pre j) pairs of sqrt(|p_i - q_j|² + 1e-8) · g(W_ij).

    Args:
        positions_post: (N, dim) positions of the layer's neurons (rows of ``weight``).
        positions_pre: (M, dim) positions of the neurons feeding it (columns of ``weight``).
        weight: (N, M), or (N, M, kh, kw) for a convolution: g is then summed over the kernel.
        norm: ``"l1"`` (g = |w|) or ``"l2"`` (g = w²); the distance is always Euclidean.

    Returns:
        Scalar ≥ 0: (1 / (N M)) Σ_ij distance_ij · g_ij.
    """
    _check_norm(norm)
    _check_positions(positions_post, "positions_post")
    _check_positions(positions_pre, "positions_pre")
    _check_pair_shapes(tuple(positions_post.shape), tuple(positions_pre.shape), weight, "weight")
    distances = _distances(positions_post, positions_pre, DISTANCE_EPS)
    return (distances * pair_weights(weight, norm)).mean()


def _check_pair_shapes(post: tuple, pre: tuple, weight: torch.Tensor, field: str) -> None:
    expected = f"({post[0]}, {pre[0]}) or ({post[0]}, {pre[0]}, kh, kw)"
    if weight.dim() not in (2, 4) or tuple(weight.shape[:2]) != (post[0], pre[0]):
        raise TopoError(
            "the weight must pair the post neurons (rows) with the pre neurons (columns)",
            field=field,
            expected=expected,
            found=tuple(weight.shape),
        )
    if post[1] != pre[1]:
        raise TopoError(
            "post and pre positions live in spaces of different dimension",
            field=field,
            expected=f"dim {post[1]}",
            found=f"dim {pre[1]}",
        )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside (Distributed)DataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def spatial_layers_of(model: nn.Module) -> dict[str, nn.Module]:
    """Spatial layers in network order: ``model.spatial_layers()`` or ``named_modules()``."""
    if hasattr(model, "spatial_layers"):
        return dict(model.spatial_layers())
    return {name: module for name, module in model.named_modules() if is_spatial(module)}


def spatial_predecessor(model: nn.Module, name: str, layers: dict[str, nn.Module]) -> str | None:
    """The spatial layer feeding ``name``: ``model.predecessor`` or the previous spatial one."""
    if hasattr(model, "predecessor"):
        return model.predecessor(name)
    names = list(layers)
    index = names.index(name)
    return names[index - 1] if index > 0 else None


class _LayerCost:
    """Resolution of ``where`` against a model, cached per model (weakly)."""

    def __init__(self, where: Sequence[str] | None) -> None:
        if where is not None:
            if isinstance(where, str) or not all(isinstance(n, str) for n in where):
                raise TopoError(
                    "where is a list of layer names",
                    field="where",
                    expected="list[str] | None",
                    found=where,
                )
            if len(where) == 0:
                raise TopoError(
                    "empty where: use None for every spatial layer, or build no cost",
                    field="where",
                    expected="None or at least one spatial layer name",
                    found=list(where),
                )
        self.where = None if where is None else list(where)
        self._model: weakref.ref | None = None
        self._resolved: object = None
        self._plan: tuple[tuple, object] | None = None

    def check(self, model: nn.Module) -> list[str]:
        """The spatial layer names the cost covers; TopoError for a bad ``where`` name."""
        model = unwrap_model(model)
        layers = spatial_layers_of(model)
        if not layers:
            raise TopoError(
                "the model has no spatial layers",
                field="model",
                expected="SpatialLinear / SpatialConv2d modules",
                found=type(model).__name__,
            )
        if self.where is None:
            return list(layers)
        modules = dict(model.named_modules())
        for name in self.where:
            if name not in modules:
                raise TopoError(
                    "where names a layer the model does not have",
                    field="where",
                    expected=f"spatial layers {list(layers)}",
                    found=name,
                )
            if not is_spatial(modules[name]):
                raise TopoError(
                    "where names a layer that is not spatial (it has no positions)",
                    field="where",
                    expected=f"spatial layers {list(layers)}",
                    found=f"{name} ({type(modules[name]).__name__})",
                )
        return list(self.where)

    def _resolve_cached(self, model: nn.Module):
        if self._model is None or self._model() is not model:
            self._resolved = self._resolve(model)
            self._model, self._plan = weakref.ref(model), None
        return self._resolved

    def _cached_plan(self, key: tuple, build):
        if self._plan is None or self._plan[0] != key:
            self._plan = (key, build())
        return self._plan[1]


def tensor_signature(tensors: Sequence[torch.Tensor]) -> tuple:
    return tuple((tuple(t.shape), t.device, t.dtype) for t in tensors)


def kernels_apply(tensors: Sequence[torch.Tensor], positions: Sequence[torch.Tensor]) -> bool:
    """Whether the fused kernels apply: one float32/64 dtype, one device, one position dim."""
    first = tensors[0]
    return (
        first.dtype in KERNEL_DTYPES
        and all(t.dtype == first.dtype and t.device == first.device for t in tensors)
        and len({p.shape[1] for p in positions}) == 1
    )


PlanCache = Callable[[tuple, Callable[[], object]], object]


def proximity_values(
    positions: Sequence[torch.Tensor], eps: float, cached: PlanCache
) -> torch.Tensor:
    """(L,) proximity cost of each position tensor: the fused kernel where it applies, else the
    plain definition. ``cached(key, build)`` returns the caller's plan for ``key``."""
    if not kernels_apply(positions, positions):
        return torch.stack([proximity_cost(p, eps) for p in positions])
    first = positions[0]
    plan = cached(
        tensor_signature(positions),
        lambda: ProximityPlan.build(
            [p.shape[0] for p in positions], eps, first.device, first.dtype
        ),
    )
    with torch.autocast(first.device.type, enabled=False):
        return FusedProximity.apply(plan, *positions)


def transport_values(
    positions: Sequence[torch.Tensor],
    post: list[int],
    pre: list[int],
    weights: Sequence[torch.Tensor],
    norm: str,
    cached: PlanCache,
) -> torch.Tensor:
    """(L,) transport cost of layer l: between ``positions[post[l]]`` and ``positions[pre[l]]``
    through ``weights[l]``; the fused kernel where it applies, else the plain definition."""
    tensors = [*positions, *weights]
    if not kernels_apply(tensors, positions):
        return torch.stack(
            [
                transport_cost(positions[i], positions[j], w.to(positions[i].dtype), norm)
                for i, j, w in zip(post, pre, weights, strict=True)
            ]
        )
    first = positions[0]
    plan = cached(
        tensor_signature(tensors),
        lambda: TransportPlan.build(
            [p.shape[0] for p in positions],
            post,
            pre,
            [tuple(w.shape) for w in weights],
            DISTANCE_EPS,
            norm,
            first.device,
            first.dtype,
        ),
    )
    with torch.autocast(first.device.type, enabled=False):
        return FusedTransport.apply(plan, len(positions), *tensors)


class ProximityCost(_LayerCost):
    """Proximity cost over layers ``where`` (None: every spatial layer).

    ``cost(model)`` returns ``(total, per_layer)``: the mean over the layers (scale it by the
    proximity weight α) and each layer's cost, views of one (L,) result.
    """

    def __init__(self, where: Sequence[str] | None = None, eps: float = DISTANCE_EPS) -> None:
        super().__init__(where)
        if not eps > 0:
            raise TopoError("eps must be positive", field="eps", expected="> 0", found=eps)
        self.eps = float(eps)

    def _resolve(self, model: nn.Module) -> tuple[list[str], list[nn.Module]]:
        names = self.check(model)
        modules = dict(model.named_modules())
        return names, [modules[name] for name in names]

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = unwrap_model(model)
        names, modules = self._resolve_cached(model)
        positions = [module.positions for module in modules]
        values = proximity_values(positions, self.eps, self._cached_plan)
        return values.mean(), dict(zip(names, values.unbind(), strict=True))


class TransportCost(_LayerCost):
    """Transport cost over layers ``where`` (None: every spatial layer) that have a predecessor.

    The first spatial layer has none (pixels have no positions) and contributes nothing.
    ``cost(model)`` returns ``(total, per_layer)``: the mean over the layers that have one, and
    their costs; with none the total is a zero that backward accepts (a leaf, so no parameter
    gets a zero gradient — AdamW would otherwise decay it) and ``per_layer`` is empty.
    """

    def __init__(self, where: Sequence[str] | None = None, norm: str = "l2") -> None:
        super().__init__(where)
        _check_norm(norm)
        self.norm = norm

    def _resolve(self, model: nn.Module) -> tuple[list[str], list[nn.Module], list[int], list[int]]:
        """Layers with a predecessor, the modules owning the positions involved (the first
        covered layer alone when no layer has one), and each layer's own (``post``) and its
        predecessor's (``pre``) owner index."""
        layers = spatial_layers_of(model)
        modules = dict(model.named_modules())
        covered = self.check(model)
        names, post, pre = [], [], []
        owners: list[nn.Module] = []
        for name in covered:
            previous = spatial_predecessor(model, name, layers)
            if previous is None:
                continue
            for module in (modules[name], modules[previous]):
                if all(module is not owner for owner in owners):
                    owners.append(module)
            names.append(name)
            post.append(next(i for i, o in enumerate(owners) if o is modules[name]))
            pre.append(next(i for i, o in enumerate(owners) if o is modules[previous]))
            _check_pair_shapes(
                tuple(modules[name].positions.shape),
                tuple(modules[previous].positions.shape),
                modules[name].weight,
                f"{name}.weight (predecessor {previous})",
            )
        return names, owners or [modules[covered[0]]], post, pre

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = unwrap_model(model)
        names, owners, post, pre = self._resolve_cached(model)
        positions = [owner.positions for owner in owners]
        if not names:
            zero = torch.zeros((), device=positions[0].device, dtype=positions[0].dtype)
            return zero.requires_grad_(), {}
        weights = [owners[k].weight for k in post]
        values = transport_values(positions, post, pre, weights, self.norm, self._cached_plan)
        return values.mean(), dict(zip(names, values.unbind(), strict=True))


class SpatialCosts:
    """``proximity · mean_ℓ P_ℓ + transport · mean_ℓ T_ℓ`` over layers ``where`` (None: every
    spatial layer): the objective of a spatial network, one ``ProximityCost`` and one
    ``TransportCost`` weighted.

    ``cost(model)`` returns ``(total, values)``; ``values``, for logging, holds the detached
    means ``"proximity"`` / ``"transport"`` and each layer's ``"proximity/<layer>"`` /
    ``"transport/<layer>"``. A cost of strength 0 is not computed and has no entries.
    """

    def __init__(
        self,
        proximity: float,
        transport: float,
        where: Sequence[str] | None = None,
        norm: str = "l2",
        eps: float = DISTANCE_EPS,
    ) -> None:
        for field, value in (("proximity", proximity), ("transport", transport)):
            if not (math.isfinite(value) and value >= 0):
                raise TopoError("a cost strength is a finite number >= 0", field=field, found=value)
        self.proximity, self.transport = float(proximity), float(transport)
        self.costs = {
            "proximity": ProximityCost(where, eps=eps),
            "transport": TransportCost(where, norm=norm),
        }

    def check(self, model: nn.Module) -> list[str]:
        """The spatial layer names the costs cover; TopoError for a bad ``where`` name."""
        return self.costs["proximity"].check(model)

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = torch.zeros((), device=next(model.parameters()).device)
        values: dict[str, torch.Tensor] = {}
        for name, strength in (("proximity", self.proximity), ("transport", self.transport)):
            if strength == 0.0:
                continue
            mean, per_layer = self.costs[name](model)
            total = total + strength * mean
            values[name] = mean.detach()
            values.update({f"{name}/{layer}": v.detach() for layer, v in per_layer.items()})
        return total, values
