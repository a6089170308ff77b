"""Early stopping on a validation metric, with best-weight restores (neuralpredictors' rule).

The Sensorium trainer evaluates its validation metric before training and after every epoch.
A value counts as an improvement only when it beats the best by more than ``tolerance``; the
best weights are then kept (a CPU copy). After ``patience`` evaluations without one, the best
weights are put back and a new *round* starts, for at most ``rounds`` rounds; then training
stops, and it always ends on the best weights. The learning rate is cut by the scheduler
(``ReduceLROnPlateau``), not here. The whole state — best value and weights, counters — goes
into the checkpoint, so a killed run resumes with the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from topo_models import TopoError

CONTINUE, RESTORED, STOP = "continue", "restored", "stop"


@dataclass
class EarlyStoppingSettings:
    """Maps one-to-one onto ``trainer.early_stopping`` in the config.

    Args:
        metric: the validation metric to watch (``val/correlation``).
        mode: ``max`` (higher is better) or ``min``.
        patience: evaluations without improvement before the best weights are restored.
        tolerance: an improvement must beat the best by more than this (absolute).
        rounds: restore-and-continue rounds before training stops (neuralpredictors'
            ``lr_decay_steps``).
    """

    metric: str = "val/correlation"
    mode: str = "max"
    patience: int = 5
    tolerance: float = 1e-6
    rounds: int = 4

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise TopoError(
                "unknown mode",
                field="trainer.early_stopping.mode",
                expected="max | min",
                found=self.mode,
            )
        for name in ("patience", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise TopoError(
                    "must be a positive integer",
                    field=f"trainer.early_stopping.{name}",
                    expected=">= 1",
                    found=value,
                )
        if not self.tolerance >= 0:
            raise TopoError(
                "must be >= 0", field="trainer.early_stopping.tolerance", found=self.tolerance
            )


class EarlyStopping:
    """Watches one metric and decides, after each evaluation, to continue, restore or stop."""

    def __init__(self, settings: EarlyStoppingSettings) -> None:
        self.settings = settings
        self.best: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evaluations = 0
        self.round = 0
        self.stopped = False

    @property
    def started(self) -> bool:
        return self.best is not None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        sign = 1.0 if self.settings.mode == "max" else -1.0
        return sign * value > sign * self.best + self.settings.tolerance

    def observe(self, metrics: dict[str, float], model: nn.Module) -> str:
        """Record one evaluation; restores ``model`` to its best weights when patience runs out.

        Returns:
            ``continue``, ``restored`` (a new round starts on the best weights) or ``stop``
            (the best weights are in ``model``).
        """
        name = self.settings.metric
        if name not in metrics:
            raise TopoError(
                "the early-stopping metric is not among the validation metrics",
                field="trainer.early_stopping.metric",
                expected=sorted(metrics),
                found=name,
            )
        value = float(metrics[name])
        if not math.isfinite(value):  # neuralpredictors stops on a non-finite objective
            self.restore_best(model)
            self.stopped = True
            return STOP
        if self._better(value):
            self.best = value
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.bad_evaluations = 0
            return CONTINUE
        self.bad_evaluations += 1
        if self.bad_evaluations < self.settings.patience:
            return CONTINUE
        self.restore_best(model)
        self.bad_evaluations = 0
        self.round += 1
        if self.round >= self.settings.rounds:
            self.stopped = True
            return STOP
        return RESTORED

    def restore_best(self, model: nn.Module) -> None:
        """Put the best weights seen so far back into ``model`` (no-op before the first)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_state": self.best_state,
            "bad_evaluations": self.bad_evaluations,
            "round": self.round,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_state = state["best_state"]
        self.bad_evaluations = int(state["bad_evaluations"])
        self.round = int(state["round"])
        self.stopped = bool(state["stopped"])
