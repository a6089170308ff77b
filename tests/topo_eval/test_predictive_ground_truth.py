"""Scores against the simulator's truth: a tiny simulated mouse whose truth the report must
recover (an oracle "model" that returns the true rates, RF centres and eye shifts scores the
ceiling exactly; a shuffled one scores lower), and FEVE on repeats whose behaviour varies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from topo_eval.predictive import feve, feve_given_rates
from topo_eval.predictive.metrics import explainable_variance, explainable_variance_given_rates
from topo_eval.predictive.report import neuron_table, session_table


def test_feve_given_rates_counts_behaviour_between_repeats_as_signal():
    """Responses = image drive × a behaviour gain that differs between repeats + Gaussian noise
    of known variance: the true-noise FEV recovers that variance, the competition's FEV counts
    the gain as noise, so the true rates score FEVE 1 with the true noise and above 1 with the
    competition's."""
    rng = np.random.default_rng(0)
    images, repeats, neurons, noise_sd = 60, 10, 30, 0.5
    drive = rng.uniform(1.0, 3.0, (images, neurons))
    gain = np.exp(rng.normal(0.0, 0.4, (images * repeats, 1)))  # behaviour, per trial
    image_ids = np.repeat(np.arange(images), repeats)
    rates = drive[image_ids] * gain
    responses = rates + rng.normal(0.0, noise_sd, rates.shape)

    noise_true = explainable_variance_given_rates(responses, rates)[2]
    noise_repeats = explainable_variance(responses, image_ids)[2]
    assert noise_true.mean() == pytest.approx(noise_sd**2, rel=0.05)
    assert noise_repeats.mean() > 2 * noise_true.mean()  # the gain counted as noise

    np.testing.assert_allclose(feve_given_rates(responses, rates, rates), 1.0)
    assert np.nanmean(feve(responses, rates, image_ids)) > 1.2  # competition's: inflated
    # a model of the image alone (behaviour ignored) explains less than all
    image_only = drive[image_ids] * gain.mean()
    assert np.nanmean(feve_given_rates(responses, image_only, rates)) < 0.9


@pytest.fixture(scope="module")
def tiny_mouse(tmp_path_factory):
    """A simulated session (20 neurons, 36×64 images, 5 test images × 4 repeats) and its test
    tier through the real loaders with behaviour and pupil centre."""
    from topo_data.sensorium import simulate, static_loaders

    root = tmp_path_factory.mktemp("mouse")
    path = simulate(
        root / "data",
        n_neurons=20,
        n_train=8,
        n_validation=4,
        n_test_images=5,
        repeats=4,
        image_size=(36, 64),
        seed=3,
        zip=False,
    )
    data = {
        "paths": [str(path)],
        "batch_size": 7,
        "scale": 1.0,
        "include_behavior": True,
        "include_eye_position": True,
        "cache_dir": str(root / "cache"),
    }
    loaders = static_loaders(**data, tier="test")
    return path, data, loaders


class _Table(nn.Module):
    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.table = table

    def positions(self, data_key: str) -> torch.Tensor:
        return self.table[data_key]


class Oracle(nn.Module):
    """Returns the simulator's truth: each trial's true rates (found by its pupil centre,
    unique per trial) in standardised units, the true RF centres as readout positions and the
    true eye shift from the shifter. ``shuffle`` permutes neurons and RFs (a wrong model)."""

    def __init__(self, loaders, shuffle: bool = False) -> None:
        from topo_data.sensorium.simulate import load_ground_truth

        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.rows, positions = {}, {}
        perm = np.random.default_rng(0).permutation
        for key, loader in loaders.items():
            dataset = loader.dataset
            truth = load_ground_truth(dataset.session.source)
            batch = dataset[np.arange(len(dataset))]
            rates = dataset.normalizer.responses(truth["rates"])
            order = perm(rates.shape[1]) if shuffle else np.arange(rates.shape[1])
            for pupil, trial in zip(
                batch.pupil_center.numpy(), batch.trial_id.numpy(), strict=True
            ):
                self.rows[pupil.tobytes()] = (rates[trial][order], truth["shift_px"][trial])
            positions[key] = torch.as_tensor(truth["rf_center_grid"][order])
        self.readout = _Table(positions)
        self.shifter = {key: self.shift for key in loaders}

    def shift(self, pupil_center: torch.Tensor) -> torch.Tensor:
        rows = [self.rows[p.tobytes()][1] for p in pupil_center.numpy()]
        return torch.as_tensor(np.stack(rows))

    def forward(self, images, data_key=None, pupil_center=None, behavior=None):
        rows = [self.rows[p.tobytes()][0] for p in pupil_center.numpy()]
        return torch.as_tensor(np.stack(rows))


