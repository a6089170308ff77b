"""Eight sweep jobs tracking into one SQLite store at once: every run recorded under the sweep's
parent, none lost to "database is locked"."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from pathlib import Path

import mlflow
import pytest

from topo_train.tracking import PARENT_RUN_ENV, MLflowTracker, ensure_experiment

pytestmark = pytest.mark.slow

JOBS = 8
STEPS = 10


def _job(uri: str, index: int, start: multiprocessing.synchronize.Barrier, folder: str) -> None:
    """What one sweep job does with its tracker: start a run under the parent (params and
    config), log metrics every step, log an artifact, end."""
    try:
        start.wait(timeout=120)
        tracker = MLflowTracker(tracking_uri=uri, experiment_name="topo")
        config = {"seed": index, "optim": {"lr": 0.1 * index}, "data": {"batch_size": 8}}
        config |= {"extra": {f"p{k}": k for k in range(150)}}  # two params batches
        tracker.start(config, run_name=f"seed={index}", run_id=None)
        for step in range(1, STEPS + 1):
            tracker.log_metrics({"loss/total": 1.0 / step, "lr": 0.1}, step)
        artifact = Path(folder) / f"job{index}" / "figure.txt"
        artifact.parent.mkdir(parents=True)
        artifact.write_text(f"job {index}")
        tracker.log_artifact(artifact, "figures")
        tracker.end("FINISHED")
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_eight_jobs_at_once_record_every_run_under_the_parent(tmp_path, isolated_tracking):
    uri = isolated_tracking
    # the sweep's callback, in its own process: database, experiment and parent run
    context = multiprocessing.get_context("fork")  # no store is open in this process yet
    parent_id = context.Queue()

    def make_parent() -> None:
        experiment = ensure_experiment(uri, "topo")
        client = mlflow.MlflowClient(uri)
        run = client.create_run(
            experiment, run_name="sweep seed=0..7", tags={"topo.sweep": "parent"}
        )
        parent_id.put(run.info.run_id)

    maker = context.Process(target=make_parent)
    maker.start()
    parent = parent_id.get(timeout=120)
    maker.join(timeout=120)
    os.environ[PARENT_RUN_ENV] = parent
    try:
        start = context.Barrier(JOBS)
        jobs = [
            context.Process(target=_job, args=(uri, index, start, str(tmp_path)))
            for index in range(JOBS)
        ]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join(timeout=300)
    finally:
        os.environ.pop(PARENT_RUN_ENV, None)
    assert [job.exitcode for job in jobs] == [0] * JOBS  # a traceback above says why not

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("topo").experiment_id
    runs = client.search_runs([experiment], max_results=100)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(runs) == JOBS + 1 and len(children) == JOBS
    assert sorted(r.info.run_name for r in children) == [f"seed={i}" for i in range(JOBS)]
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == run.info.run_name.split("=")[1]
        assert len(run.data.params) == 153
        history = client.get_metric_history(run.info.run_id, "loss/total")
        assert sorted(m.step for m in history) == list(range(1, STEPS + 1))
        names = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert names == {"figures/figure.txt"}
