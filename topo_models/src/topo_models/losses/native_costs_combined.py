"""Both spatial costs of every layer in one C call (``spatial_costs`` of the native library).

``CostLayout`` packs what the call reads once per model shape; ``spatial_costs_call`` runs it
into fresh gradient buffers, one per parameter (each can become that parameter's ``.grad`` as
it is), and ``NativeSpatialCosts`` wraps that as one autograd node.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import torch

from topo_models.losses.native_costs import _longs, native_library


class CostLayout:
    """What one ``spatial_costs`` call reads, packed once, and the buffers it reuses: its
    scratch space, the table of tensor addresses, and ``values``, host floats
    ``[P_1..P_Lp, T_1..T_Lt, mean P, mean T]`` rewritten by every call (read them before the
    next; a layout serves one thread).

    Args:
        sizes: rows of each position tensor (the owners), all ``(N_u, dim)``.
        dim: the dimension of the positions.
        eps: added under every square root.
        proximity: the owner of each proximity layer.
        post / pre: the owners of each transport layer and of its predecessor.
        kernels: kh * kw of each transport weight (1 for a linear layer).
        norm: ``"l1"`` or ``"l2"``.
        alpha / beta: the strengths the two means are weighted by in the total.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        dim: int,
        eps: float,
        proximity: Sequence[int],
        post: Sequence[int],
        pre: Sequence[int],
        kernels: Sequence[int],
        norm: str,
        alpha: float,
        beta: float,
    ) -> None:
        head = [len(sizes), dim, len(proximity), len(post), 1 if norm == "l1" else 2]
        self.shape = _longs([*head, *sizes, *proximity, *post, *pre, *kernels])
        self.constants = (ctypes.c_double * 3)(eps, alpha, beta)
        # points, weights, the points' gradients, the weights' gradients, the total
        self.addresses = (ctypes.c_void_p * (2 * (len(sizes) + len(post)) + 1))()
        self.work = (ctypes.c_float * native_library().spatial_costs_work(self.shape))()
        self.values = (ctypes.c_float * (len(proximity) + len(post) + 2))()
        self.total = ctypes.c_float()  # the total of a call that returns it as a float


def spatial_costs_call(
    layout: CostLayout, tensors: Sequence[torch.Tensor], as_float: bool = False
) -> tuple[torch.Tensor | float, list[torch.Tensor]]:
    """One ``spatial_costs`` C call on ``tensors`` (the position tensors, then the transport
    weights; float32, CPU, contiguous, of the layout's shapes): ``(total, grads)``, the
    weighted total (a 0-d tensor, or a float with ``as_float``) and its gradient with respect
    to each tensor, in fresh buffers."""
    grads = [torch.empty_like(t) for t in tensors]
    total = None if as_float else torch.empty(())
    where = ctypes.addressof(layout.total) if as_float else total.data_ptr()
    layout.addresses[:] = [t.data_ptr() for t in (*tensors, *grads)] + [where]
    native_library().spatial_costs(
        layout.shape, layout.constants, layout.addresses, layout.work, layout.values
    )
    return (layout.total.value if as_float else total), grads


class NativeSpatialCosts(torch.autograd.Function):
    """``alpha · mean P + beta · mean T`` of ``tensors`` = the position tensors, then the
    transport weights (float32, CPU, contiguous); each layer's value lands in
    ``layout.values``.

    Why one node: forward already has the gradient of the total in closed form, so backward
    only hands it over (scaled when the upstream gradient is not 1) — no per-layer graph, no
    second pass over the pairs.
    """

    @staticmethod
    def forward(ctx, layout: CostLayout, *tensors: torch.Tensor) -> torch.Tensor:
        total, ctx.grads = spatial_costs_call(layout, tensors)
        return total

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        # Not once_differentiable (its wrapper costs more than the rest of this backward):
        # the check below refuses a double backward instead.
        if torch.is_grad_enabled():
            raise RuntimeError("the native spatial costs have no double backward")
        if ctx.grads is None:
            raise RuntimeError(
                "the native spatial costs support one backward per forward (no retain_graph reuse)"
            )
        # Handed over, not copied: dropping ctx's references lets autograd adopt the buffers
        # as the parameters' .grad instead of cloning them.
        grads, ctx.grads = ctx.grads, None
        scale = float(upstream)
        if scale != 1.0:
            torch._foreach_mul_(grads, scale)
        return (None, *grads)
