"""The one training loop: steps, AMP, clipping, validation, atomic checkpoints, auto-resume.

Family-specific work happens in the objective (``objective(model, batch) -> (loss, metrics)``);
the loop only moves batches, steps the optimiser and records. Resume is exact: the checkpoint
holds model, optimiser, scheduler, scaler, objective (its random state) and RNG
states, and the data order is a pure function of (seed, epoch), so a run killed at any step and
restarted ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes
from topo_train import preemption
from topo_train.batches import to_device
from topo_train.contracts import DataModule, Objective
from topo_train.early_stopping import STOP, EarlyStopping
from topo_train.optimisers import is_plateau, uses_closure
from topo_train.progress import Progress
from topo_train.run_checkpoints import latest_checkpoint, save_checkpoint
from topo_train.runtime import DistributedContext
from topo_train.settings import TrainerSettings

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class Trainer:
    """Runs ``settings.max_steps`` optimiser steps of ``objective`` on ``model``.

    Validation is the objective's ``evaluate`` (metrics over the whole tier, batch means or
    pooled scores); its ``test_tier``, if any, is evaluated once at the end. With
    ``settings.early_stopping`` the metric is watched at every validation (one before the first
    step too), and the run ends on the best weights.

    Args:
        settings: loop settings.
        model: the trunk (already on ``device``; wrapped in DDP when distributed).
        objective: a :class:`topo_train.contracts.Objective`.
        data: a :class:`topo_train.contracts.DataModule`.
        optimizer: optimiser over the model's parameters.
        scheduler: LR scheduler stepped once per optimiser step (``ReduceLROnPlateau``: once
            per validation, with the early-stopping metric).
        tracker: ``log_metrics(metrics, step)`` sink (MLflow or nothing).
        run_dir: where checkpoints and ``metrics.jsonl`` go.
        device: compute device.
        context: distributed context; only rank 0 writes files and logs.
        checkpoint_extra: saved with every checkpoint (config, MLflow run id).
    """

    def __init__(
        self,
        settings: TrainerSettings,
        model: nn.Module,
        objective: Objective,
        data: DataModule,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        tracker: Any,
        run_dir: Path,
        device: torch.device,
        context: DistributedContext,
        checkpoint_extra: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.settings = settings
        self.model = model
        self.objective = objective
        self.data = data
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.tracker = tracker
        self.run_dir = run_dir
        self.device = device
        self.context = context
        self.checkpoint_extra = checkpoint_extra
        # LBFGS re-evaluates the loss inside step(closure); GradScaler cannot follow that
        self.uses_closure = uses_closure(optimizer)
        self.use_amp = settings.amp and device.type == "cuda" and not self.uses_closure
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        # sums of the metrics since the last log line: checkpointed, so a resumed run logs the
        # same averages as one that never stopped
        self.window: dict[str, float] = defaultdict(float)
        self.window_steps = 0
        self._logged_through: dict[str, int] = {}  # metrics.jsonl: each key's last step
        self.stopper = (
            EarlyStopping(settings.early_stopping) if settings.early_stopping is not None else None
        )
        if is_plateau(scheduler) and self.stopper is None:
            raise TopoError(
                "ReduceLROnPlateau needs a validation metric to watch",
                field="trainer.early_stopping",
                expected="{metric: ..., mode: ...} (its metric steps the scheduler)",
                found=None,
            )

    @property
    def total_steps(self) -> int:
        """The run's length in optimiser steps (``max_epochs`` × steps per epoch if set)."""
        if self.settings.max_epochs is not None:
            return self.settings.max_epochs * self.data.steps_per_epoch
        return int(self.settings.max_steps)

    @property
    def bare_model(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    # -- checkpoints -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "model": self.bare_model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "early_stopping": None if self.stopper is None else self.stopper.state_dict(),
            "window": {"sums": dict(self.window), "steps": self.window_steps},
            **self.checkpoint_extra(),
        }

    def save(self) -> Path | None:
        if not self.context.is_main:
            return None
        return save_checkpoint(self.state(), self.run_dir)

    def restore(self, state: Mapping[str, Any]) -> None:
        self.bare_model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        if self.stopper is not None and state.get("early_stopping") is not None:
            self.stopper.load_state_dict(state["early_stopping"])
        window = state.get("window") or {"sums": {}, "steps": 0}  # older checkpoints: none
        self.window = defaultdict(float, {k: float(v) for k, v in window["sums"].items()})
        self.window_steps = int(window["steps"])

    def resume_if_possible(self, state: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Resume from ``state`` (the checkpoint already read) or else from the run
        directory's latest intact checkpoint; return its contents (None: a fresh run).

        Either way ``metrics.jsonl`` keeps only the lines up to the resumed step: a killed
        attempt's later lines are logged again, identically, by this one.
        """
        if state is None:
            found = latest_checkpoint(self.run_dir)
            state = None if found is None else found[1]
        if state is not None:
            self.restore(state)
            log.info("resumed from %s at step %d", self.run_dir, self.step)
        self._truncate_metrics_log(self.step if state is not None else None)
        return None if state is None else dict(state)

    # -- metrics ---------------------------------------------------------------------------
    def _truncate_metrics_log(self, through_step: int | None) -> None:
        """Keep the lines up to ``through_step`` (None: none) and note each key's last step."""
        path = self.run_dir / METRICS_FILE
        self._logged_through = {}
        if not self.context.is_main or not path.exists():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        kept = [
            line
            for line, record in zip(lines, records, strict=True)
            if through_step is not None and record["step"] <= through_step
        ]
        for record in records[: len(kept)]:
            for key in record:
                self._logged_through[key] = record["step"]
        atomic_write_bytes(("\n".join(kept) + "\n" if kept else "").encode(), path)

    def _record(self, metrics: Mapping[str, float]) -> None:
        """Log ``metrics`` at this step (to the tracker and ``metrics.jsonl``), leaving out
        values already logged at this step (a resumed run's final metrics, say)."""
        if not self.context.is_main:
            return
        metrics = {k: v for k, v in metrics.items() if self.step > self._logged_through.get(k, -1)}
        if not metrics:
            return
        self.tracker.log_metrics(metrics, self.step)
        with open(self.run_dir / METRICS_FILE, "a") as stream:
            stream.write(json.dumps({"step": self.step, **metrics}) + "\n")

    # -- the loop --------------------------------------------------------------------------
    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise TopoError(
                "the loss is not finite; the last checkpoint is kept. Lower the learning rate "
                "(optim.lr) or enable clipping (trainer.grad_clip_norm)",
                file=self.run_dir,
                field=f"step {self.step + 1}",
                found=float(loss),
            )

    def _closure_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One step of a closure optimiser (LBFGS): it evaluates loss and gradients itself,
        as often as its line search needs; the metrics are those of its first evaluation."""
        first: list[dict[str, torch.Tensor]] = []

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss, metrics = self.objective(self.model, batch)
            self._check_finite(loss)
            loss.backward()
            if self.settings.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(self._trained(), self.settings.grad_clip_norm)
            if not first:
                first.append(metrics)
            return loss

        self.optimizer.step(closure)
        if not is_plateau(self.scheduler):
            self.scheduler.step()
        self.step += 1
        return first[0]

    def _trained(self) -> list[torch.Tensor]:
        """Every parameter the optimiser steps: the model's, in its order (a clipped run's
        norm, summed in that order, stays what it was), then any the objective learns."""
        learned = [p for p in self.objective.parameters() if p.requires_grad]
        return [*self.model.parameters(), *learned]

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        self.model.train()
        batch = to_device(batch, self.device)
        if self.uses_closure:
            return self._closure_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            loss, metrics = self.objective(self.model, batch)
        self._check_finite(loss)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self._trained(), self.settings.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if not is_plateau(self.scheduler):
            self.scheduler.step()
        self.step += 1
        return metrics

    @torch.no_grad()
    def validate(self, tier: str = "validation") -> dict[str, float]:
        """The objective's metrics over ``tier`` (validation, or its test tier at the end)."""
        metrics = self.objective.evaluate(self.bare_model, self.data, self.device, tier)
        self.model.train()
        return dict(metrics)

    def _validate_and_watch(self, last: dict[str, float]) -> bool:
        """Validate, record (into ``last`` too), step a plateau scheduler and early stopping;
        True: stop now."""
        val = self.validate()
        if val:
            self._record(val)
            last.update(val)
        if self.stopper is None:
            return False
        metric = self.settings.early_stopping.metric
        if is_plateau(self.scheduler) and metric in val:
            self.scheduler.step(val[metric])
        decision = self.stopper.observe(val, self.bare_model)
        if decision != "continue":
            log.info(
                "early stopping: %s after step %d (best %s = %.6g, round %d)",
                decision,
                self.step,
                metric,
                self.stopper.best,
                self.stopper.round,
            )
        return decision == STOP

    def fit(self) -> dict[str, float]:
        """Train to the run's length (from the resumed step), return the last logged metrics."""
        settings = self.settings
        total = self.total_steps
        last: dict[str, float] = {}
        stopped = self.stopper is not None and self.stopper.stopped
        if self.stopper is not None and not self.stopper.started and self.step == 0:
            stopped = self._validate_and_watch(last)  # the baseline value, before any step
        if self.context.is_main:
            log.info(
                "training %s: step %d to %d (%d per epoch) on %s",
                self.run_dir,
                self.step,
                total,
                self.data.steps_per_epoch,
                self.device,
            )
        progress = Progress(
            total,
            self.step,
            bar=settings.progress and self.context.is_main,
            lines=self.context.is_main,
        )
        try:  # an interrupted run's bar is closed, and the log says where it stopped
            last = self._steps(progress, last, stopped)
        finally:
            progress.close()
        if self.stopper is not None:  # the run ends on its best weights
            self.stopper.restore_best(self.bare_model)
        last.update(self._final_metrics())
        return last

    def _steps(self, progress: Progress, last: dict[str, float], stopped: bool) -> dict[str, float]:
        """The steps from the current one to the run's end (or an early stop); returns the
        last logged metrics."""
        settings = self.settings
        steps_per_epoch = self.data.steps_per_epoch
        total = self.total_steps
        epoch, start_batch = divmod(self.step, steps_per_epoch)
        window = self.window
        while self.step < total and not stopped:
            for batch in self.data.train_loader(epoch, start_batch):
                metrics = self.train_step(batch)
                for key, value in metrics.items():
                    window[key] += float(value)
                self.window_steps += 1
                at_end = self.step >= total
                if self.step % settings.log_every == 0 or at_end:
                    last = {k: v / self.window_steps for k, v in window.items()}
                    last["lr"] = self.optimizer.param_groups[0]["lr"]
                    last["epoch"] = self.step / steps_per_epoch
                    shown = self.objective.progress_metric
                    progress.set_loss(last.get(shown, math.nan), shown)
                    self._record(last)
                    window.clear()
                    self.window_steps = 0
                progress.update(self.step)
                epoch_end = self.step % steps_per_epoch == 0
                validate_now = (
                    at_end
                    or (settings.val_every > 0 and self.step % settings.val_every == 0)
                    or (
                        epoch_end
                        and settings.val_every_epochs > 0
                        and (self.step // steps_per_epoch) % settings.val_every_epochs == 0
                    )
                )
                if validate_now:
                    stopped = self._validate_and_watch(last)
                saved = stopped or at_end or self.step % settings.checkpoint_every == 0
                if saved:
                    self.save()
                if stopped or at_end:
                    break
                if preemption.requested(self.context, self.device):  # SLURM's warning signal
                    if not saved:
                        self.save()  # whole file (temp, rename): a kill now loses nothing
                    preemption.requeue(self.context, self.step)
            epoch, start_batch = epoch + 1, 0
        return last

    def _final_metrics(self) -> dict[str, float]:
        """The watched metric's best value and the objective's test tier at the end (recorded
        once: a re-run of a finished run returns them without logging them again)."""
        final: dict[str, float] = {}
        if self.stopper is not None and self.stopper.best is not None:
            final[f"best/{self.settings.early_stopping.metric}"] = float(self.stopper.best)
        if self.objective.test_tier is not None:
            final.update(self.validate(self.objective.test_tier))
        if final:
            self._record(final)
        return final
