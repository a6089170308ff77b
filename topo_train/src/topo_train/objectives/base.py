"""Defaults every objective shares, so that each family writes only what is particular to it."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from topo_train.batches import to_device
from topo_train.contracts import DataModule, Regulariser
from topo_train.run_names import override


class BaseObjective(nn.Module):
    """An :class:`topo_train.contracts.Objective` with the common defaults: nothing required
    of the model or data, no model check, validation = the mean of each step metric over the
    validation batches, no test tier, nothing to do at the end of a run, and the responses on
    the sheet as the next command when the run has positions."""

    requires: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    test_tier: str | None = None
    progress_metric: str = "loss/total"

    def __init__(self, regularisers: Sequence[Regulariser] = ()) -> None:
        """``regularisers``: terms of the model's weights added to every step's loss
        (``loss.regularisers``: TopoLoss, a wiring cost, …), whatever the task."""
        super().__init__()
        self.regularisers = nn.ModuleList(regularisers)
        names = [_metric_name(regulariser) for regulariser in self.regularisers]
        self.regulariser_names = [
            name if names.count(name) == 1 else f"{name}_{index}"
            for index, name in enumerate(names)
        ]

    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """The family's step loss (``forward``) plus every regulariser's, logged as
        ``loss/<regulariser>`` and ``<regulariser>/<layer>``; ``loss/total`` includes them."""
        loss, metrics = super().__call__(model, batch)
        if not len(self.regularisers):
            return loss, metrics
        metrics = dict(metrics)
        for name, regulariser in zip(self.regulariser_names, self.regularisers, strict=True):
            total, per_layer = regulariser(model)
            loss = loss + total
            metrics[f"loss/{name}"] = total.detach()
            for layer, value in per_layer.items():
                metrics[f"{name}/{layer.replace('.', '_')}"] = value
        metrics["loss/total"] = loss.detach()
        return loss, metrics

    def check_model(self, model: nn.Module) -> None:
        """Every model is accepted unless a family says otherwise; each regulariser checks
        that the layers it names exist and fit (families that override this call it too)."""
        for regulariser in self.regularisers:
            regulariser.check(model)

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: DataModule, device: torch.device, tier: str = "validation"
    ) -> dict[str, float]:
        """Each metric of :meth:`forward` averaged over the validation batches, as ``val/…``."""
        return self.mean_over_batches(model, data.val_loader(), device)

    def mean_over_batches(
        self, model: nn.Module, batches: Iterable[Any] | None, device: torch.device
    ) -> dict[str, float]:
        """``val/<metric>``: each step metric's mean over ``batches`` (none: an empty dict)."""
        if batches is None:
            return {}
        was_training = model.training
        model.eval()
        sums: dict[str, float] = defaultdict(float)
        count = 0
        for batch in batches:
            _, metrics = self(model, to_device(batch, device))
            for key, value in metrics.items():
                sums[key] += float(value)
            count += 1
        model.train(was_training)
        return {f"val/{key}": value / count for key, value in sums.items()} if count else {}

    def finish(self, model: nn.Module, data: DataModule, run_dir: Path, tracker: Any) -> None:
        """Nothing beyond ``model.pt`` unless a family says otherwise."""

    def evaluation_command(self, run_dir: Path) -> str | None:
        """``topo_eval``'s responses on the sheet when the run has positions (else None)."""
        if not (run_dir / "positions").is_dir():
            return None
        return " ".join(
            [
                "python -m topo_eval",
                override("checkpoint", run_dir / "model.pt"),
                override("positions", run_dir / "positions"),
            ]
        )


def _metric_name(regulariser: nn.Module) -> str:
    """TopoLoss → topo_loss: the class name in snake case, for metric keys."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(regulariser).__name__).lower()
