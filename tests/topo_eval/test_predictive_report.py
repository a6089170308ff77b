"""Predictive-model report: predictions, per-neuron and per-session tables, against numpy
computations on planted data (tests/topo_eval/predictive_fakes.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.topo_eval.predictive_fakes import Model, planted_session
from topo_eval.predictive.report import (
    NEURON_COLUMNS,
    model_predictions,
    neuron_table,
    session_table,
    write_tables,
)
from topo_models import TopoError


def numpy_scores(y: np.ndarray, p: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The competition's definitions, written out with loops and np.corrcoef."""
    n = y.shape[1]
    images = np.unique(ids)
    mean_y = np.stack([y[ids == i].mean(0) for i in images])
    mean_p = np.stack([p[ids == i].mean(0) for i in images])
    total = np.array([np.var(y[:, j], ddof=1) for j in range(n)])
    noise = np.array([np.mean([np.var(y[ids == i, j], ddof=1) for i in images]) for j in range(n)])
    mse = np.array([np.mean((y[:, j] - p[:, j]) ** 2) for j in range(n)])
    fev = (total - noise) / total
    return {
        "correlation": np.array([np.corrcoef(y[:, j], p[:, j])[0, 1] for j in range(n)]),
        "correlation_to_average": np.array(
            [np.corrcoef(mean_y[:, j], mean_p[:, j])[0, 1] for j in range(n)]
        ),
        "fev": fev,
        "feve": np.where(fev >= 0.15, 1 - (mse - noise) / (total - noise), np.nan),
    }


def test_model_predictions_follow_the_loader_and_restore_modes():
    rng = np.random.default_rng(0)
    session = planted_session(rng)
    model = Model()
    model.train()
    model.frozen.eval()  # a submodule kept in eval mode (e.g. a frozen core) stays so
    targets, predictions, trial_ids, image_ids = model_predictions(
        model, session.loader, "21067-10-18"
    )
    order = session.order
    np.testing.assert_array_equal(trial_ids, session.trial_ids[order])
    np.testing.assert_array_equal(image_ids, session.image_ids[order])
    np.testing.assert_allclose(targets, session.responses[order], atol=1e-6)
    np.testing.assert_allclose(predictions, session.predictions[order], atol=1e-5)
    assert model.training and not model.frozen.training
    assert all(not c["training"] and not c["grad"] for c in model.calls)
    assert {c["data_key"] for c in model.calls} == {"21067-10-18"}
    for call, batch in zip(model.calls, session.loader.batches, strict=True):
        assert call["pupil_center"] is not None and call["behavior"] is not None
        np.testing.assert_array_equal(call["pupil_center"].numpy(), batch.pupil_center.numpy())
        np.testing.assert_array_equal(call["behavior"].numpy(), batch.behavior.numpy())


def test_model_predictions_restore_modes_after_an_error():
    rng = np.random.default_rng(1)
    session = planted_session(rng)
    model = Model().train()
    session.loader.batches[1] = session.loader.batches[1]._replace(pupil_center=None)
    with pytest.raises(TypeError):
        model_predictions(model, session.loader, "k")
    assert model.training and model.frozen.training


def test_unknown_trial_ids_are_reported():
    rng = np.random.default_rng(2)
    session = planted_session(rng)
    session.loader.dataset.trial_ids = session.trial_ids + 1
    with pytest.raises(TopoError, match="trial id the dataset does not list"):
        model_predictions(Model(), session.loader, "k")


