"""The real entry points in subprocesses: single runs, sweeps, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "topo_train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sweep_overrides(tmp_path: Path) -> list[str]:
    return [o for o in tiny_overrides(tmp_path) if not o.startswith("run_dir=")]


def test_cli_single_run_writes_into_the_hydra_run_dir(tmp_path):
    result = run_cli(["trainer.max_steps=2", *sweep_overrides(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = list((tmp_path / "runs" / "topo_train").iterdir())
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "model.pt").is_file()
    assert (run_dirs[0] / "figures" / "responses_on_sheet.png").is_file()


def test_alpha_sweep_groups_runs_under_one_parent(tmp_path, isolated_tracking):
    result = run_cli(["-m", "loss.alpha=0,0.25,2.5", *sweep_overrides(tmp_path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(isolated_tracking)
    experiment = client.get_experiment_by_name("topo")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("topo.sweep") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["loss.alpha"] for r in children) == ["0", "0.25", "2.5"]
    assert all(r.info.status == "FINISHED" for r in children)


def test_layer_weight_sweep_is_one_command(tmp_path, isolated_tracking):
    result = run_cli(
        ["-m", "loss.layer_weights.layer4_1=0,2.5", *sweep_overrides(tmp_path)], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(isolated_tracking)
    runs = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    swept = sorted(
        r.data.params["loss.layer_weights.layer4_1"]
        for r in runs
        if "loss.layer_weights.layer4_1" in r.data.params
    )
    assert swept == ["0", "2.5"]
    others = {r.data.params["loss.layer_weights.layer2_0"] for r in runs if r.data.params}
    assert others == {"None"}  # untouched layers keep alpha


def test_a_failing_sweep_job_does_not_stop_the_others(tmp_path):
    result = run_cli(["-m", "loss.alpha=-1,0.25", *sweep_overrides(tmp_path)], tmp_path)
    assert result.returncode != 0
    assert "1 sweep job(s) failed" in result.stdout + result.stderr
    sweep = tmp_path / "runs" / "sweeps" / "topo_train"
    failed = [p.parent.name for p in sweep.glob("*/FAILED")]
    finished = [p.parent.name for p in sweep.glob("*/model.pt")]
    assert len(failed) == 1 and "loss.alpha=-1" in failed[0]
    assert len(finished) == 1 and "loss.alpha=0.25" in finished[0]


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    steps = [
        "trainer.max_steps=24",
        "trainer.checkpoint_every=3",
        "trainer.val_every=0",
        "tracking=none",
    ]
    reference = run_cli([*tiny_overrides(tmp_path, "reference"), *steps], tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    args = [sys.executable, "-m", "topo_train", *tiny_overrides(tmp_path, "killed"), *steps]
    process = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(checkpoint, weights_only=True)["step"]
    assert killed_at < 24, "the run finished before it could be killed"
    resumed = run_cli([*tiny_overrides(tmp_path, "killed"), *steps], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines_a = (tmp_path / "reference" / "metrics.jsonl").read_text()
    lines_b = (tmp_path / "killed" / "metrics.jsonl").read_text()
    assert lines_a == lines_b
