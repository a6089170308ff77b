"""SpatialNetworks' proximity and transport costs on any trunk, one learned position per channel.

A spatial network (Wołczyk et al. 2019) builds its layers with positions inside them
(``SpatialLinear`` / ``SpatialConv2d``, costed by :class:`SpatialCosts`). A trunk of plain
``Linear`` / ``Conv2d`` layers (ResNet-18, a torchvision model) has no such places, so
:class:`ChannelSpatialCosts` holds them itself: one learnable ``(channels, dim)`` parameter per
covered layer, the positions of its output channels (a channel of a convolution has one place,
shared by all its locations, as in SpatialNetworks' conv layers). For a covered layer ℓ:

    cost_ℓ = proximity · P(p_ℓ) + transport · T(p_ℓ, p_pre(ℓ), W_ℓ)

with P and T the proximity and transport costs of :mod:`spatial_costs`, computed for all layers
at once by its fused kernels (closed-form gradients; the plain definitions for other dtypes).
``pre(ℓ)`` is the previous covered layer (in the order of ``layer_weights``) when its output
width equals ℓ's input width, i.e. when the covered layers follow each other through the trunk;
otherwise ℓ has no transport term, like the first layer of a spatial network, whose inputs have
no place. The total is Σ_ℓ w_ℓ · cost_ℓ.

The positions are parameters of the regulariser: the training loop optimises an objective's
parameters with the model's (so the positions move as in SpatialNetworks) and checkpoints them
with the objective. They are made when the model is first seen (:meth:`check`, which the loop
calls before it builds the optimiser), because the channel counts come from the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.layer_weights import checked_layer_weights
from topo_models.losses.spatial_costs import (
    DISTANCE_EPS,
    NORMS,
    proximity_values,
    transport_values,
    unwrap_model,
)
from topo_models.losses.wiring_cost import weight_layer

WHAT = "the channel spatial costs"


class ChannelSpatialCosts(nn.Module):
    """Σ_ℓ w_ℓ · (proximity · P_ℓ + transport · T_ℓ) with learned channel positions (module doc).

    ``cost(model)`` returns ``(total, per_layer)``: the weighted sum for training and each
    layer's cost (detached) for logging.

    Args:
        layer_weights: layer name → weight ≥ 0 for every Linear / Conv2d layer covered, in
            network order (the order decides which layer feeds which).
        proximity: strength of the proximity cost (channels repel each other); 3 as in
            SpatialNetworks' published example (``loss=spatial_costs``).
        transport: strength of the transport cost (long, strong connections cost more); 1.
        norm: ``"l1"`` (|w|, the published example's) or ``"l2"`` (w²), summed over a kernel.
        dim: dimension of the space the channels live in (2: a cortical sheet).
        seed: of the initial positions, i.i.d. N(0, 1) as in SpatialNetworks.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float],
        proximity: float = 3.0,
        transport: float = 1.0,
        norm: str = "l1",
        dim: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        weights = checked_layer_weights(layer_weights, WHAT)
        for field, value in (("proximity", proximity), ("transport", transport)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise TopoError("a cost strength is a finite number >= 0", field=field, found=value)
        if norm not in NORMS:
            raise TopoError("unknown transport norm", field="norm", expected=NORMS, found=norm)
        if not (isinstance(dim, int) and dim >= 1):
            raise TopoError("dim is an integer >= 1", field="dim", expected=">= 1", found=dim)
        self.layer_names: tuple[str, ...] = tuple(weights)
        self.proximity, self.transport = float(proximity), float(transport)
        self.norm, self.dim, self.seed = norm, dim, int(seed)
        self.register_buffer(
            "weights", torch.tensor([weights[n] for n in self.layer_names]), persistent=False
        )
        self.positions = nn.ParameterList()
        self.feeds: list[int | None] = []
        self._plans: dict[tuple, object] = {}

    def get_extra_state(self) -> dict[str, list[int]]:
        """Each covered layer's channel count, so that a checkpoint restores the positions
        into a regulariser that has not seen the model yet."""
        return {"channels": [len(positions) for positions in self.positions]}

    def set_extra_state(self, state: dict[str, list[int]]) -> None:
        if not len(self.positions):
            for n_out in state["channels"]:
                self.positions.append(nn.Parameter(torch.zeros(int(n_out), self.dim)))

    def check(self, model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
        """The covered layers of ``model``; the first time, make their channels' positions.
        TopoError naming the layer if one is missing, of another kind, or has another number
        of channels than its positions."""
        model = unwrap_model(model)
        layers = [weight_layer(model, name, WHAT) for name in self.layer_names]
        if not len(self.positions):
            generator = torch.Generator().manual_seed(self.seed)
            for layer in layers:
                n_out = layer.weight.shape[0]
                self.positions.append(
                    nn.Parameter(torch.randn(n_out, self.dim, generator=generator))
                )
            self.to(layers[0].weight.device)
        for name, layer, positions in zip(self.layer_names, layers, self.positions, strict=True):
            if layer.weight.shape[0] != positions.shape[0]:
                raise TopoError(
                    "the layer's output channels do not match its positions",
                    field=f"layer_weights.{name}",
                    expected=f"{positions.shape[0]} channels",
                    found=f"{layer.weight.shape[0]} channels",
                )
        self.feeds = [
            index - 1
            if index > 0 and layers[index - 1].weight.shape[0] == layer.weight.shape[1]
            else None
            for index, layer in enumerate(layers)
        ]
        return layers

    def channel_positions(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Each covered layer's output channels where the cost has moved them, ``(out, dim)``."""
        self.check(model)
        return {
            name: positions.detach().cpu().double().numpy()
            for name, positions in zip(self.layer_names, self.positions, strict=True)
        }

    def _plan(self, key: tuple, build):
        """The kernels' plan for these shapes, devices and dtypes, built once."""
        if key not in self._plans:
            self._plans[key] = build()
        return self._plans[key]

    def forward(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """model → (total, {layer: cost (detached)})."""
        layers = self.check(model)
        positions = list(self.positions)
        first = positions[0]
        per_layer = torch.zeros(len(layers), device=first.device, dtype=first.dtype)
        with torch.autocast(first.device.type, enabled=False):
            if self.proximity:
                costs = proximity_values(positions, DISTANCE_EPS, self._plan)
                per_layer = per_layer + self.proximity * costs
            fed = [index for index, pre in enumerate(self.feeds) if pre is not None]
            if self.transport and fed:
                weights = [layers[index].weight for index in fed]
                pre = [self.feeds[index] for index in fed]
                costs = transport_values(positions, fed, pre, weights, self.norm, self._plan)
                index = torch.tensor(fed, device=first.device)
                per_layer = per_layer.index_add(0, index, self.transport * costs)
        total = (per_layer * self.weights.to(per_layer.device, per_layer.dtype)).sum()
        logged = {name: per_layer[i].detach() for i, name in enumerate(self.layer_names)}
        return total, logged
