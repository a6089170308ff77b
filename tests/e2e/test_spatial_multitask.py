"""The spatial multi-task workflow end to end on the embedded digits: train → record → split →
score → plot, the strength sweep through the real CLIs, and the DVC pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.e2e.test_dvc import repository, run  # noqa: F401  (the repository fixture)
from tests.topo_eval.conftest import compose_eval
from topo_eval.__main__ import evaluate
from topo_train import train

pytestmark = pytest.mark.slow

QUICK = [
    "experiment=spatial_multitask",
    "trainer.max_epochs=4",
    "trainer.val_every_epochs=2",
    "trainer.checkpoint_every=10",
    "trainer.progress=false",
    "model.widths=[32,32]",
]


def cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_train_then_every_stage(tmp_path, isolated_tracking, compose_train):
    """Training and `task=multitask`, each in this process as its CLI runs it (the README test
    runs both CLIs)."""
    run_dir = tmp_path / "train"
    train(compose_train([*QUICK, f"run_dir={run_dir}"]))
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    assert saved["model_config"]["input_shape"] == [1, 8, 8]  # filled from the data
    assert saved["model_config"]["n_tasks"] == 2 and "positions" in str(list(saved["model"]))
    sheet = np.load(run_dir / "positions" / "hidden1.npz")  # the learned positions, as files
    np.testing.assert_allclose(sheet["coordinates"], saved["model"]["hidden1.positions"].numpy())
    out = tmp_path / "eval"
    evaluate(
        compose_eval("task=multitask", f"checkpoint={run_dir / 'model.pt'}", f"output_dir={out}"),
        out,
    )
    table = pd.read_csv(out / "score" / "score.csv", index_col="network")
    assert list(table.index) == ["full", "Digits[0:5]", "Digits[5:10]"]
    assert list(table.columns) == ["Digits[0:5]", "Digits[5:10]"]
    assert table.to_numpy().min() >= 0 and table.to_numpy().max() <= 1
    assignment = pd.read_csv(out / "split" / "assignment.csv")
    assert set(assignment.layer) == {"hidden1", "hidden2", "output"}
    assert len(assignment) == 32 + 32 + 10
    separation = pd.read_csv(out / "score" / "separation.csv")
    assert list(separation.layer) == ["hidden1", "hidden2", "output"]
    for figure in ("positions_by_task.png", "strength_task0.png", "strength_task1.png"):
        assert (out / "plot" / "figures" / figure).stat().st_size > 5000
    assert (out / "record" / "activity.npz").is_file()
    # the whole composed config, metrics and artifacts are in MLflow (training and scoring)
    client = mlflow.MlflowClient(isolated_tracking)
    runs = {
        r.info.run_name: r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
    }
    scored = next(r for name, r in runs.items() if name.startswith("multitask"))
    assert 0 <= scored.data.metrics["accuracy_after_split"] <= 1
    assert "separation_silhouette" in scored.data.metrics
    trained = next(r for r in runs.values() if "val/accuracy" in r.data.metrics)
    assert trained.data.params["loss.proximity"] == "3.0"


def test_bad_where_is_refused_before_training(tmp_path, compose_train):
    from topo_models.errors import TopoError

    cfg = compose_train([*QUICK, f"run_dir={tmp_path / 'r'}", "loss.where=[hidden9]"])
    with pytest.raises(TopoError, match="hidden9") as refused:
        train(cfg)
    assert "loss.where" in str(refused.value)
    assert not (tmp_path / "r" / "last.pt").exists()


def test_strength_sweep_tabulates_accuracy_before_and_after_the_split(tmp_path):
    cli(
        "topo_train",
        # the table is built from the run folders: the sweep need not be tracked
        ["-m", "loss.proximity=0,3", "loss.transport=0,1", *QUICK, "trainer.max_epochs=2"]
        + ["tracking=none"],
        tmp_path,
    )
    sweep = tmp_path / "runs" / "sweeps" / "topo_train"
    out = tmp_path / "sweep_eval"
    report = ["task=multitask_sweep", f"sweep_dir={sweep}", f"output_dir={out}"]
    evaluate(compose_eval(*report, "tracking.enabled=false"), out)  # as its CLI, in this process
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 4
    pairs = sorted(zip(table.proximity, table.transport, table.spatial, strict=True))
    assert pairs == [(0.0, 0.0, False), (0.0, 1.0, True), (3.0, 0.0, True), (3.0, 1.0, True)]
    assert ((table.accuracy_before - table.accuracy_after - table.accuracy_drop).abs() < 1e-9).all()
    assert (out / "figures" / "sweep.png").is_file()


def test_dvc_pipeline_runs_train_record_split_score_plot(repository):  # noqa: F811
    params_path = repository / "pipelines" / "spatial_multitask" / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["trainer"].update(max_epochs=2, val_every_epochs=1, progress=False)
    params["model"]["widths"] = [16, 16]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(
        [sys.executable, "-m", "dvc", "repro", "pipelines/spatial_multitask/dvc.yaml"],
        repository,
    )
    out = repository / "dvc_runs" / "spatial_multitask"
    assert (out / "train" / "model.pt").is_file()
    assert (out / "record" / "activity.npz").is_file()
    assert (out / "split" / "task0.pt").is_file() and (out / "split" / "task1.pt").is_file()
    table = pd.read_csv(out / "score" / "score.csv", index_col="network")
    assert table.shape == (3, 2)
    assert (out / "plot" / "figures" / "positions_by_task.png").is_file()
    status = run(
        [sys.executable, "-m", "dvc", "status", "pipelines/spatial_multitask/dvc.yaml"], repository
    )
    assert "up to date" in status.stdout.lower()


def test_costs_separate_the_positions_of_different_tasks_beyond_the_shuffled_control(
    tmp_path, compose_train
):
    """The default experiment (seed 0) against its α = β = 0 control: with the costs on, the
    neurons the greedy split gives to different tasks sit in separate regions of the sheet.

    Pooled over the hidden layers where both tasks have neurons (a layer given wholly to one
    task has no silhouette): the summed excess of the silhouette over its shuffled-label mean,
    in units of the shuffles' pooled spread, is beyond 3, most layers beat every shuffle, and
    the silhouette beats the control's. (One layer alone is not a robust check: hidden1, with
    no spatial layer before it, feels no transport and separates least — p 0.11 at seed 0
    with fused Adam, while seeds 1 and 2 give pooled scores of 35 and 11.)
    """
    from topo_eval.multitask.separation import separation_table
    from topo_eval.multitask.split import greedy_assignment
    from topo_eval.multitask.stages import load_run

    silhouettes = {}
    for name, costs in (("spatial", []), ("control", ["loss.proximity=0", "loss.transport=0"])):
        cfg = compose_train(
            [
                "experiment=spatial_multitask",
                f"run_dir={tmp_path / name}",
                "trainer.progress=false",
                *costs,
            ]
        )
        train(cfg)
        run = load_run(tmp_path / name / "model.pt")
        assignment = greedy_assignment(run.model, run.data.n_tasks)
        table = separation_table(run.positions(), assignment.tasks, n_shuffles=200, seed=0)
        hidden = table[table.layer.str.startswith("hidden")]
        silhouettes[name] = hidden.dropna(subset=["silhouette"])
    spatial, control = silhouettes["spatial"], silhouettes["control"]
    assert len(spatial) >= 2, spatial
    excess = (spatial.silhouette - spatial.shuffled_mean).sum()
    assert excess / (spatial.shuffled_std**2).sum() ** 0.5 > 3.0, spatial
    assert (spatial.p_value < 0.01).mean() >= 0.5, spatial
    control_mean = control.silhouette.mean() if len(control) else 0.0  # no structure: ~0
    assert spatial.silhouette.mean() > control_mean + 0.05, (spatial, control)


def test_a_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path, compose_train):
    """A CLI run killed after a checkpoint, resumed by the same command, ends as the same run
    never killed (trained in this process)."""
    import signal
    import time

    settings = [
        *QUICK,
        "trainer.max_epochs=20",
        "trainer.checkpoint_every=5",
        "trainer.log_every=3",  # windows across checkpoints: their sums are checkpointed too
        "trainer.val_every_epochs=5",
        "tracking=none",
    ]
    train(compose_train([*settings, f"run_dir={tmp_path / 'reference'}"]))
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "topo_train", *settings, f"run_dir={killed}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (killed / "last.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(killed / "last.pt", weights_only=True)["step"]
    assert killed_at < 100, "the run finished before it could be killed"  # of 100+ steps
    cli("topo_train", [*settings, f"run_dir={killed}"], tmp_path)
    a = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)["model"]
    b = torch.load(killed / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "reference" / "metrics.jsonl").read_text() == (
        killed / "metrics.jsonl"
    ).read_text()
