"""The Sensorium objective: summed Poisson loss over one round of sessions, plus regularisers.

neuralpredictors' ``standard_trainer`` cycles round-robin over the recording sessions
(``data_key``) and steps the optimiser once per round, accumulating the gradients of each
session's batch. Here a training "batch" is that round — ``{data_key: StaticBatch}`` — and the
loss is the sum of the per-session losses, which gives the same gradient with one backward:

    loss_k = √(N_k / B_k) · Σ (r̂ − r · log(r̂ + ε)) + core.regularizer() + readout_k.regularizer()

with N_k every trial in session k's file (all tiers, as published) and B_k the batch size.
Validation pools the single-trial correlation of every neuron of every session over the whole
tier (neuron-weighted mean), the early-stopping objective of the published trainer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from topo_models import TopoError
from topo_train.batches import to_device
from topo_train.contracts import Regulariser
from topo_train.objectives.base import BaseObjective
from topo_train.run_names import override

POISSON_EPS = 1e-12  # neuralpredictors 0.3.0's PoissonLoss


def poisson_loss(rates: torch.Tensor, targets: torch.Tensor, eps: float = POISSON_EPS):
    """Σ (r̂ − r · log(r̂ + ε)) over trials and neurons (the Poisson NLL without log r!)."""
    return (rates - targets * torch.log(rates + eps)).sum()


def neuron_correlations(
    targets: torch.Tensor, predictions: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Per-neuron correlation over trials: mean of z-scored products (population std + eps).

    The definition of neuralpredictors' ``corr``; a constant neuron gives 0 rather than NaN.
    """
    t = targets.double() - targets.double().mean(dim=0)
    p = predictions.double() - predictions.double().mean(dim=0)
    t = t / (t.pow(2).mean(dim=0).sqrt() + eps)
    p = p / (p.pow(2).mean(dim=0).sqrt() + eps)
    return torch.nan_to_num((t * p).mean(dim=0), nan=0.0)


def model_inputs(batch: Any) -> dict[str, torch.Tensor]:
    """The keyword arguments a predictive model takes from a batch (shifter and behaviour)."""
    inputs = {}
    for name in ("pupil_center", "behavior"):
        value = getattr(batch, name, None)
        if value is not None:
            inputs[name] = value
    return inputs


