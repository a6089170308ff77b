"""Both spatial-network costs, weighted, in one call: the objective's ``SpatialCosts``.

On CPU float32 this is one C call and one autograd node (``native_costs.NativeSpatialCosts``)
for every layer's proximity and transport and the gradient of their weighted sum; elsewhere it
adds the totals of ``ProximityCost`` and ``TransportCost`` (``spatial_costs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.native_costs import (
    MAX_OWNERS,
    MAX_TASKS,
    CostLayout,
    NativeSpatialCosts,
    native_library,
)
from topo_models.losses.spatial_costs import (
    DISTANCE_EPS,
    ProximityCost,
    TransportCost,
    _LayerCost,
    _signature,
    unwrap_model,
)


def _index_of(module: nn.Module, owners: list[nn.Module]) -> int:
    """Position of ``module`` in ``owners`` (by identity), appending it if new."""
    for index, owner in enumerate(owners):
        if owner is module:
            return index
    owners.append(module)
    return len(owners) - 1


class SpatialCosts(_LayerCost):
    """``proximity · mean_ℓ P_ℓ + transport · mean_ℓ T_ℓ`` over layers ``where`` (None: every
    spatial layer), the objective of a spatial network in one call.

    Why: on CPU float32 both costs, over every layer, and the gradient of their weighted sum
    are one C call and one autograd node (``NativeSpatialCosts``) — the per-layer values of
    ``ProximityCost`` / ``TransportCost`` each need their own gradient, which costs a second
    pass in backward. Elsewhere it adds those two objects' totals.

    ``cost(model)`` returns ``(total, values)``; ``values``, for logging, holds the means
    ``"proximity"`` / ``"transport"`` and each layer's ``"proximity/<layer>"`` /
    ``"transport/<layer>"``: host floats from the C call, detached tensors otherwise (``float``
    reads both). A cost of strength 0 is not computed and has no entries.
    """

    def __init__(
        self,
        proximity: float,
        transport: float,
        where: Sequence[str] | None = None,
        norm: str = "l2",
        eps: float = DISTANCE_EPS,
    ) -> None:
        super().__init__(where)
        for field, value in (("proximity", proximity), ("transport", transport)):
            if not (math.isfinite(value) and value >= 0):
                raise TopoError("a cost strength is a finite number >= 0", field=field, found=value)
        self.proximity, self.transport = float(proximity), float(transport)
        self._proximity = ProximityCost(where, eps=eps)
        self._transport = TransportCost(where, norm=norm)

    def _resolve(self, model: nn.Module):
        """The owners of all positions involved, the transport weights' modules, the
        proximity and transport index lists, and the logging keys of the C values."""
        p_names, p_modules = self._proximity._resolve(model) if self.proximity else ([], [])
        t_names, t_owners, post, pre = (
            self._transport._resolve(model) if self.transport else ([], [], [], [])
        )
        owners: list[nn.Module] = []
        proximity = [_index_of(m, owners) for m in p_modules]
        post = [_index_of(t_owners[k], owners) for k in post]
        pre = [_index_of(t_owners[k], owners) for k in pre]
        keys = [f"proximity/{name}" for name in p_names] + [f"transport/{n}" for n in t_names]
        keys += ["proximity", "transport"]
        active = {"proximity": self.proximity != 0.0, "transport": self.transport != 0.0}
        kept = [(key, i) for i, key in enumerate(keys) if active[key.split("/")[0]]]
        return owners, [owners[k] for k in post], proximity, post, pre, kept

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        model = unwrap_model(model)
        owners, weight_modules, proximity, post, pre, kept = self._resolve_cached(model)
        positions = [owner.positions for owner in owners]
        weights = [module.weight for module in weight_modules]
        tensors = positions + weights
        if not tensors:  # nothing to compute
            return self._separate(model)
        layout = self._cached_plan(
            _signature(tensors), lambda: self._layout(positions, weights, proximity, post, pre)
        )
        if (
            layout is None
            or native_library() is None  # switched off since the layout was built
            or not all(t.is_contiguous() for t in tensors)
        ):
            return self._separate(model)
        total = NativeSpatialCosts.apply(layout, *tensors)
        values = layout.values[:]  # host floats: nothing to detach, no float() per metric
        return total, {key: values[index] for key, index in kept}

    def _layout(self, positions, weights, proximity, post, pre) -> CostLayout | None:
        """The C call's layout, or None where the C kernels do not apply (device, dtype,
        positions of different dimensions, no compiler)."""
        tensors = positions + weights
        if (
            len({p.shape[1] for p in positions}) != 1
            or len(positions) > MAX_OWNERS
            or len(proximity) + len(post) > MAX_TASKS
            or not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            or native_library() is None
        ):
            return None
        return CostLayout(
            sizes=[p.shape[0] for p in positions],
            dim=positions[0].shape[1],
            eps=self._proximity.eps,
            proximity=proximity,
            post=post,
            pre=pre,
            kernels=[w[0, 0].numel() for w in weights],
            norm=self._transport.norm,
            alpha=self.proximity,
            beta=self.transport,
        )

    def _separate(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sum of ``ProximityCost`` and ``TransportCost`` (fused torch kernels or plain)."""
        total = torch.zeros((), device=next(model.parameters()).device)
        values: dict[str, torch.Tensor] = {}
        for name, strength, cost in (
            ("proximity", self.proximity, self._proximity),
            ("transport", self.transport, self._transport),
        ):
            if strength == 0.0:
                continue
            mean, per_layer = cost(model)
            total = total + strength * mean
            values[name] = mean.detach()
            values.update({f"{name}/{layer}": v.detach() for layer, v in per_layer.items()})
        return total, values
