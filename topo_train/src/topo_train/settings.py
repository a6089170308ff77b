"""Settings of the training loop (config group ``trainer/``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from topo_models import TopoError
from topo_train.early_stopping import EarlyStoppingSettings


@dataclass
class TrainerSettings:
    """How long and how a run trains; maps one-to-one onto ``conf/trainer/*.yaml``.

    Args:
        max_steps: optimiser steps of the whole run (null when ``max_epochs`` sets the length).
        max_epochs: run length in epochs of the data module instead of steps (null: use
            ``max_steps``). Exactly one of the two is set.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision (float16 autocast + gradient scaling); only used on CUDA.
        grad_clip_norm: clip the global gradient norm to this value; null switches it off.
        checkpoint_every: steps between atomic checkpoints (one is always written at the end).
        val_every: steps between validation passes; 0 validates only at the end.
        val_every_epochs: also validate after every this many epochs (0: never).
        early_stopping: watch a validation metric, restore the best weights when it stops
            improving and stop after a number of rounds (see ``early_stopping.py``); null: off.
            A ``ReduceLROnPlateau`` scheduler is stepped with the same metric.
        log_every: steps between metric logs (averaged over the steps in between).
        deterministic: deterministic algorithms (same config + seed → same numbers on CPU).
        no_weight_decay_on_norm: exclude normalisation-layer parameters from weight decay.
        sync_batchnorm: under multi-GPU DDP, synchronise batch-norm statistics across replicas
            (TDANN trained with SyncBN); CPU replicas keep per-replica statistics.
        figure_layers: layers drawn on the sheet in the run's figure.
        progress: show a progress bar.
        tune_allocator: keep freed memory in glibc's heap (see ``runtime.tune_cpu_allocator``);
            saves the page faults of re-allocating large tensors every step.
    """

    max_steps: int | None = 300
    max_epochs: int | None = None
    device: str = "auto"
    amp: bool = True
    grad_clip_norm: float | None = 5.0
    checkpoint_every: int = 50
    val_every: int = 100
    val_every_epochs: int = 0
    early_stopping: EarlyStoppingSettings | Mapping | None = None
    log_every: int = 10
    deterministic: bool = True
    no_weight_decay_on_norm: bool = True
    sync_batchnorm: bool = True
    figure_layers: Sequence[str] = field(default_factory=lambda: ("layer2.0", "layer4.1"))
    progress: bool = True
    tune_allocator: bool = True

    def __post_init__(self) -> None:
        self.figure_layers = tuple(self.figure_layers)
        if (self.max_steps is None) == (self.max_epochs is None):
            raise TopoError(
                "set exactly one of trainer.max_steps and trainer.max_epochs (the other null)",
                field="trainer.max_steps / trainer.max_epochs",
                found=(self.max_steps, self.max_epochs),
            )
        if isinstance(self.early_stopping, Mapping):
            self.early_stopping = EarlyStoppingSettings(**dict(self.early_stopping))
        for name in ("max_steps", "max_epochs", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if value is None and name in ("max_steps", "max_epochs"):
                continue
            if not isinstance(value, int) or value < 1:
                raise TopoError(
                    "must be a positive integer",
                    field=f"trainer.{name}",
                    expected=">= 1",
                    found=value,
                )
        for name in ("val_every", "val_every_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise TopoError("must be an integer >= 0", field=f"trainer.{name}", found=value)
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise TopoError(
                "must be > 0 or null", field="trainer.grad_clip_norm", found=self.grad_clip_norm
            )
