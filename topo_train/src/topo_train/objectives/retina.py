"""Fitting retina models to recorded spike counts: Poisson loss over scored windows.

A batch (``topo_data.retina_responses.RetinaBatch``) holds windows of the stimulus movie, each
with ``history`` unscored frames first; the model restarts its movie at every window
(``model.reset()``), so the carried state of one window never leaks into the next, and only
the frames after the history are scored:

    loss = mean over windows, cells and scored frames of (r̂ − y · log(r̂ + ε))

(the Poisson negative log-likelihood up to terms without r̂). Validation pools every
validation window: per-cell correlation of predicted rate and counts, the Poisson loss, and —
when the data carry planted kernels (the simulated default) — the correlation of each fitted
kernel with its planted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from topo_models import TopoError
from topo_models.retina import memory_frames
from topo_models.retina.fit_metrics import (
    cell_correlations,
    kernel_correlations,
    poisson_nll,
    window_rates,
)
from topo_train.batches import to_device
from topo_train.contracts import Regulariser
from topo_train.objectives.base import BaseObjective
from topo_train.run_names import override


class RetinaPoissonObjective(BaseObjective):
    """Poisson fit of an LN-family retina model (``loss=retina_poisson``).

    Args:
        history: unscored frames before each window (from the data module).
        eps: keeps ``log(r̂ + ε)`` finite at zero rate.
        positions: unused (retina models have no sheet); accepted like every objective.
    """

    def __init__(
        self,
        history: int,
        eps: float = 1e-8,
        positions: Any = None,
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        super().__init__(regularisers)
        self.history = int(history)
        self.eps = float(eps)

    def check_model(self, model: nn.Module) -> None:
        """Refuse a model whose filter memory is longer than the windows' history."""
        super().check_model(model)
        memory = memory_frames(model)
        if memory - 1 > self.history:
            raise TopoError(
                "scored frames would see the zeros before the window: the model remembers "
                "more frames than the data's history gives it",
                field="data.history",
                expected=f">= {memory - 1} (the model's memory minus one)",
                found=self.history,
            )

    def rates(self, model: nn.Module, video: torch.Tensor) -> torch.Tensor:
        """(windows, cells, scored frames) predicted counts of a fresh movie per window."""
        return window_rates(model, video, self.history)

    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rates = self.rates(model, batch.video)
        if rates.shape != batch.responses.shape:
            raise TopoError(
                "the model's output does not match the recorded cells",
                field="model.cells",
                expected=tuple(batch.responses.shape),
                found=tuple(rates.shape),
            )
        loss = poisson_nll(rates, batch.responses, self.eps)
        return loss, {"loss/poisson": loss.detach(), "loss/total": loss.detach()}

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: Any, device: torch.device, tier: str = "validation"
    ) -> Mapping[str, float]:
        """Pooled validation metrics (``val/poisson``, ``val/correlation``, kernels if planted)."""
        was_training = model.training
        model.eval()
        predicted, observed = [], []
        for batch in data.val_loader():
            batch = to_device(batch, device)
            predicted.append(self.rates(model, batch.video).permute(1, 0, 2).flatten(1))
            observed.append(batch.responses.permute(1, 0, 2).flatten(1))
        model.train(was_training)
        rates, counts = torch.cat(predicted, dim=1), torch.cat(observed, dim=1)
        correlations = cell_correlations(rates, counts)
        metrics = {
            "val/poisson": float(poisson_nll(rates, counts, self.eps)),
            "val/correlation": float(correlations.mean()),
        }
        truth = data.ground_truth()
        bare = getattr(model, "module", model)
        kernel = getattr(getattr(bare, "filter", None), "kernel", None)
        if truth is not None and kernel is not None:
            metrics["val/kernel_correlation"] = float(
                kernel_correlations(kernel().cpu(), truth["true_kernels"]).mean()
            )
        return metrics

    def evaluation_command(self, run_dir: Path) -> str | None:
        """``topo_eval task=retina_fit``: per-cell fit quality and the fitted kernels."""
        return f"python -m topo_eval task=retina_fit {override('checkpoint', run_dir / 'model.pt')}"
