"""``run_predictive`` writes the tables, figures and submission files of a scored model."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.topo_eval.predictive_fakes import Model, planted_session
from tests.topo_eval.test_predictive_report import numpy_scores
from topo_eval.predictive.submission import read_submission
from topo_eval.predictive.task import run_predictive
from topo_models import TopoError


def test_run_predictive_with_stand_in_loaders_and_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    test = planted_session(rng, data_key="m1", tier="test")
    final = planted_session(rng, data_key="m1", tier="final_test", neurons=12)
    rf = {"m1": rng.uniform(-1, 1, size=(12, 2))}
    seen = {}

    def static_loaders(paths, batch_size, scale=None):
        seen.update(paths=paths, batch_size=batch_size, scale=scale)
        return {"test": {"m1": test.loader}, "final_test": {"m1": final.loader}}

    def load_checkpoint(path, map_location="cpu"):
        seen["checkpoint"] = path
        return Model(rf)

    monkeypatch.setitem(
        sys.modules, "topo_data.sensorium", types.SimpleNamespace(static_loaders=static_loaders)
    )
    monkeypatch.setitem(
        sys.modules,
        "topo_models.predictive",
        types.SimpleNamespace(load_checkpoint=load_checkpoint),
    )
    cfg = OmegaConf.create(
        {"checkpoint": "model.pt", "data": {"paths": ["a.zip"], "batch_size": 8, "scale": 0.25}}
    )
    out = tmp_path / "eval"
    sessions_path = run_predictive(cfg, out)

    assert seen == {"paths": ["a.zip"], "batch_size": 8, "scale": 0.25, "checkpoint": "model.pt"}
    assert sessions_path == out / "sessions.csv"
    sessions = pd.read_csv(sessions_path)
    direct = numpy_scores(test.responses, test.predictions, test.image_ids)
    assert list(sessions.data_key) == ["m1", "all"]
    assert sessions.correlation.iloc[0] == pytest.approx(direct["correlation"].mean(), abs=1e-5)
    assert sessions.feve.iloc[0] == pytest.approx(np.nanmean(direct["feve"]), abs=1e-5)
    neurons = pd.read_csv(out / "neurons.csv")
    np.testing.assert_allclose(neurons[["rf_x", "rf_y"]], rf["m1"])
    assert {p.name for p in (out / "figures").iterdir()} == {
        "rf_positions_m1.png",
        "correlation.png",
    }
    live = read_submission(out / "submissions" / "m1" / "submission_file_live_test.csv")
    np.testing.assert_array_equal(np.sort(live.trial_ids), np.sort(test.trial_ids))
    held_out = read_submission(out / "submissions" / "m1" / "submission_file_final_test.csv")
    np.testing.assert_allclose(held_out.predictions, final.predictions[final.order], atol=1e-5)


def test_run_predictive_needs_data_paths(tmp_path):
    with pytest.raises(TopoError, match="needs the data"):
        run_predictive(OmegaConf.create({"checkpoint": "m.pt", "data": None}), tmp_path)


@pytest.mark.slow
def test_run_predictive_on_a_simulated_session_through_the_real_loaders(tmp_path):
    """A simulated session, the real loaders and an (untrained) baseline CNN saved as a state
    dict: the written tables equal the metrics of the model run directly on the test tier."""
    import torch

    from topo_data.sensorium import simulate, static_loaders
    from topo_eval.predictive.submission import ground_truth, score_submission
    from topo_models.predictive import sensorium_cnn

    path = simulate(
        tmp_path / "data",
        n_neurons=20,
        n_train=8,
        n_validation=4,
        n_test_images=5,
        repeats=4,
        n_final_test_images=3,
        image_size=(36, 64),
        seed=1,
        zip=False,
    )
    data = {"paths": [str(path)], "batch_size": 7, "cache_dir": str(tmp_path / "cache")}
    test = static_loaders(**data, tier="test")["test"]
    (key,) = test
    dataset = test[key].dataset
    model = sensorium_cnn(
        {key: dataset.n_neurons}, {key: dataset.neurons.cell_motor_coordinates}, seed=0
    )
    with torch.no_grad():  # untrained rates vary by ~1e-5, where the metrics' eps matters
        model.readout[key]._features.mul_(1e4)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    cfg = OmegaConf.create({"checkpoint": str(tmp_path / "model.pt"), "data": data})
    out = tmp_path / "eval"
    run_predictive(cfg, out)

    batch = dataset[np.arange(len(dataset))]  # the whole tier in dataset order
    with torch.no_grad():
        predicted = model.eval()(batch.images, data_key=key).double().numpy()
    responses = batch.responses.double().numpy()
    direct = numpy_scores(responses, predicted, np.asarray(dataset.frame_image_id))
    neurons = pd.read_csv(out / "neurons.csv", dtype={"data_key": str})
    for column, values in direct.items():
        np.testing.assert_allclose(neurons[column], values, atol=1e-5, err_msg=column)
    np.testing.assert_allclose(
        neurons[["rf_x", "rf_y"]], model.readout.positions(key).detach().numpy(), atol=1e-6
    )
    assert (neurons.n_trials == 20).all()
    sessions = pd.read_csv(out / "sessions.csv", dtype={"data_key": str})
    assert sessions.n_kept.iloc[0] > 0  # simulated neurons with explainable variance
    truth = ground_truth(test[key])
    file_index = batch.trial_id.numpy()
    # the competition's trial_indices are meta/trials/trial_idx (chronological in the simulator)
    np.testing.assert_array_equal(truth[1], dataset.session.trials["trial_idx"][file_index])
    assert not np.array_equal(truth[1], file_index)
    scores = score_submission(out / "submissions" / key / "submission_file_live_test.csv", *truth)
    assert scores["single_trial_correlation"] == pytest.approx(sessions.correlation.iloc[0])
    assert scores["correlation_to_average"] == pytest.approx(
        sessions.correlation_to_average.iloc[0]
    )
    assert scores["feve"] == pytest.approx(sessions.feve.iloc[0])
    final = read_submission(out / "submissions" / key / "submission_file_final_test.csv")
    assert final.predictions.shape == (12, 20)
    assert {p.name for p in (out / "figures").iterdir()} == {
        f"rf_positions_{key}.png",
        "correlation.png",
        f"rf_recovery_{key}.png",  # the session carries the simulator's truth
        f"oracle_{key}.png",
    }
    # the training data group (SensoriumData) selects the same trials and neurons
    group = {
        "_target_": "topo_data.sensorium.data_module.SensoriumData",
        "paths": [str(path)],
        "batch_size": 5,
        "scale": 1.0,
        "cache_dir": str(tmp_path / "cache"),
    }
    again = tmp_path / "again"
    run_predictive(OmegaConf.create({"checkpoint": cfg.checkpoint, "data": group}), again)
    pd.testing.assert_frame_equal(
        pd.read_csv(again / "neurons.csv", dtype={"data_key": str}), neurons, atol=1e-6
    )
    assert (again / "submissions" / key / "submission_file_final_test.csv").is_file()


def test_the_task_returns_the_pooled_scores_of_the_tier_as_its_headline(tmp_path, monkeypatch):
    from topo_eval.predictive import task

    def fake_run(cfg, output_dir):
        output_dir.mkdir(parents=True)
        path = output_dir / "sessions.csv"
        pd.DataFrame(
            {
                "data_key": ["m1", "m2", "all"],
                "correlation": [0.1, 0.3, 0.2],
                "correlation_to_average": [0.4, 0.6, 0.5],
                "feve": [0.7, 0.9, 0.8],
            }
        ).to_csv(path, index=False)
        return path

    monkeypatch.setattr(task, "run_predictive", fake_run)
    monkeypatch.setattr(task, "with_training_data", lambda cfg: cfg)
    cfg = OmegaConf.create({"checkpoint": "m.pt", "data": {"paths": []}, "tier": "validation"})
    path, metrics = task.predictive_task(cfg, tmp_path / "out")
    assert path == tmp_path / "out" / "sessions.csv"
    assert metrics == {
        "validation/correlation": 0.2,
        "validation/correlation_to_average": 0.5,
        "validation/feve": 0.8,
    }
