"""Deliver a loss's gradient on a few gathered units straight into each layer's gradient.

The spatial loss reads a few hundred units per layer. Differentiating a plain gather makes
autograd write a dense zero gradient the size of the whole layer and add it to the gradient
coming back from the rest of the network: four passes over every activation of every topographic
layer, each step (about 1 % of a ResNet-18 step on a CPU, more than the loss itself needs).

Here the loss is computed on gathered copies (leaves of a small local graph). The scalar it
returns is an autograd node that lists the layer tensors as inputs but gives them no gradient;
since a node runs only after every consumer of its output has delivered, each layer's own
node runs after this one, and a pre-hook on it adds ``upstream · ∂loss/∂units`` into the
layer's accumulated gradient (a copy of it: hooks must not modify their argument). The
gradient is the same as with a plain gather — the tests compare them.

The hooks reach the injector through a weak reference and the injector keeps no layer tensor:
a hook lives as long as its layer's node, and a strong reference from it back to the layers
would be a cycle through C++ that Python's collector cannot see — every step's activations
(14.5 MB for ResNet-18 at 64 px, 64 views) would then stay in memory for the rest of the run.
Only the outer node (``InjectedTotal``'s context) owns the injector, so it goes with the graph.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch


def injectable_layers(layers: Sequence[torch.Tensor]) -> list[bool]:
    """Which layers can take an injected gradient: those another layer's graph consumes.

    A hook can only add to a gradient that exists, so a layer must feed something else that
    sends gradient back. A layer consumed on the way to another layer (every trunk block but
    the last) is sure to; the others (the last block, side branches) use a plain gather, whose
    dense gradient is then small or unavoidable. Leaves (no graph) are never injectable.
    """
    nodes = {layer.grad_fn: index for index, layer in enumerate(layers) if layer.grad_fn}
    consumed = [False] * len(layers)
    stack = list(nodes)
    seen = set(stack)
    while stack:
        for child, _ in stack.pop().next_functions:
            if child is None:
                continue
            if child in nodes:
                consumed[nodes[child]] = True
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return consumed


class GradientInjector:
    """Holds the local graph of one forward call and delivers its gradient at backward."""

    def __init__(
        self,
        local_total: torch.Tensor,
        layers: Sequence[torch.Tensor],
        columns: Sequence[torch.Tensor],
        picked: Sequence[torch.Tensor],
        plain: Sequence[torch.Tensor],
    ) -> None:
        self.local_total = local_total  # scalar of the local graph whose leaves are `picked`
        self.plain = list(plain)  # gathers of the other layers, differentiated as usual
        self.n_layers = len(layers)  # the layers themselves are not kept (see the module doc)
        self.columns = list(columns)  # per layer: (units,) flat channel-major indices
        self.picked = list(picked)  # per layer: (batch, units) leaves of the local graph
        self.pending: list[torch.Tensor | None] = [None] * self.n_layers
        for index, layer in enumerate(layers):
            layer.grad_fn.register_prehook(
                _pending_adder(weakref.ref(self), index, layer.output_nr, layer.shape)
            )

    def deliver(self, upstream: torch.Tensor) -> list[torch.Tensor | None]:
        """Backward of the scalar: keeps ∂(upstream · total)/∂picked for the hooks and returns
        the gradients of the plain gathers (autograd carries those on)."""
        with torch.enable_grad():
            grads = torch.autograd.grad(
                self.local_total, [*self.picked, *self.plain], allow_unused=True
            )
        # the local graph is spent; the gathers of the plain layers go too
        self.local_total, self.picked, self.plain = None, [], []
        scaled = [None if g is None else g * upstream.to(g.dtype) for g in grads]
        self.pending = scaled[: self.n_layers]
        return scaled[self.n_layers :]


def _pending_adder(injector: weakref.ref, index: int, output_nr: int, shape: torch.Size):
    """Pre-hook of layer ``index``'s node: adds the injector's pending gradient, if any."""

    def add_pending(grad_outputs: tuple[torch.Tensor | None, ...]):
        owner = injector()
        update = None if owner is None else owner.pending[index]
        if update is None:
            return None
        owner.pending[index] = None
        current = grad_outputs[output_nr]
        if current is None:
            merged = torch.zeros(shape, dtype=update.dtype, device=update.device)
        else:
            merged = current.clone(memory_format=torch.contiguous_format)
        merged.view(shape[0], -1).index_add_(1, owner.columns[index], update.to(merged.dtype))
        return (*grad_outputs[:output_nr], merged, *grad_outputs[output_nr + 1 :])

    return add_pending


class InjectedTotal(torch.autograd.Function):
    """The injector's total as a node of the outer graph.

    ``apply(injector, *layers, *plain)``: consumes the injected layers without feeding them (their
    pre-hooks add the gradient) and passes the plain gathers their gradients.
    """

    @staticmethod
    def forward(ctx, injector: GradientInjector, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.injector = injector
        return injector.local_total.detach().clone()

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        plain = ctx.injector.deliver(upstream)
        return (None, *([None] * ctx.injector.n_layers), *plain)
