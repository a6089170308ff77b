"""MLflow tracking: position files stored once per distinct set, a resumed run logs no
(metric, step) twice, runs end KILLED on Ctrl-C."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np

from topo_train.tracking import POSITIONS_HASH_TAG, POSITIONS_POINTER, MLflowTracker


def positions_dir(path, seed: int):
    path.mkdir(parents=True)
    for layer in ("layer1.0", "layer2.0"):
        coordinates = np.random.default_rng(seed).random((50, 2))
        np.savez(path / f"{layer}.npz", coordinates=coordinates)
    return path


def stored_npz(uri: str) -> list:
    """The positions files stored beside the SQLite database ``uri`` (``mlartifacts/``)."""
    return sorted((Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").rglob("*.npz"))


def test_two_runs_with_the_same_positions_store_the_files_once(tmp_path, isolated_tracking):
    same_a = positions_dir(tmp_path / "a" / "positions", seed=0)
    same_b = positions_dir(tmp_path / "b" / "positions", seed=0)
    other = positions_dir(tmp_path / "c" / "positions", seed=1)
    trackers = []
    for path in (same_a, same_b, other):
        tracker = MLflowTracker(isolated_tracking)
        tracker.start({"seed": 0}, run_name=path.parent.name, run_id=None)
        tracker.log_positions(path)
        tracker.end()
        trackers.append(tracker)
    first, second, third = (t.run_id for t in trackers)
    assert len(stored_npz(isolated_tracking)) == 4  # two layers of a (= b) and two of c
    client = mlflow.MlflowClient(isolated_tracking)
    assert {a.path for a in client.list_artifacts(second)} == {"config.yaml", POSITIONS_POINTER}
    local = client.download_artifacts(second, POSITIONS_POINTER, str(tmp_path / "download"))
    record = json.loads(Path(local).read_text())
    assert record["run_id"] == first and record["artifact_path"] == "positions"
    assert record["sha256"] == client.get_run(first).data.tags[POSITIONS_HASH_TAG]
    assert {a.path for a in client.list_artifacts(first, "positions")} == {
        "positions/layer1.0.npz",
        "positions/layer2.0.npz",
    }
    assert POSITIONS_HASH_TAG in client.get_run(third).data.tags
    # a finished run run again logs nothing new
    again = MLflowTracker(isolated_tracking)
    again.start({"seed": 0}, run_name="a", run_id=first)
    again.log_positions(same_a)
    again.end()
    assert len(stored_npz(isolated_tracking)) == 4
    assert POSITIONS_POINTER not in {a.path for a in client.list_artifacts(first)}


def test_a_continued_run_logs_no_metric_step_twice_and_a_killed_one_says_so(isolated_tracking):
    tracker = MLflowTracker(isolated_tracking)
    run_id = tracker.start({"seed": 0}, run_name="r", run_id=None)
    for step in (1, 2):
        tracker.log_metrics({"loss/total": float(step)}, step)
    tracker.end("KILLED")
    client = mlflow.MlflowClient(isolated_tracking)
    assert client.get_run(run_id).info.status == "KILLED"
    resumed = MLflowTracker(isolated_tracking)
    assert resumed.start({"seed": 0}, run_name="r", run_id=run_id) == run_id
    for step in (1, 2, 3):  # the resumed run logs steps 1 and 2 again, identically
        resumed.log_metrics({"loss/total": float(step), "val/x": 0.5}, step)
    resumed.end()
    history = client.get_metric_history(run_id, "loss/total")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert sorted(m.step for m in client.get_metric_history(run_id, "val/x")) == [1, 2, 3]
    assert client.get_run(run_id).info.status == "FINISHED"
