"""`dvc exp run` variants land in MLflow as a Hydra sweep's jobs do: one parent run per baseline
revision, one child per experiment with the composed config as params, in the repository's
store even when a queued experiment runs in a temporary copy. The environment is what DVC gives
a stage's command (dvc/repo/experiments/queue/base.py, dvc/stage/run.py); one real
`dvc exp run` is in tests/e2e/test_dvc.py."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from tests.conftest import tiny_overrides
from topo_train.dvc_experiments import BASELINE_TAG, tracking_uri
from topo_train.tracking import PARENT_RUN_ENV, MLflowTracker
from topo_train.train import train

BASELINE = "0123456789abcdef0123456789abcdef01234567"


def dvc_stage_env(monkeypatch: pytest.MonkeyPatch, root: Path, name: str, baseline: str) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", name)
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", baseline)
    monkeypatch.setenv("DVC_ROOT", str(root))
    monkeypatch.setenv("DVC_STAGE", "train")


def test_queued_experiments_are_children_of_one_parent_in_the_repositorys_store(
    tmp_path, monkeypatch, compose_train
):
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    for name, alpha in (("exp-a", 0.5), ("exp-b", 2.5)):
        copy = root / ".dvc" / "tmp" / "exps" / f"tmp-{name}"  # where DVC runs a queued one
        (copy / ".dvc").mkdir(parents=True)
        monkeypatch.chdir(copy)
        dvc_stage_env(monkeypatch, root, name, BASELINE)
        overrides = [*tiny_overrides(tmp_path, name), "trainer.max_steps=1", "trainer.val_every=0"]
        cfg = compose_train(
            [*overrides, f"loss.alpha={alpha}", "tracking.tracking_uri=sqlite:///mlflow.db"]
        )
        train(cfg)
        assert not (copy / "mlflow.db").exists()  # not in the copy DVC deletes afterwards
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    parents = [r for r in runs if r.data.tags.get("topo.sweep") == "parent"]
    assert len(parents) == 1 and parents[0].data.tags[BASELINE_TAG] == BASELINE
    assert parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["dvc.exp_name"] for r in children) == ["exp-a", "exp-b"]
    assert {r.data.tags["dvc.stage"] for r in children} == {"train"}
    params = {r.data.tags["dvc.exp_name"]: r.data.params for r in children}
    assert params["exp-a"]["loss.alpha"] == "0.5" and params["exp-b"]["loss.alpha"] == "2.5"
    assert params["exp-a"]["optim.lr"] == "0.1" and params["exp-a"]["trainer.max_steps"] == "1"
    assert len(runs) == 3


def test_another_baseline_gets_another_parent_and_a_hydra_sweep_keeps_its_own(
    tmp_path, monkeypatch
):
    store = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)

    def start(name: str) -> mlflow.entities.Run:
        tracker = MLflowTracker(store)
        tracker.start({"seed": 0}, run_name=name, run_id=None)
        tracker.end()
        return mlflow.MlflowClient(store).get_run(tracker.run_id)

    plain = start("plain")  # no DVC experiment (dvc repro, python -m topo_train)
    assert "mlflow.parentRunId" not in plain.data.tags and "dvc.exp_name" not in plain.data.tags
    dvc_stage_env(monkeypatch, tmp_path, "exp-a", BASELINE)
    first = start("a").data.tags["mlflow.parentRunId"]
    dvc_stage_env(monkeypatch, tmp_path, "exp-c", "f" * 40)
    other = start("c").data.tags["mlflow.parentRunId"]
    assert first != other
    monkeypatch.setenv(PARENT_RUN_ENV, plain.info.run_id)  # a Hydra sweep inside a stage
    inside = start("sweep job")
    assert inside.data.tags["mlflow.parentRunId"] == plain.info.run_id
    assert "dvc.exp_name" not in inside.data.tags


def test_only_a_relative_sqlite_store_inside_an_experiment_moves_to_the_repository(
    tmp_path, monkeypatch
):
    root = tmp_path / "repo"
    copy = root / ".dvc" / "tmp" / "exps" / "tmp1"
    (copy / ".dvc").mkdir(parents=True)
    (copy / "sub").mkdir()
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert tracking_uri("sqlite:///mlflow.db", copy) == "sqlite:///mlflow.db"
    dvc_stage_env(monkeypatch, root, "exp-a", BASELINE)
    assert tracking_uri("sqlite:///mlflow.db", copy) == f"sqlite:///{root.resolve()}/mlflow.db"
    assert tracking_uri("sqlite:///x.db", copy / "sub") == f"sqlite:///{root.resolve()}/sub/x.db"
    assert tracking_uri("sqlite:////abs/m.db", copy) == "sqlite:////abs/m.db"
    assert tracking_uri("http://mlflow:5000", copy) == "http://mlflow:5000"
