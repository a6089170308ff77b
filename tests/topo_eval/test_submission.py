"""Sensorium submission files: the competition's format, a lossless round trip, and scores
equal to the metrics computed directly."""

from __future__ import annotations

import ast
import csv
import types

import numpy as np
import pytest

from tests.topo_eval.predictive_fakes import Model, planted_session
from tests.topo_eval.test_predictive_report import numpy_scores
from topo_eval.predictive.submission import (
    Submission,
    ground_truth,
    read_submission,
    score_submission,
    submission_file_name,
    write_submission,
)
from topo_models import TopoError


def test_file_names_follow_the_competition():
    assert submission_file_name("test") == "submission_file_live_test.csv"
    assert submission_file_name("final_test") == "submission_file_final_test.csv"


def test_written_file_has_the_competition_columns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    session = planted_session(rng, tier="final_test")
    path = write_submission(Model(), session.loader, tmp_path / "sub", "k", "final_test")
    assert path == tmp_path / "sub" / "submission_file_final_test.csv"
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["trial_indices", "image_ids", "prediction", "neuron_ids"]
    assert len(rows) == 1 + len(session.trial_ids)
    order, unit_ids = session.order, session.loader.dataset.neurons.unit_ids
    first = rows[1]  # what the competition's reader (ast.literal_eval per row) sees
    assert int(first[0]) == session.trial_ids[order[0]]
    assert int(first[1]) == session.image_ids[order[0]]
    np.testing.assert_allclose(ast.literal_eval(first[2]), session.predictions[order[0]], atol=1e-5)
    assert ast.literal_eval(first[3]) == unit_ids.tolist()

    read = read_submission(path)
    np.testing.assert_array_equal(read.trial_ids, session.trial_ids[order])
    np.testing.assert_array_equal(read.image_ids, session.image_ids[order])
    np.testing.assert_array_equal(read.neuron_ids, unit_ids)
    np.testing.assert_allclose(read.predictions, session.predictions[order], atol=1e-5)
    exact = np.array([ast.literal_eval(row[2]) for row in rows[1:]])
    np.testing.assert_array_equal(read.predictions, exact)  # no precision lost in parsing


def test_score_of_a_submission_equals_the_direct_metrics(tmp_path):
    rng = np.random.default_rng(1)
    session = planted_session(rng, neurons=15)
    path = write_submission(Model(), session.loader, tmp_path, "k", "test")
    # ground truth in another trial and neuron order: the scorer sorts both sides
    trials = rng.permutation(len(session.trial_ids))
    columns = rng.permutation(session.responses.shape[1])
    unit_ids = session.loader.dataset.neurons.unit_ids
    scores = score_submission(
        path,
        session.responses[trials][:, columns],
        session.trial_ids[trials],
        session.image_ids[trials],
        unit_ids[columns],
    )
    direct = numpy_scores(session.responses, session.predictions, session.image_ids)
    kept = direct["fev"] >= 0.15
    assert 0 < kept.sum() < len(kept)  # neuron 0 is planted pure noise
    assert scores["single_trial_correlation"] == pytest.approx(
        direct["correlation"].mean(), abs=1e-5
    )
    assert scores["correlation_to_average"] == pytest.approx(
        direct["correlation_to_average"].mean(), abs=1e-5
    )
    assert scores["feve"] == pytest.approx(direct["feve"][kept].mean(), abs=1e-5)


def _truth(session):
    return (
        session.responses,
        session.trial_ids,
        session.image_ids,
        session.loader.dataset.neurons.unit_ids,
    )


def test_mismatching_ids_are_clear_errors(tmp_path):
    rng = np.random.default_rng(2)
    session = planted_session(rng)
    read = read_submission(write_submission(Model(), session.loader, tmp_path, "k", "test"))
    responses, trial_ids, image_ids, unit_ids = _truth(session)
    wrong_trials = Submission(read.trial_ids + 1, read.image_ids, read.neuron_ids, read.predictions)
    with pytest.raises(TopoError, match="trial_indices do not match the ground truth"):
        score_submission(wrong_trials, responses, trial_ids, image_ids, unit_ids)
    fewer = Submission(
        read.trial_ids[1:], read.image_ids[1:], read.neuron_ids, read.predictions[1:]
    )
    with pytest.raises(TopoError, match="trial_indices do not match"):
        score_submission(fewer, responses, trial_ids, image_ids, unit_ids)
    wrong_neurons = Submission(
        read.trial_ids, read.image_ids, read.neuron_ids + 1, read.predictions
    )
    with pytest.raises(TopoError, match="neuron_ids do not match"):
        score_submission(wrong_neurons, responses, trial_ids, image_ids, unit_ids)
    repeated = read.trial_ids.copy()
    repeated[1] = repeated[0]
    with pytest.raises(TopoError, match="ids repeat"):
        score_submission(
            Submission(repeated, read.image_ids, read.neuron_ids, read.predictions),
            responses,
            trial_ids,
            image_ids,
            unit_ids,
        )


def test_unreadable_files_and_wrong_tiers_are_reported(tmp_path):
    rng = np.random.default_rng(3)
    session = planted_session(rng)
    with pytest.raises(TopoError, match="another tier"):
        write_submission(Model(), session.loader, tmp_path, "k", "final_test")
    with pytest.raises(TopoError, match="no such submission file"):
        read_submission(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text('trial_indices,image_ids,prediction,neuron_ids\n1,2,"[0.5, nan]","[3, 4]"\n')
    with pytest.raises(TopoError, match="cannot be parsed"):
        read_submission(bad)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(TopoError, match="not a submission file"):
        read_submission(other)


def test_hashed_competition_trial_indices_are_written_and_scored(tmp_path):
    """The competition mice hash ``meta/trials/trial_idx`` into strings; the file carries them."""
    rng = np.random.default_rng(4)
    session = planted_session(rng)
    n_file = session.trial_ids.max() + 1
    hashed = np.array([f"h{rng.integers(1 << 40):x}-{i}" for i in range(n_file)])
    session.loader.dataset.session = types.SimpleNamespace(trials={"trial_idx": hashed})
    path = write_submission(Model(), session.loader, tmp_path, "k", "test")
    read = read_submission(path)
    np.testing.assert_array_equal(read.trial_ids, hashed[session.trial_ids[session.order]])
    responses, trial_indices, image_ids, unit_ids = ground_truth(session.loader)
    np.testing.assert_array_equal(trial_indices, read.trial_ids)
    np.testing.assert_allclose(responses, session.responses[session.order], atol=1e-6)
    np.testing.assert_array_equal(image_ids, session.image_ids[session.order])
    scores = score_submission(path, responses, trial_indices, image_ids, unit_ids)
    direct = numpy_scores(session.responses, session.predictions, session.image_ids)
    assert scores["single_trial_correlation"] == pytest.approx(
        direct["correlation"].mean(), abs=1e-5
    )
    with pytest.raises(TopoError, match="trial_indices do not match"):
        score_submission(path, responses, session.trial_ids[session.order], image_ids, unit_ids)
