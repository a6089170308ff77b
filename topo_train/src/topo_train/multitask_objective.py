"""The spatial multi-task objective (SpatialNetworks, Wołczyk et al. 2019):

    loss = CE(per-task heads) + proximity · mean_ℓ P_ℓ + transport · mean_ℓ T_ℓ

Cross entropy runs over the ``(batch, labels, tasks)`` view of the logits with one target per
task (-100: no label for that task), which is the original's sequential loss (one head per
sample) and its concatenate/mix loss (every head) in one formula. The costs act on the
positions the network learns with its weights (``topo_models.losses.spatial_costs``), on the
layers named in ``where``. Validation counts correct answers per task over the whole split, so
accuracies are exact for any number of labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from topo_models import TopoError
from topo_models.losses import SpatialCosts
from topo_models.spatial import multitask_cross_entropy, task_correct_counts
from topo_train.batches import to_device

NORMS = ("l1", "l2")
METRIC_NAMES = {"proximity": "loss/proximity", "transport": "loss/transport"}  # the means


def _strength(value: float, field: str) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        raise TopoError("a cost strength must be a finite number >= 0", field=field, found=value)
    return float(value)


class MultiTaskObjective(nn.Module):
    """Per-task cross entropy plus the proximity and transport costs.

    Args:
        positions: unused; spatial multi-task networks carry their own learnable positions
            (kept for the loop's call, which passes the sheet positions of other families).
        proximity: α, the weight of the proximity (repulsion) cost.
        transport: β, the weight of the transport (wiring) cost.
        norm: the weight term of transport, ``l1`` (|w|) or ``l2`` (w²).
        where: spatial layers (by name: ``hidden2``, ``output`` …) the costs act on; null:
            every spatial layer; ``[]``: none.
        eps: ε inside the proximity cost's square root.
        label_smoothing: of the cross entropy.
    """

    def __init__(
        self,
        positions: Any = None,
        proximity: float = 0.0,
        transport: float = 0.0,
        norm: str = "l2",
        where: list[str] | None = None,
        eps: float = 1e-8,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if positions is not None:
            raise TopoError(
                "spatial multi-task networks learn their own positions; run without a sheet",
                field="positions",
                expected="null",
                found=type(positions).__name__,
            )
        if norm not in NORMS:
            raise TopoError("unknown transport norm", field="loss.norm", expected=NORMS, found=norm)
        if not 0.0 <= label_smoothing < 1.0:
            raise TopoError(
                "label smoothing must be in [0, 1)",
                field="loss.label_smoothing",
                found=label_smoothing,
            )
        self.proximity = _strength(proximity, "loss.proximity")
        self.transport = _strength(transport, "loss.transport")
        self.where = None if where is None else [str(name) for name in where]
        self.spatial_costs = SpatialCosts(
            self.proximity, self.transport, self.where, norm=norm, eps=eps
        )
        self.label_smoothing = float(label_smoothing)
        self._gradient_scale: Callable[[], float] | None = None  # inside direct_gradients()

    def direct_gradients(self, scale: Callable[[], float] = lambda: 1.0) -> _DirectGradients:
        """A block (``with objective.direct_gradients(scale): ...``) inside which the costs
        write their gradient straight into ``.grad`` during forward (``scale()`` × it: the
        loss scale of mixed precision), instead of joining the graph: the block must start
        with ``.grad`` zeroed and hold the backward of the loss; the gradients after
        backward are those of the ordinary loss.

        Why: the costs' gradient is final in their forward C call, and an autograd node for
        it costs ~4 % of a training step. The trainer opens this block; outside it (a user's
        own loop, ``torch.autograd.grad``) the costs are an ordinary graph node.
        """
        return _DirectGradients(self, scale)

    def check_model(self, model: nn.Module) -> None:
        """Refuse, before training, a ``where`` naming a missing or non-spatial layer."""
        try:
            self.spatial_costs.check(model)
        except TopoError as error:
            raise TopoError(
                "loss.where names a layer the costs cannot act on",
                field="loss.where",
                expected=getattr(error, "expected", None),
                found=getattr(error, "found", None),
            ) from error

    def costs(
        self, model: nn.Module
    ) -> tuple[torch.Tensor | float, dict[str, float | torch.Tensor]]:
        """α · proximity + β · transport, with every layer's value for logging (host floats
        on the C path; a cost of strength 0 is not computed: a control run). Inside
        ``direct_gradients`` the total may be a plain float (its gradient is in ``.grad``)."""
        if self.proximity == 0.0 and self.transport == 0.0:
            return torch.zeros((), device=next(model.parameters()).device), {}
        if self._gradient_scale is None:
            total, values = self.spatial_costs(model)
        else:
            total, values = self.spatial_costs.into_grad(model, self._gradient_scale)
        return total, {METRIC_NAMES.get(key, key): value for key, value in values.items()}

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, targets = batch
        logits, _ = model(inputs)
        task = multitask_cross_entropy(logits.float(), targets, self.label_smoothing)
        spatial, metrics = self.costs(model)
        correct, counted = task_correct_counts(logits.detach(), targets)
        metrics["accuracy"] = correct.sum().float() / counted.sum().clamp(min=1)
        metrics["loss/task"] = task.detach()
        loss = task + spatial
        metrics["loss/total"] = loss.detach()
        return loss, metrics

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: Any, device: torch.device, tier: str = "validation"
    ) -> dict[str, float]:
        """Exact accuracy (overall and per task) and cross entropy over a whole split.

        Keys ``val/accuracy``, ``val/accuracy/task<index>``, ``val/loss/task`` (task names
        such as ``Digits[0:5]`` are not valid MLflow keys; ``data.tasks`` maps index → name).
        """
        was_training = model.training
        model.eval()
        correct = counted = None
        loss_sum, loss_count = 0.0, 0
        loader = data.val_loader() if tier == "validation" else data.loader(tier)
        for batch in loader:
            inputs, targets = to_device(batch, device)
            logits, _ = model(inputs)
            c, n = task_correct_counts(logits, targets)
            correct = c if correct is None else correct + c
            counted = n if counted is None else counted + n
            answered = int(n.sum())
            loss_sum += float(multitask_cross_entropy(logits.float(), targets)) * answered
            loss_count += answered
        model.train(was_training)
        if correct is None:
            return {}
        prefix = "val" if tier == "validation" else tier
        metrics = {
            f"{prefix}/accuracy": float(correct.sum()) / max(int(counted.sum()), 1),
            f"{prefix}/loss/task": loss_sum / max(loss_count, 1),
        }
        for index, (c, n) in enumerate(zip(correct.tolist(), counted.tolist(), strict=True)):
            metrics[f"{prefix}/accuracy/task{index}"] = c / n if n else math.nan
        return metrics


class _DirectGradients:
    """``MultiTaskObjective.direct_gradients``' block (a class: a generator-based context
    manager costs more than what it saves at this size)."""

    def __init__(self, objective: MultiTaskObjective, scale: Callable[[], float]) -> None:
        self.objective, self.scale = objective, scale

    def __enter__(self) -> None:
        if self.objective._gradient_scale is not None:
            raise RuntimeError("direct_gradients blocks do not nest")
        self.objective._gradient_scale = self.scale

    def __exit__(self, *exc_info: object) -> None:
        self.objective._gradient_scale = None
