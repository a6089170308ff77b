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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from topo_models import TopoError
from topo_models.losses import SpatialCosts
from topo_models.spatial import multitask_cross_entropy, task_correct_counts
from topo_train.batches import to_device
from topo_train.contracts import Regulariser
from topo_train.objectives.base import BaseObjective
from topo_train.run_names import override

NORMS = ("l1", "l2")
POSITIONS_DIR = "positions"
METRIC_NAMES = {"proximity": "loss/proximity", "transport": "loss/transport"}  # the means


def _strength(value: float, field: str) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        raise TopoError("a cost strength must be a finite number >= 0", field=field, found=value)
    return float(value)


class MultiTaskObjective(BaseObjective):
    """Per-task cross entropy plus the proximity and transport costs.

    Args:
        positions: unused; spatial multi-task networks carry their own learnable positions
            (written to ``run_dir/positions`` at the end of a run, see :meth:`finish`).
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
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        super().__init__(regularisers)
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

    def check_model(self, model: nn.Module) -> None:
        """Refuse, before training, a ``where`` naming a missing or non-spatial layer."""
        super().check_model(model)
        try:
            self.spatial_costs.check(model)
        except TopoError as error:
            raise TopoError(
                "loss.where names a layer the costs cannot act on",
                field="loss.where",
                expected=getattr(error, "expected", None),
                found=getattr(error, "found", None),
            ) from error

    def costs(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """α · proximity + β · transport, with every layer's value (detached) for logging; a
        cost of strength 0 is not computed (both 0: a control run)."""
        if self.proximity == 0.0 and self.transport == 0.0:
            return torch.zeros((), device=next(model.parameters()).device), {}
        total, values = self.spatial_costs(model)
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

    def finish(self, model: nn.Module, data: Any, run_dir: Path, tracker: Any) -> None:
        """Positions learned on a 2-D sheet, written in the same files as every family's
        (``run_dir/positions/<layer>.npz``) and logged."""
        if model.dim != 2:
            return
        model.sheet_positions().save(run_dir / POSITIONS_DIR)
        tracker.log_positions(run_dir / POSITIONS_DIR)

    def evaluation_command(self, run_dir: Path) -> str | None:
        """``topo_eval task=multitask``: record, split and score the trained network."""
        return f"python -m topo_eval task=multitask {override('checkpoint', run_dir / 'model.pt')}"
