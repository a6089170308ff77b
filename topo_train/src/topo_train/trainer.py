"""The one training loop: steps, AMP, clipping, validation, atomic checkpoints, auto-resume.

Family-specific work happens in the objective (``objective(model, batch) -> (loss, metrics)``);
the loop only moves batches, steps the optimiser and records. Resume is exact: the checkpoint
holds model, optimiser, scheduler, scaler, objective (its neighbourhood generator) and RNG
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
from tqdm.auto import tqdm

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes
from topo_train.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from topo_train.runtime import DistributedContext
from topo_train.settings import TrainerSettings

log = logging.getLogger(__name__)

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
METRICS_FILE = "metrics.jsonl"


def parameter_groups(model: nn.Module, weight_decay_on_norm: bool) -> list[dict[str, Any]]:
    """Parameters split so normalisation layers can skip weight decay (as TDANN's SGD did)."""
    if weight_decay_on_norm:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    norm_ids = {
        id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()
    }
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in norm_ids]},
        {"params": [p for p in params if id(p) in norm_ids], "weight_decay": 0.0},
    ]


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch


class Trainer:
    """Runs ``settings.max_steps`` optimiser steps of ``objective`` on ``model``.

    Args:
        settings: loop settings.
        model: the trunk (already on ``device``; wrapped in DDP when distributed).
        objective: module with ``forward(model, batch) -> (loss, metrics)``.
        data: data module with ``train_loader(epoch, start_batch)``, ``steps_per_epoch`` and
            ``val_loader()``.
        optimizer: optimiser over the model's parameters.
        scheduler: LR scheduler stepped once per optimiser step.
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
        objective: nn.Module,
        data: Any,
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
        self.use_amp = settings.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0

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

    def resume_if_possible(self, state: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Resume from ``state`` (the checkpoint already read) or else from ``run_dir/last.pt``
        when present; return the checkpoint's contents (None: a fresh run)."""
        path = find_checkpoint(self.run_dir)
        if path is None:
            return None
        if state is None:
            state = load_checkpoint(path, map_location="cpu")
        self.restore(state)
        self._truncate_metrics_log()
        log.info("resumed from %s at step %d", path, self.step)
        return dict(state)

    # -- metrics ---------------------------------------------------------------------------
    def _truncate_metrics_log(self) -> None:
        """Drop lines logged after the checkpoint we resume from (they will be redone)."""
        path = self.run_dir / METRICS_FILE
        if not self.context.is_main or not path.exists():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= self.step]
        atomic_write_bytes(("\n".join(kept) + "\n" if kept else "").encode(), path)

    def _record(self, metrics: Mapping[str, float]) -> None:
        if not self.context.is_main:
            return
        self.tracker.log_metrics(metrics, self.step)
        with open(self.run_dir / METRICS_FILE, "a") as stream:
            stream.write(json.dumps({"step": self.step, **metrics}) + "\n")

    # -- the loop --------------------------------------------------------------------------
    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        self.model.train()
        batch = to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            loss, metrics = self.objective(self.model, batch)
        if not torch.isfinite(loss):
            raise TopoError(
                "the loss is not finite; the last checkpoint is kept. Lower the learning rate "
                "(optim.lr) or enable clipping (trainer.grad_clip_norm)",
                file=self.run_dir,
                field=f"step {self.step + 1}",
                found=float(loss),
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        loader = self.data.val_loader()
        if loader is None:
            return {}
        self.model.eval()
        sums: dict[str, float] = defaultdict(float)
        batches = 0
        for batch in loader:
            batch = to_device(batch, self.device)
            if batch[0].shape[0] < 2:  # correlations across a batch need two samples
                continue
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                _, metrics = self.objective(self.model, batch)
            for key, value in metrics.items():
                sums[key] += float(value)
            batches += 1
        self.model.train()
        return {f"val/{k}": v / batches for k, v in sums.items()} if batches else {}

    def fit(self) -> dict[str, float]:
        """Train to ``max_steps`` (from the resumed step), return the last logged metrics."""
        settings = self.settings
        steps_per_epoch = self.data.steps_per_epoch
        epoch, start_batch = divmod(self.step, steps_per_epoch)
        window: dict[str, float] = defaultdict(float)
        window_steps = 0
        last: dict[str, float] = {}
        bar = tqdm(
            total=settings.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not (settings.progress and self.context.is_main),
            dynamic_ncols=True,
        )
        while self.step < settings.max_steps:
            for batch in self.data.train_loader(epoch, start_batch):
                metrics = self.train_step(batch)
                for key, value in metrics.items():
                    window[key] += float(value)
                window_steps += 1
                bar.update(1)
                at_end = self.step >= settings.max_steps
                if self.step % settings.log_every == 0 or at_end:
                    last = {k: v / window_steps for k, v in window.items()}
                    last["lr"] = self.optimizer.param_groups[0]["lr"]
                    last["epoch"] = self.step / steps_per_epoch
                    bar.set_postfix(loss=f"{last.get('loss/total', math.nan):.4f}")
                    self._record(last)
                    window.clear()
                    window_steps = 0
                validate_now = at_end or (
                    settings.val_every > 0 and self.step % settings.val_every == 0
                )
                if validate_now:
                    val = self.validate()
                    if val:
                        self._record(val)
                        last.update(val)
                if at_end or self.step % settings.checkpoint_every == 0:
                    self.save()
                if at_end:
                    break
            epoch, start_batch = epoch + 1, 0
        bar.close()
        return last
