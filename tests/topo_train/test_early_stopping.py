"""Early stopping (neuralpredictors' rule) and how the one training loop uses it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from topo_models import TopoError
from topo_train.early_stopping import EarlyStopping, EarlyStoppingSettings
from topo_train.objectives.base import BaseObjective
from topo_train.runtime import DistributedContext
from topo_train.settings import TrainerSettings
from topo_train.tracking import NullTracker
from topo_train.trainer import Trainer


def _model(value: float) -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_patience_restores_the_best_weights_and_rounds_end_the_run():
    stopper = EarlyStopping(EarlyStoppingSettings(patience=2, rounds=2, tolerance=0.01))
    model = _model(0.0)
    decisions = []
    # weight = the value reported, so the restored weight tells which state was kept
    for value in (0.1, 0.5, 0.505, 0.3, 0.6, 0.2, 0.1):
        with torch.no_grad():
            model.weight.fill_(value)
        decisions.append(stopper.observe({"val/correlation": value}, model))
        if decisions[-1] != "continue":
            assert model.weight.item() == pytest.approx(stopper.best)
    # 0.505 does not beat 0.5 by the tolerance: two bad evaluations → restore 0.5 (round 1);
    # 0.6 improves; 0.2 and 0.1 are bad → restore 0.6, second round → stop
    assert decisions == [
        "continue",
        "continue",
        "continue",
        "restored",
        "continue",
        "continue",
        "stop",
    ]
    assert stopper.best == 0.6 and model.weight.item() == pytest.approx(0.6)


def test_min_mode_and_state_round_trip():
    stopper = EarlyStopping(EarlyStoppingSettings(metric="val/loss", mode="min", patience=1))
    model = _model(2.0)
    stopper.observe({"val/loss": 2.0}, model)
    assert stopper.observe({"val/loss": 1.0}, model) == "continue" and stopper.best == 1.0
    copy = EarlyStopping(EarlyStoppingSettings(metric="val/loss", mode="min", patience=1))
    copy.load_state_dict(stopper.state_dict())
    with torch.no_grad():
        model.weight.fill_(7.0)
    assert copy.observe({"val/loss": 3.0}, model) == "restored"
    assert model.weight.item() == 2.0  # the state saved with best 1.0 held weight 2.0


def test_non_finite_metric_stops_on_the_best_weights():
    stopper = EarlyStopping(EarlyStoppingSettings())
    model = _model(1.0)
    stopper.observe({"val/correlation": 0.2}, model)
    with torch.no_grad():
        model.weight.fill_(5.0)
    assert stopper.observe({"val/correlation": math.nan}, model) == "stop"
    assert model.weight.item() == 1.0


def test_missing_metric_and_bad_settings_are_named():
    with pytest.raises(TopoError, match="val/correlation"):
        EarlyStopping(EarlyStoppingSettings()).observe({"val/loss": 1.0}, _model(0.0))
    with pytest.raises(TopoError, match="early_stopping.mode"):
        EarlyStoppingSettings(mode="up")
    with pytest.raises(TopoError, match="early_stopping.patience"):
        EarlyStoppingSettings(patience=0)


class _Data:
    """Three steps per epoch of a constant batch."""

    steps_per_epoch = 3

    def train_loader(self, epoch: int, start_batch: int = 0):
        for _ in range(start_batch, self.steps_per_epoch):
            yield torch.ones(2, 1)

    def val_loader(self):
        return None


class _Objective(BaseObjective):
    """Pulls the weight towards 3; validation scores follow a fixed script per evaluation."""

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self.script = list(script)
        self.evaluations = 0
        self.weights_seen: list[float] = []

    def forward(self, model, batch):
        loss = ((model(batch) - 3.0) ** 2).mean()
        return loss, {"loss/total": loss.detach()}

    def evaluate(self, model, data, device, tier):
        self.weights_seen.append(model.weight.item())
        value = self.script[min(self.evaluations, len(self.script) - 1)]
        self.evaluations += 1
        return {"val/correlation": value}


def _trainer(tmp_path: Path, script: list[float], epochs: int) -> Trainer:
    settings = TrainerSettings(
        max_steps=None,
        max_epochs=epochs,
        val_every=0,
        val_every_epochs=1,
        log_every=1,
        checkpoint_every=100,
        progress=False,
        tune_allocator=False,
        grad_clip_norm=None,
        early_stopping={"patience": 2, "rounds": 2},
    )
    model = _model(0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=1, threshold=1e-6, threshold_mode="abs"
    )
    return Trainer(
        settings,
        model,
        _Objective(script),
        _Data(),
        optimizer,
        scheduler,
        NullTracker(),
        tmp_path,
        torch.device("cpu"),
        DistributedContext(),
        checkpoint_extra=dict,
    )


def test_the_loop_validates_before_training_and_ends_on_the_best_weights(tmp_path):
    # evaluations: before training, then after epochs 1..; best after epoch 1 (0.9)
    trainer = _trainer(tmp_path, [0.1, 0.9, 0.5, 0.4, 0.3, 0.2], epochs=10)
    metrics = trainer.fit()
    objective = trainer.objective
    assert objective.weights_seen[0] == 0.0  # the first evaluation saw the untrained weights
    # patience 2, rounds 2: epochs 2, 3 bad → restore (round 1); epochs 4, 5 bad → stop
    assert objective.evaluations == 6 and trainer.step == 5 * 3
    assert trainer.model.weight.item() == pytest.approx(objective.weights_seen[1])
    assert metrics["best/val/correlation"] == 0.9
    # the plateau scheduler was stepped with the metric: lr halved after 2 bad evaluations
    assert trainer.optimizer.param_groups[0]["lr"] < 0.1
    assert (tmp_path / "last.pt").exists()


def test_a_stopped_run_resumes_as_stopped(tmp_path):
    trainer = _trainer(tmp_path, [0.1, 0.9, 0.5, 0.4, 0.3, 0.2], epochs=10)
    metrics = trainer.fit()
    logged = (tmp_path / "metrics.jsonl").read_text()
    again = _trainer(tmp_path, [0.0], epochs=10)
    again.resume_if_possible()
    assert again.fit()["best/val/correlation"] == metrics["best/val/correlation"]
    assert again.objective.evaluations == 0 and again.step == trainer.step
    assert (tmp_path / "metrics.jsonl").read_text() == logged  # nothing logged twice
    assert again.model.weight.item() == pytest.approx(trainer.model.weight.item())


def test_plateau_scheduler_without_a_metric_is_refused(tmp_path):
    model = _model(0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    settings = TrainerSettings(progress=False, tune_allocator=False)
    with pytest.raises(TopoError, match="trainer.early_stopping"):
        Trainer(
            settings,
            model,
            _Objective([0.0]),
            _Data(),
            optimizer,
            scheduler,
            NullTracker(),
            tmp_path,
            torch.device("cpu"),
            DistributedContext(),
            checkpoint_extra=dict,
        )


def test_max_steps_and_max_epochs_are_exclusive():
    with pytest.raises(TopoError, match="max_epochs"):
        TrainerSettings(max_steps=10, max_epochs=2)
    with pytest.raises(TopoError, match="max_epochs"):
        TrainerSettings(max_steps=None, max_epochs=None)
