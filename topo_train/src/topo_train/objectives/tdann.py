"""Objectives: a task loss plus Σ_layer weight · spatial correlation loss.

An objective owns everything family-specific about a training step — how a batch is fed to the
model and what is measured — so the loop in ``trainer.py`` stays one loop for every family.
Each returns ``(loss, metrics)``; metrics hold the task loss, the weighted spatial term and
every layer's spatial loss (``spatial/layer2_0`` …) for logging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from topo_models import TopoError
from topo_models.losses import SpatialCorrelationLoss, nt_xent_loss
from topo_train.contracts import Regulariser
from topo_train.objectives.base import BaseObjective


def config_key(layer: str) -> str:
    """Layer name as a config key (layer4.1 → layer4_1): dots would split dotted overrides."""
    return layer.replace(".", "_")


def resolve_layer_weights(
    alpha: float, layer_weights: Mapping[str, float | None] | None, layer_names: list[str]
) -> dict[str, float]:
    """Per-layer weights keyed by real layer names.

    Args:
        alpha: weight of every layer whose entry is missing or null.
        layer_weights: config-key (``layer4_1``) → weight or null (= alpha).
        layer_names: the model's topographic layers (``layer4.1`` …), in order.
    """
    if alpha is None or not math.isfinite(alpha) or alpha < 0:
        raise TopoError(
            "the spatial loss weight must be >= 0",
            field="loss.alpha",
            expected="a finite number >= 0",
            found=alpha,
        )
    by_key = {config_key(name): name for name in layer_names}
    weights = {name: float(alpha) for name in layer_names}
    for key, value in (layer_weights or {}).items():
        if key not in by_key:
            raise TopoError(
                "unknown layer in loss.layer_weights",
                field=f"loss.layer_weights.{key}",
                expected=sorted(by_key),
                found=key,
            )
        if value is None:
            continue
        if not math.isfinite(value) or value < 0:
            raise TopoError(
                "layer weights must be >= 0",
                field=f"loss.layer_weights.{key}",
                expected="a finite number >= 0 (or null for loss.alpha)",
                found=value,
            )
        weights[by_key[key]] = float(value)
    return weights


class TopographicObjective(BaseObjective):
    """Shared part: the spatial correlation loss over the layers that have positions."""

    def __init__(
        self,
        positions: Mapping,
        alpha: float,
        layer_weights: Mapping[str, float | None] | None,
        version: str,
        neighborhoods_per_step: int,
        seed: int,
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        super().__init__(regularisers)
        weights = resolve_layer_weights(alpha, layer_weights, list(positions))
        self.spatial = SpatialCorrelationLoss(
            positions,
            weights,
            version=version,
            neighborhoods_per_step=neighborhoods_per_step,
            seed=seed,
        )

    def spatial_terms(
        self, features: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, per_layer = self.spatial(features)
        metrics = {f"spatial/{config_key(name)}": value for name, value in per_layer.items()}
        metrics["loss/spatial"] = total.detach()
        return total, metrics

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: Any, device: torch.device, tier: str = "validation"
    ) -> dict[str, float]:
        """Step metrics averaged over the validation batches of two or more images (a
        correlation across a batch needs two samples)."""
        loader = data.val_loader()
        if loader is None:
            return {}
        return self.mean_over_batches(model, (b for b in loader if b[0].shape[0] >= 2), device)


class SimCLRObjective(TopographicObjective):
    """SimCLR NT-Xent on two views + spatial loss on the block outputs of both views (TDANN).

    Batches are ``(views (B, 2, 3, H, W), labels)``; labels are ignored.
    """

    requires = {"model": {"head": "projector"}, "data": {"views": "simclr"}}

    def __init__(
        self,
        positions: Mapping,
        temperature: float = 0.1,
        alpha: float = 0.25,
        layer_weights: Mapping[str, float | None] | None = None,
        version: str = "relative",
        neighborhoods_per_step: int = 1,
        seed: int = 0,
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        super().__init__(
            positions, alpha, layer_weights, version, neighborhoods_per_step, seed, regularisers
        )
        if temperature <= 0:
            raise TopoError("temperature must be > 0", field="loss.temperature", found=temperature)
        self.temperature = float(temperature)

    def forward(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views, _ = batch
        if views.dim() != 5 or views.shape[1] != 2:
            raise TopoError(
                "SimCLR batches hold two views per image",
                field="batch",
                expected="(batch, 2, 3, H, W)",
                found=tuple(views.shape),
            )
        size = views.shape[0]
        output, features = model(torch.cat([views[:, 0], views[:, 1]]))
        task = nt_xent_loss(output[:size], output[size:], self.temperature)
        spatial, metrics = self.spatial_terms(features)
        metrics["loss/task"] = task.detach()
        loss = task + spatial
        metrics["loss/total"] = loss.detach()
        return loss, metrics


class SupervisedObjective(TopographicObjective):
    """Cross-entropy on labels + spatial loss. Batches are ``(images (B, 3, H, W), labels)``."""

    requires = {"model": {"head": "classifier"}, "data": {"views": "supervised"}}

    def __init__(
        self,
        positions: Mapping,
        alpha: float = 0.25,
        layer_weights: Mapping[str, float | None] | None = None,
        version: str = "relative",
        neighborhoods_per_step: int = 1,
        label_smoothing: float = 0.0,
        seed: int = 0,
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        super().__init__(
            positions, alpha, layer_weights, version, neighborhoods_per_step, seed, regularisers
        )
        if not 0.0 <= label_smoothing < 1.0:
            raise TopoError(
                "label smoothing must be in [0, 1)",
                field="loss.label_smoothing",
                found=label_smoothing,
            )
        self.label_smoothing = float(label_smoothing)

    def forward(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = batch
        if images.dim() != 4:
            raise TopoError(
                "supervised batches hold single images",
                field="batch",
                expected="(batch, 3, H, W)",
                found=tuple(images.shape),
            )
        logits, features = model(images)
        task = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        spatial, metrics = self.spatial_terms(features)
        metrics["loss/task"] = task.detach()
        metrics["accuracy"] = (logits.argmax(dim=1) == labels).float().mean().detach()
        loss = task + spatial
        metrics["loss/total"] = loss.detach()
        return loss, metrics