def test_a_model_returning_the_truth_scores_the_oracle_ceiling_and_recovers_every_map(tiny_mouse):
    _, _, loaders = tiny_mouse
    neurons = neuron_table(Oracle(loaders["test"]), loaders, "test")
    np.testing.assert_allclose(neurons.correlation, neurons.oracle_correlation, atol=1e-12)
    np.testing.assert_allclose(neurons.feve, neurons.oracle_feve, atol=1e-12)
    kept = neurons.fev_true_noise >= 0.15
    assert kept.sum() > 5
    np.testing.assert_allclose(neurons.feve_true_noise[kept], 1.0, atol=1e-12)
    np.testing.assert_allclose(neurons[["rf_x", "rf_y"]], neurons[["true_rf_x", "true_rf_y"]])

    pooled = session_table(neurons).iloc[-1]
    assert pooled.correlation_fraction_of_oracle == pytest.approx(1.0)
    assert pooled.feve_true_noise == pytest.approx(1.0)
    assert pooled.feve_competition == pooled.feve
    assert pooled.oracle_feve_competition > 1.0  # repeats differ in behaviour and eye position
    for axis in ("x", "y"):
        assert pooled[f"rf_r_{axis}"] == pytest.approx(1.0)
        assert pooled[f"shift_r_{axis}"] == pytest.approx(1.0)
        # the smooth map explains most, not all, of the true centres' variance
        assert 0.8 < pooled[f"rf_ceiling_r2_{axis}"] < 1.0
        assert pooled[f"rf_smooth_r_{axis}"] ** 2 == pytest.approx(pooled[f"rf_ceiling_r2_{axis}"])


def test_a_shuffled_model_scores_below_the_oracle(tiny_mouse):
    _, _, loaders = tiny_mouse
    pooled = session_table(neuron_table(Oracle(loaders["test"], shuffle=True), loaders)).iloc[-1]
    assert pooled.correlation < 0.5 * pooled.oracle_correlation
    assert pooled.correlation_fraction_of_oracle < 0.5
    assert pooled.feve_true_noise < 0.5
    assert abs(pooled.rf_r_x) < 0.6 and abs(pooled.rf_r_y) < 0.6
    assert pooled.shift_r_x == pytest.approx(1.0)  # the shift is a session-wide translation


def test_the_task_writes_truth_figures_and_reports_the_ceiling(tiny_mouse, tmp_path, monkeypatch):
    import topo_models.predictive
    from topo_eval.predictive import task

    _, data, loaders = tiny_mouse
    monkeypatch.setattr(
        topo_models.predictive,
        "load_checkpoint",
        lambda path, map_location: Oracle(loaders["test"]),
    )
    monkeypatch.setattr(task, "with_training_data", lambda cfg: cfg)
    cfg = OmegaConf.create({"checkpoint": "oracle.pt", "data": data, "submission_tiers": []})
    _, metrics = task.predictive_task(cfg, tmp_path / "eval")
    (key,) = loaders["test"]
    assert {p.name for p in (tmp_path / "eval" / "figures").iterdir()} == {
        f"rf_positions_{key}.png",
        "correlation.png",
        f"rf_recovery_{key}.png",
        f"oracle_{key}.png",
        f"shift_recovery_{key}.png",
    }
    assert metrics["test/correlation"] == pytest.approx(metrics["test/oracle_correlation"])
    assert metrics["test/feve_competition"] == metrics["test/feve"]
    for name in ("feve_true_noise", "correlation_fraction_of_oracle", "rf_r_x", "shift_r_y"):
        assert metrics[f"test/{name}"] == pytest.approx(1.0)
    sessions = pd.read_csv(tmp_path / "eval" / "sessions.csv", dtype={"data_key": str})
    assert sessions.rf_ceiling_r2_x.iloc[-1] == pytest.approx(metrics["test/rf_ceiling_r2_x"])


def test_sessions_without_truth_get_no_truth_columns():
    from tests.topo_eval.predictive_fakes import Model, planted_session

    session = planted_session(np.random.default_rng(0))
    neurons = neuron_table(Model(), {"test": {"21067-10-18": session.loader}})
    assert "oracle_correlation" not in neurons
    sessions = session_table(neurons)
    assert "oracle_correlation" not in sessions and "feve_competition" in sessions