class PoissonObjective(BaseObjective):
    """Poisson training of a neural predictive model (the Sensorium baseline's objective).

    Args:
        trials_in_file: every session's trial count (all tiers; the data module supplies it).
        positions: unused; predictive runs put no units on a sheet (kept for the loop's call).
        scale_loss: multiply each session's loss by √(trials in file / batch size).
        avg_loss: average the Poisson loss over trials and neurons instead of summing it.
        detach_core: train the readouts only (the core's output is detached, its regulariser
            left out).
        eps: ε inside the log.
        test_tier: tier evaluated once at the end of training (null: none).
    """

    # the total is summed over neurons and trials (~10⁵ at Sensorium's sizes): the bar shows
    # the per neuron and trial mean, which reads the same at any batch size
    progress_metric = "loss/poisson_per_neuron_trial"

    def __init__(
        self,
        trials_in_file: Mapping[str, int],
        positions: Any = None,
        scale_loss: bool = True,
        avg_loss: bool = False,
        detach_core: bool = False,
        eps: float = POISSON_EPS,
        test_tier: str | None = "test",
        regularisers: Sequence[Regulariser] = (),
    ) -> None:
        super().__init__(regularisers)
        if positions is not None:
            raise TopoError(
                "the Poisson objective has no spatial term; run it without positions",
                field="positions",
                expected="null",
                found=type(positions).__name__,
            )
        if not eps > 0:
            raise TopoError("must be > 0", field="loss.eps", found=eps)
        self.trials_in_file = {str(k): int(v) for k, v in trials_in_file.items()}
        self.scale_loss = bool(scale_loss)
        self.avg_loss = bool(avg_loss)
        self.detach_core = bool(detach_core)
        self.eps = float(eps)
        self.test_tier = test_tier

    def session_loss(
        self, model: nn.Module, data_key: str, batch: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, Poisson term, regulariser) of one session's batch."""
        bare = getattr(model, "module", model)
        rates = model(
            batch.images, data_key=data_key, detach_core=self.detach_core, **model_inputs(batch)
        )
        loss = poisson_loss(rates.float(), batch.responses, self.eps)
        if self.avg_loss:
            loss = loss / batch.responses.numel()
        if self.scale_loss:
            loss = loss * math.sqrt(self.trials_in_file[data_key] / batch.responses.shape[0])
        regularizer = bare.readout.regularizer(data_key)
        if not self.detach_core:
            regularizer = regularizer + bare.core.regularizer()
        return loss + regularizer, loss.detach(), regularizer.detach()

    def forward(
        self, model: nn.Module, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not isinstance(batch, Mapping):
            raise TopoError(
                "Poisson training takes one round of sessions per step",
                field="batch",
                expected="{data_key: StaticBatch}",
                found=type(batch).__name__,
            )
        total = poisson = regularizer = unscaled = 0.0
        values = 0
        for data_key, session_batch in batch.items():
            loss, p, r = self.session_loss(model, data_key, session_batch)
            total, poisson, regularizer = total + loss, poisson + p, regularizer + r
            # undo the √(N/B) factor and any averaging: the plain sum over neurons and trials
            count = session_batch.responses.numel()
            scale = math.sqrt(self.trials_in_file[data_key] / session_batch.responses.shape[0])
            unscaled = unscaled + p / (scale if self.scale_loss else 1.0) * (
                count if self.avg_loss else 1
            )
            values += count
        metrics = {
            "loss/total": total.detach(),
            "loss/poisson": poisson,
            "loss/poisson_per_neuron_trial": unscaled / max(values, 1),
            "loss/regularizer": regularizer,
        }
        return total, metrics

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: Any, device: torch.device, tier: str = "validation"
    ) -> dict[str, float]:
        """Pooled single-trial correlation and the Poisson loss over ``tier``: summed over
        neurons and averaged over trials (``poisson_per_trial``), and averaged over both
        (``poisson_per_neuron_trial``).

        Keys: ``val/…`` for the validation tier, ``<tier>/…`` otherwise; per-session
        correlations too (``val/correlation/<data_key>``).
        """
        prefix = "val" if tier == "validation" else tier
        was_training = model.training
        model.eval()
        per_neuron, metrics = [], {}
        poisson, trials, values = 0.0, 0, 0
        for data_key, loader in data.loaders(tier).items():
            targets, predictions = [], []
            for batch in loader:
                batch = to_device(batch, device)
                rates = model(batch.images, data_key=data_key, **model_inputs(batch))
                targets.append(batch.responses.float())
                predictions.append(rates.float())
            if not targets:
                continue
            y, p = torch.cat(targets), torch.cat(predictions)
            poisson += float(poisson_loss(p, y, self.eps))
            trials += y.shape[0]
            values += y.numel()
            correlations = neuron_correlations(y, p)
            per_neuron.append(correlations)
            metrics[f"{prefix}/correlation/{data_key}"] = float(correlations.mean())
        model.train(was_training)
        if not per_neuron:
            return {}
        metrics[f"{prefix}/correlation"] = float(torch.cat(per_neuron).mean())
        metrics[f"{prefix}/poisson_per_trial"] = poisson / trials
        metrics[f"{prefix}/poisson_per_neuron_trial"] = poisson / values
        return metrics

    def evaluation_command(self, run_dir: Path) -> str | None:
        """``topo_eval task=predictive``: correlations and submission files of the test tiers."""
        return f"python -m topo_eval task=predictive {override('checkpoint', run_dir / 'model.pt')}"
