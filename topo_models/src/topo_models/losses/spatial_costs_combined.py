"""Both spatial-network costs, weighted, in one call: the objective's ``SpatialCosts``.

On CPU float32 this is one C call and one autograd node (``native_costs_combined``) for every
layer's proximity and transport and the gradient of their weighted sum; elsewhere it adds the
totals of ``ProximityCost`` and ``TransportCost`` (``spatial_costs``). A training loop may also
have that gradient written straight into ``.grad``, with no graph (``SpatialCosts.into_grad``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.native_costs import MAX_OWNERS, MAX_TASKS, native_library
from topo_models.losses.native_costs_combined import (
    CostLayout,
    NativeSpatialCosts,
    spatial_costs_call,
)
from topo_models.losses.spatial_costs import (
    DISTANCE_EPS,
    ProximityCost,
    TransportCost,
    _LayerCost,
    unwrap_model,
)

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _parameter(module: nn.Module, name: str) -> torch.Tensor:
    """``module.<name>``, read from its parameter table when it is there (a third of the
    time of ``nn.Module.__getattr__``, which runs nine times a training step here)."""
    found = module._parameters.get(name)
    return found if found is not None else getattr(module, name)


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
        native = self._native_inputs(model)
        if native is None:
            return self._separate(model)
        layout, tensors, kept = native
        total = NativeSpatialCosts.apply(layout, *tensors)
        values = layout.values  # host floats: nothing to detach, no float() per metric
        return total, {key: values[index] for key, index in kept}

    def into_grad(
        self, model: nn.Module, scale: float | Callable[[], float] = 1.0
    ) -> tuple[torch.Tensor | float, dict[str, float | torch.Tensor]]:
        """``(total, values)`` as a call, but where the C kernels apply the gradient goes
        straight into ``.grad`` of every tensor that requires one — ``scale`` × it (``scale``
        may be a callable, called only then), as a new tensor where ``.grad`` is None, added
        where it is not — and the
        total is a plain float, with no graph. Add the total to the loss either way.

        Why: the costs' gradient is final in the forward C call, and an autograd node for
        it (building it, running it in backward) costs ~4 % of a spatial MLP's training
        step. A loop that zeroes ``.grad`` before the forward and runs backward after it
        gets the same gradients (the trainer's ``direct_gradients`` block). Elsewhere (other
        devices or dtypes, a data-parallel model, whose reducer waits for every parameter's
        gradient in backward, or autograd off) it is the call: a differentiable total, no
        ``.grad`` touched.
        """
        native = None
        if torch.is_grad_enabled() and not isinstance(model, _WRAPPERS):
            native = self._native_inputs(model)
        if native is None:
            return self(model)
        layout, tensors, kept = native
        total, grads = spatial_costs_call(layout, tensors, as_float=True)
        factor = float(scale() if callable(scale) else scale)
        if factor != 1.0:
            torch._foreach_mul_(grads, factor)
        present, adding = [], []
        for tensor, grad in zip(tensors, grads, strict=True):
            if not tensor.requires_grad:  # frozen: autograd would give it no gradient either
                continue
            if tensor.grad is None:
                tensor.grad = grad  # adopted: a fresh buffer of the tensor's own layout
            else:
                present.append(tensor.grad)
                adding.append(grad)
        if present:
            with torch.no_grad():  # (a .grad may carry a graph of its own)
                torch._foreach_add_(present, adding)
        values = layout.values
        return total, {key: values[index] for key, index in kept}

    def _native_inputs(self, model: nn.Module):
        """``(layout, tensors, kept)`` of the C call on ``model``, or None where it does not
        apply: the layout, the position tensors then the transport weights, and the logging
        keys with their index in ``layout.values``."""
        owners, weight_modules, proximity, post, pre, kept = self._resolve_cached(model)
        positions = [_parameter(owner, "positions") for owner in owners]
        weights = [_parameter(module, "weight") for module in weight_modules]
        tensors = positions + weights
        if not tensors:  # nothing to compute
            return None
        layout = self._cached_plan(
            tuple([t.shape for t in tensors]),
            lambda: self._layout(positions, weights, proximity, post, pre),
        )
        if layout is None or native_library() is None:  # (switched off since it was built)
            return None
        for t in tensors:  # what the C code reads: the layout's shapes, and these
            if t.dtype is not torch.float32 or not t.is_cpu or not t.is_contiguous():
                return None
        return layout, tensors, kept

    def _layout(self, positions, weights, proximity, post, pre) -> CostLayout | None:
        """The C call's layout, or None where the C kernels do not apply (positions of
        different dimensions, too many layers, no compiler)."""
        if (
            len({p.shape[1] for p in positions}) != 1
            or len(positions) > MAX_OWNERS
            or len(proximity) + len(post) > MAX_TASKS
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
