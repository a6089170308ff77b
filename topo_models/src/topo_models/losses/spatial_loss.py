"""The spatial correlation loss as an object: built from positions and per-layer weights.

``loss(features)`` returns ``(total, per_layer)``: the weighted sum Σ_l w_l · SL_l for training
and each layer's SL (detached) for logging. Every step draws ``neighborhoods_per_step`` rows of
each layer's ``neighborhood_indices`` from the loss's own seeded generator (TDANN used the global
RNG, so its draws depended on call order), and all layers × neighbourhoods are computed in one
batched call. Positions live in non-persistent buffers: they follow ``.to(device)`` and never
receive gradients; the generator state is saved with ``state_dict`` so a resumed run draws the
same neighbourhoods as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
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
        for index, name in enumerate(self.layer_names):
            layer = positions[name]
            coords = torch.as_tensor(np.asarray(layer.coordinates), dtype=torch.float32)
            rows = torch.as_tensor(np.asarray(layer.neighborhood_indices), dtype=torch.int64)
            self.register_buffer(f"coordinates_{index}", coords, persistent=False)
            self.register_buffer(f"neighborhoods_{index}", rows, persistent=False)
        self.width = max(int(positions[n].neighborhood_indices.shape[1]) for n in self.layer_names)
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
        draws = []
        for index in range(len(self.layer_names)):
            table: torch.Tensor = getattr(self, f"neighborhoods_{index}")
            picks = (uniforms[index] * table.shape[0]).long().clamp_max(table.shape[0] - 1)
            draws.append(table[picks.to(table.device)])
        return draws

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
        blocks, coords, masks = [], [], []
        for index, (name, rows) in enumerate(zip(self.layer_names, self._draw_rows(), strict=True)):
            flat = features[name].flatten(1)  # (batch, N) channel-major
            responses = flat[:, rows].permute(1, 0, 2)  # (k, batch, Q_l)
            pad = self.width - rows.shape[1]
            blocks.append(F.pad(responses, (0, pad)))
            coords.append(F.pad(getattr(self, f"coordinates_{index}")[rows], (0, 0, 0, pad)))
            mask = torch.zeros(k, self.width, dtype=torch.bool, device=rows.device)
            mask[:, : rows.shape[1]] = True
            masks.append(mask)
        responses = torch.cat(blocks)
        needs_grad = torch.is_grad_enabled() and bool((self.weights > 0).any())
        with (
            torch.autocast(responses.device.type, enabled=False),
            torch.set_grad_enabled(needs_grad),
        ):
            per_group = batched_spatial_correlation_loss(
                responses, torch.cat(coords), torch.cat(masks), self.version
            )
        per_layer = per_group.view(len(self.layer_names), k).mean(dim=1)
        total = (per_layer * self.weights).sum()
        logged = {name: per_layer[i].detach() for i, name in enumerate(self.layer_names)}
        return total, logged
