"""The spatial correlation loss as an object: built from positions and per-layer weights.

``loss(features)`` returns ``(total, per_layer)``: the weighted sum Σ_l w_l · SL_l for training
and each layer's SL (detached) for logging. Every step draws ``neighborhoods_per_step`` rows of
each layer's ``neighborhood_indices`` from the loss's own seeded generator (TDANN used the global
RNG, so its draws depended on call order). Layers whose neighbourhoods hold the same number of
units are computed together: all their neighbourhoods in one batched call, with no padding
(ResNet-18's retinotopic layouts give 4–6 such groups, e.g. 67, 171, 172, 354, 366 and 500
units at 112 px). Positions live in non-persistent buffers: they follow ``.to(device)`` and
never receive gradients; the generator state is saved with ``state_dict`` so a resumed run
draws the same neighbourhoods as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.spatial_correlation import (
    VERSIONS,
    Version,
    batched_spatial_correlation_loss,
)


class PositionsLike(Protocol):
    """What the loss needs of a layer's positions (``topo_models.positions.LayerPositions``)."""

    dims: tuple[int, ...]
    coordinates: np.ndarray
    neighborhood_indices: np.ndarray


def width_groups(widths: list[int]) -> list[tuple[list[int], int]]:
    """Layer indices batched together: ``[(layers, width), …]``, one group per neighbourhood
    width (units per neighbourhood), in order of first appearance; no padding is needed."""
    groups: dict[int, list[int]] = {}
    for index, width in enumerate(widths):
        groups.setdefault(width, []).append(index)
    return [(members, width) for width, members in groups.items()]


class SpatialCorrelationLoss(nn.Module):
    """Σ over layers of weight × TDANN spatial correlation loss.

    Args:
        positions: layer name → positions (e.g. a ``NetworkPositions``).
        layer_weights: layer name → weight ≥ 0 for every layer the loss covers; each must have
            positions. Layers with weight 0 are still computed (without gradient) for logging.
        version: ``"relative"`` (TDANN default) or ``"absolute"``.
        neighborhoods_per_step: k, the neighbourhoods averaged per layer and step.
        seed: seed of the neighbourhood draws.
    """

    def __init__(
        self,
        positions: Mapping[str, PositionsLike],
        layer_weights: Mapping[str, float],
        version: Version = "relative",
        neighborhoods_per_step: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if version not in VERSIONS:
            raise TopoError(
                "unknown spatial loss version", field="version", expected=VERSIONS, found=version
            )
        if neighborhoods_per_step < 1:
            raise TopoError(
                "need at least one neighbourhood per step",
                field="neighborhoods_per_step",
                expected=">= 1",
                found=neighborhoods_per_step,
            )
        if not layer_weights:
            raise TopoError("the spatial loss needs at least one layer", field="layer_weights")
        for name, weight in layer_weights.items():
            if name not in positions:
                raise TopoError(
                    "layer has no positions",
                    field=f"layer_weights.{name}",
                    expected=sorted(positions),
                    found=name,
                )
            if not np.isfinite(weight) or weight < 0:
                raise TopoError(
                    "layer weights must be finite and >= 0",
                    field=f"layer_weights.{name}",
                    expected=">= 0",
                    found=weight,
                )
        self.layer_names: tuple[str, ...] = tuple(layer_weights)
        self.version: Version = version
        self.neighborhoods_per_step = int(neighborhoods_per_step)
        self.seed = int(seed)
        self.dims = {name: tuple(int(d) for d in positions[name].dims) for name in self.layer_names}
        self.register_buffer(
            "weights",
            torch.tensor([float(layer_weights[n]) for n in self.layer_names]),
            persistent=False,
        )
        widths = [int(positions[n].neighborhood_indices.shape[1]) for n in self.layer_names]
        self.groups = width_groups(widths)
        for index, name in enumerate(self.layer_names):
            layer = positions[name]
            coords = torch.as_tensor(np.asarray(layer.coordinates), dtype=torch.float32)
            rows = torch.as_tensor(np.asarray(layer.neighborhood_indices), dtype=torch.int64)
            self.register_buffer(f"coordinates_{index}", coords, persistent=False)
            self.register_buffer(f"neighborhoods_{index}", rows, persistent=False)
        self.table_sizes = torch.tensor(
            [[float(positions[n].neighborhood_indices.shape[0])] for n in self.layer_names],
            dtype=torch.float64,
        )  # (layers, 1): rows per layer, on the CPU like the generator that draws them
        self.generator = torch.Generator().manual_seed(self.seed)

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def _draw_rows(self) -> list[torch.Tensor]:
        """k random neighbourhood rows per layer, one generator call for all layers."""
        uniforms = torch.rand(
            (len(self.layer_names), self.neighborhoods_per_step), generator=self.generator
        )
        picks = (uniforms * self.table_sizes).long().minimum(self.table_sizes.long() - 1).tolist()
        return [
            getattr(self, f"neighborhoods_{index}")[layer_picks]
            for index, layer_picks in enumerate(picks)
        ]

    def _check_features(self, features: Mapping[str, torch.Tensor]) -> None:
        for name in self.layer_names:
            if name not in features:
                raise TopoError(
                    "the model did not return a layer the spatial loss needs",
                    field=name,
                    expected=self.layer_names,
                    found=sorted(features),
                )
            found = tuple(features[name].shape[1:])
            if found != self.dims[name]:
                raise TopoError(
                    "positions do not match the layer's shape",
                    field=name,
                    expected=f"dims {self.dims[name]}",
                    found=f"dims {found}",
                )

    def forward(
        self, features: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """features: layer name → (batch, C, H, W) → (total, {layer: loss (detached)})."""
        self._check_features(features)
        k = self.neighborhoods_per_step
        rows_by_layer = self._draw_rows()
        needs_grad = torch.is_grad_enabled() and bool((self.weights > 0).any())
        per_layer_list: list[torch.Tensor] = [torch.empty(0)] * len(self.layer_names)
        for members, _ in self.groups:
            blocks, coords = [], []
            for index in members:
                rows = rows_by_layer[index]  # (k, width) flat channel-major unit indices
                flat = features[self.layer_names[index]].flatten(1)  # (batch, N)
                units = torch.index_select(flat, 1, rows.flatten())  # (batch, k · width)
                blocks.append(units.view(units.shape[0], k, -1).transpose(0, 1))
                coords.append(getattr(self, f"coordinates_{index}")[rows])
            responses = torch.cat(blocks) if len(blocks) > 1 else blocks[0]  # (G, batch, width)
            with (
                torch.autocast(responses.device.type, enabled=False),
                torch.set_grad_enabled(needs_grad),
            ):
                values = batched_spatial_correlation_loss(
                    responses, torch.cat(coords), None, self.version
                ).view(len(members), k)
            for position, index in enumerate(members):
                per_layer_list[index] = values[position].mean()
        per_layer = torch.stack(per_layer_list)
        total = (per_layer * self.weights).sum()
        logged = {name: per_layer[i].detach() for i, name in enumerate(self.layer_names)}
        return total, logged
