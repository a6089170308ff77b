"""experiment=retina_fit: LBFGS through the shared loop recovers planted LN cells, resumably."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from topo_models import TopoError
from topo_models.retina import LN, LNCascade, cell_ln, memory_frames
from topo_models.retina.fit_metrics import cell_correlations, poisson_nll
from topo_train.objectives.retina import RetinaPoissonObjective
from topo_train.optimisers import parameter_groups
from topo_train.train import train
from topo_train.trainer import Trainer

SIMULATION = [
    "+data.simulation.frames=3000",
    "+data.simulation.height=6",
    "+data.simulation.width=6",
    "+data.simulation.cells=2",
    "+data.simulation.kernel_frames=6",
]


def _overrides(tmp_path, run="run", steps=8):
    return [
        "experiment=retina_fit",
        f"run_dir={tmp_path / run}",
        f"data.root={tmp_path / 'cache'}",
        "model.frames=6",
        "data.history=5",
        "data.window=100",
        f"trainer.max_steps={steps}",
        "trainer.val_every=2",
        "trainer.checkpoint_every=2",
        "trainer.progress=false",
        "tracking=none",
        *SIMULATION,
    ]


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_lbfgs_fit_recovers_the_planted_kernels(tmp_path, compose_train):
    cfg = compose_train(_overrides(tmp_path))
    data = instantiate(cfg.data)
    untrained = cell_ln(frames=6, height=6, width=6, cells=2, separable=True, seed=0)
    before = RetinaPoissonObjective(5).evaluate(untrained, data, torch.device("cpu"))
    metrics = train(cfg)
    assert metrics["val/kernel_correlation"] > 0.85 > before["val/kernel_correlation"] + 0.5
    assert metrics["val/poisson"] < before["val/poisson"]
    losses = [m["loss/poisson"] for m in _metrics(tmp_path / "run") if "loss/poisson" in m]
    assert len(losses) == 8
    # the strong-Wolfe line search never accepts a step that raises the loss
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:], strict=False))
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["model_config"]["cells"] == 2 and saved["model_config"]["height"] == 6


def test_a_killed_lbfgs_fit_resumes_to_the_same_weights(tmp_path, compose_train, monkeypatch):
    logging = ["trainer.log_every=3"]  # a log window spans the checkpoint at step 4
    train(compose_train(_overrides(tmp_path, "straight", steps=6) + logging))
    original = Trainer._closure_step

    def dies_at_step_five(self, batch):
        if self.step == 4:
            raise KeyboardInterrupt("killed")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_closure_step", dies_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train(_overrides(tmp_path, "killed", steps=6) + logging))
    monkeypatch.setattr(Trainer, "_closure_step", original)
    train(compose_train(_overrides(tmp_path, "killed", steps=6) + logging))  # resumes at 4
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "killed")


def test_adam_fits_through_the_same_objective_with_minibatches(tmp_path, compose_train):
    overrides = _overrides(tmp_path, steps=60) + [
        "optim=adam",
        "optim.lr=0.05",
        "data.batch_size=4",
        "trainer.val_every=60",
        "trainer.checkpoint_every=60",
    ]
    metrics = train(compose_train(overrides))
    assert metrics["val/kernel_correlation"] > 0.6


def test_objective_formulas_and_scored_frames():
    rates = torch.tensor([[0.5, 2.0], [1.0, 0.1]])
    counts = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    expected = np.mean(rates.numpy() - counts.numpy() * np.log(rates.numpy() + 1e-8))
    assert float(poisson_nll(rates, counts, 1e-8)) == pytest.approx(expected, rel=1e-6)
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(0))
    y = x + torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    reference = [np.corrcoef(x[i].numpy(), y[i].numpy())[0, 1] for i in range(3)]
    np.testing.assert_allclose(cell_correlations(x, y).numpy(), reference, rtol=1e-10)
    assert float(cell_correlations(torch.ones(1, 5), x[:1, :5])) == 0.0
    # the scored frames are those after the history, of a movie restarted per window
    model = LN((3, 2, 2), init="ones", out_channels=1)
    video = torch.rand(2, 1, 10, 2, 2)
    objective = RetinaPoissonObjective(history=4)
    model(torch.rand(2, 1, 5, 2, 2))  # carried state must not leak into the rates
    expected_rates = LN((3, 2, 2), init="ones", out_channels=1)(video)[:, :, 4:, 0, 0]
    torch.testing.assert_close(objective.rates(model, video), expected_rates)


def test_the_objective_refuses_too_short_a_history_and_wrong_cells():
    with pytest.raises(TopoError, match="data.history"):
        RetinaPoissonObjective(history=3).check_model(LNCascade(((3, 2, 2), (3, 1, 1))))
    RetinaPoissonObjective(history=4).check_model(LNCascade(((3, 2, 2), (3, 1, 1))))
    batch = type("B", (), {"video": torch.rand(1, 1, 8, 2, 2), "responses": torch.zeros(1, 3, 6)})
    with pytest.raises(TopoError, match="cells"):
        RetinaPoissonObjective(history=2)(LN((3, 2, 2)), batch)
    assert memory_frames(LN((7, 2, 2))) == 7
    with pytest.raises(TopoError, match="height"):
        cell_ln(width=3, cells=1)


def test_parameter_groups_give_lbfgs_its_single_group():
    plain = torch.nn.Linear(3, 2)
    assert len(parameter_groups(plain, weight_decay_on_norm=False)) == 1
    normed = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    groups = parameter_groups(normed, weight_decay_on_norm=False)
    assert [len(g["params"]) for g in groups] == [2, 2] and groups[1]["weight_decay"] == 0.0
