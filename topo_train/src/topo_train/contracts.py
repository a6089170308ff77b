"""What the training loop asks of a family, and when it asks it.

The loop (:mod:`topo_train.train`, :mod:`topo_train.trainer`) knows no family. A family plugs
in through three objects, each built from its config group: a :class:`DataModule` (``data=``),
an :class:`Objective` (``loss=``) and, where its units sit on a fixed cortical sheet,
:class:`RunHooks` (``positions=``). Everything particular to a family — two augmented views,
a classifier's class count, per-neuron correlations, learned positions — lives behind these
methods. Objectives share defaults through :class:`topo_train.objectives.base.BaseObjective`,
which also adds any :class:`Regulariser` of the weights (``loss.regularisers``) to a family's loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class DataModule(Protocol):
    """Batches for training and validation, and what the data decide about the model."""

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps in one pass over the training data. Read when the run starts: it
        turns ``trainer.max_epochs`` into steps and a resumed step into (epoch, batch)."""

    def train_loader(self, epoch: int, start_batch: int = 0) -> Iterable[Any]:
        """Called at the start of every epoch (on resume: the epoch and batch to start at).
        The batches must be a pure function of (seed, epoch) so that resume is exact."""

    def val_loader(self) -> Iterable[Any] | None:
        """The validation batches (None: no validation split). Called by objectives'
        :meth:`Objective.evaluate`, never by the loop itself."""

    def model_config_values(self) -> dict[str, Any]:
        """Called once, before the model is built: plain values the data decide (class count,
        input shape, cell count). Each fills the model config's key of that name where it is
        null, and is saved with the weights."""

    def model_kwargs(self) -> dict[str, Any]:
        """Called once, when the model is built: constructor arguments that are not config
        values (arrays such as neurons' cortical coordinates); not saved in the config."""

    def objective_kwargs(self) -> dict[str, Any]:
        """Called once, when the objective is built: arguments it takes from the data (trials
        per session, history frames)."""


@runtime_checkable
class Objective(Protocol):
    """One training step's loss and the metrics of a validation; an ``nn.Module`` so that its
    state (a neighbourhood generator, say) is checkpointed with the run."""

    requires: ClassVar[Mapping[str, Mapping[str, Any]]]
    """Config values this objective needs of the other groups, e.g.
    ``{"model": {"head": "projector"}, "data": {"views": "simclr"}}``. Read from the class
    before anything is built: a null key takes the value, a different value is refused."""

    test_tier: str | None
    """A tier :meth:`evaluate` scores once at the end of the run (None: none)."""

    progress_metric: str
    """The step metric the progress bar and lines show (e.g. ``loss/total``; a family whose
    total is a sum over thousands of neurons shows a per-neuron mean instead)."""

    def __call__(
        self, model: nn.Module, batch: Any
    ) -> tuple[torch.Tensor, Mapping[str, torch.Tensor | float]]:
        """Every training step, with the batch on the run's device: (loss to minimise,
        metrics to log). ``loss/total`` is the loss the progress bar shows."""

    def check_model(self, model: nn.Module) -> None:
        """Once, after the model and objective are built and before any step: refuse, with a
        clear error, a model this objective cannot train (a layer it names is missing)."""

    def evaluate(
        self, model: nn.Module, data: DataModule, device: torch.device, tier: str
    ) -> dict[str, float]:
        """At every validation (``tier="validation"``) and once for :attr:`test_tier`, in
        eval mode with gradients off: metrics over the whole tier, keyed ``val/…`` or
        ``<tier>/…`` (an empty dict: nothing to report)."""

    def finish(self, model: nn.Module, data: DataModule, run_dir: Path, tracker: Any) -> None:
        """Once, when a run has finished and ``model.pt`` is written (rank 0 only): write and
        log what the family makes of a trained model (figures, learned positions)."""

    def evaluation_command(self, run_dir: Path) -> str | None:
        """Once, at the very end of a run (rank 0, after :meth:`finish` and the run hooks'
        finish), for the summary the run prints: the ``python -m topo_eval …`` command that
        evaluates this run, pasteable as it stands (paths through
        :func:`topo_train.run_names.override`); None: nothing to suggest. ``run_dir`` is the
        run directory as the user types it (relative to the working directory when inside)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class Regulariser(Protocol):
    """A term of the model's weights that any objective adds to its loss
    (``loss.regularisers``): TopoLoss, a wiring cost, the neighbour-cosine smoothness …"""

    def __call__(self, model: nn.Module) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """Every training step: (weighted total to add to the loss, {layer: value (detached)})."""

    def check(self, model: nn.Module) -> Any:
        """Once, before any step (from :meth:`Objective.check_model`): refuse, with a clear
        error, a model whose layers do not fit (a missing layer, a wrong unit count)."""


@runtime_checkable
class RunHooks(Protocol):
    """Work a run does around training that is neither data nor loss: putting units on a
    fixed cortical sheet (``positions=``)."""

    def start(self, model: nn.Module, data: DataModule, run_dir: Path, context: Any) -> dict:
        """Once, after the model is built and before the objective is: prepare (rank 0 writes,
        replicas then read) and return keyword arguments for the objective."""

    def finish(self, model: nn.Module, data: DataModule, run_dir: Path, tracker: Any) -> None:
        """Once, when the run has finished (rank 0 only), after the objective's finish."""