def test_neuron_table_matches_numpy_on_planted_data():
    rng = np.random.default_rng(3)
    keys = ("21067-10-18", "23964-4-22")
    sessions = {
        key: planted_session(rng, data_key=key, neurons=10 + 3 * i) for i, key in enumerate(keys)
    }
    rf = {key: rng.uniform(-1, 1, size=(s.responses.shape[1], 2)) for key, s in sessions.items()}
    table = neuron_table(Model(rf), {"test": {k: s.loader for k, s in sessions.items()}})
    assert list(table.columns) == list(NEURON_COLUMNS)
    for key, session in sessions.items():
        rows = table[table.data_key == key]
        n = session.responses.shape[1]
        assert len(rows) == n and (rows.tier == "test").all()
        expected = numpy_scores(session.responses, session.predictions, session.image_ids)
        for column, values in expected.items():
            np.testing.assert_allclose(rows[column], values, atol=1e-5, err_msg=column)
        meta = session.loader.dataset.neurons
        np.testing.assert_array_equal(rows.unit_id, meta.unit_ids)
        np.testing.assert_allclose(rows.cortex_x_um, meta.cell_motor_coordinates[:, 0])
        np.testing.assert_allclose(rows.cortex_y_um, meta.cell_motor_coordinates[:, 1])
        np.testing.assert_allclose(rows[["rf_x", "rf_y"]], rf[key])
        assert (rows.n_trials == len(session.trial_ids)).all()
        # planted: neuron 0 is pure noise, so below the FEV threshold and without FEVE
        assert rows.fev.iloc[0] < 0.15 and np.isnan(rows.feve.iloc[0])
        assert (rows.fev.iloc[1:] > 0.5).all() and np.isfinite(rows.feve.iloc[1:]).all()
        # signal variance 1, prediction noise 0.4²: FEVE ≈ 1 − 0.16
        assert rows.feve.iloc[1:].mean() == pytest.approx(0.84, abs=0.1)


def test_tiers_without_repeats_have_nan_repeat_scores_and_no_readout_gives_nan_rf():
    rng = np.random.default_rng(4)
    session = planted_session(rng, tier="validation", images=80, repeats=1)
    table = neuron_table(Model(), {"validation": {"k": session.loader}}, tier="validation")
    expected = [
        np.corrcoef(session.responses[:, j], session.predictions[:, j])[0, 1]
        for j in range(session.responses.shape[1])
    ]
    np.testing.assert_allclose(table.correlation, expected, atol=1e-5)
    for column in ("correlation_to_average", "fev", "feve", "rf_x", "rf_y"):
        assert table[column].isna().all(), column
    with pytest.raises(TopoError, match="no loaders for the tier"):
        neuron_table(Model(), {"validation": {"k": session.loader}}, tier="test")


def test_session_table_means_the_neuron_columns_and_pools_every_neuron():
    rng = np.random.default_rng(5)
    sessions = [planted_session(rng, data_key=f"m{i}", neurons=8 + 4 * i) for i in range(2)]
    neurons = neuron_table(
        Model(), {"test": {s.loader.dataset.data_key: s.loader for s in sessions}}
    )
    table = session_table(neurons)
    assert list(table.data_key) == ["m0", "m1", "all"]
    for (_, row), rows in zip(
        table.iterrows(),
        [neurons[neurons.data_key == "m0"], neurons[neurons.data_key == "m1"], neurons],
        strict=True,
    ):
        kept = rows.fev.to_numpy() >= 0.15
        assert row.n_neurons == len(rows) and row.n_kept == kept.sum()
        assert row.correlation == pytest.approx(np.mean(rows.correlation.to_numpy()))
        assert row.correlation_to_average == pytest.approx(
            np.mean(rows.correlation_to_average.to_numpy())
        )
        assert row.feve == pytest.approx(np.mean(rows.feve.to_numpy()[kept]))
    assert table.n_trials.iloc[-1] == sum(len(s.trial_ids) for s in sessions)


def test_tables_are_written_as_csv(tmp_path):
    rng = np.random.default_rng(6)
    session = planted_session(rng)
    neurons = neuron_table(Model(), {"test": {"k": session.loader}})
    sessions = session_table(neurons)
    neuron_path, session_path = write_tables(neurons, sessions, tmp_path / "out")
    pd.testing.assert_frame_equal(
        pd.read_csv(neuron_path, dtype={"data_key": str}), neurons, check_dtype=False
    )
    pd.testing.assert_frame_equal(pd.read_csv(session_path), sessions, check_dtype=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["neurons.csv", "sessions.csv"]
