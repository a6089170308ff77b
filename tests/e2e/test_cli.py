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
    (sweep,) = (tmp_path / "runs" / "sweeps" / "topo_train").iterdir()  # its own directory
    failed = [p.parent.name for p in sweep.glob("*/FAILED")]
    finished = [p.parent.name for p in sweep.glob("*/model.pt")]
    assert len(failed) == 1 and "loss.alpha=-1" in failed[0]
    assert len(finished) == 1 and "loss.alpha=0.25" in finished[0]
    assert (sweep / "multirun.yaml").is_file()


def test_two_sweeps_started_together_both_finish_and_see_only_their_own_jobs(
    tmp_path, isolated_tracking
):
    # a fresh mlflow.db migrated by both at once, and a failure marker of some other sweep
    other = tmp_path / "runs" / "sweeps" / "topo_train" / "another" / "job"
    other.mkdir(parents=True)
    (other / "FAILED").write_text("an earlier sweep's failure")
    base = [o for o in sweep_overrides(tmp_path) if not o.startswith("trainer.max_steps")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", "topo_train", "-m", alphas, "trainer.max_steps=1", *base],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for alphas in ("loss.alpha=0.1,0.2", "loss.alpha=0.3")
    ]
    outputs = [process.communicate(timeout=600)[0] for process in sweeps]
    assert [process.returncode for process in sweeps] == [0, 0], (
        outputs[0][-2000:] + outputs[1][-2000:]
    )
    directories = sorted((tmp_path / "runs" / "sweeps" / "topo_train").glob("*/multirun.yaml"))
    assert len(directories) == 2
    assert sorted(len(list(d.parent.glob("*/model.pt"))) for d in directories) == [1, 2]
    client = mlflow.MlflowClient(isolated_tracking)
    runs = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    parents = [r for r in runs if r.data.tags.get("topo.sweep") == "parent"]
    assert len(parents) == 2 and len(runs) == 5
    assert all(r.info.status == "FINISHED" for r in runs)


# Runs `python -m topo_train` with a checkpoint write hook that, at the chosen save and instant,
# writes a marker and waits there to be killed.
KILL_DRIVER = """
import os, runpy, sys, time
from pathlib import Path
import topo_train.checkpoint as checkpoint
phase, number, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
saves = []
def hook(instant):
    if instant == "written":
        saves.append(instant)
    if instant == phase and len(saves) == number:
        marker.write_text(str(os.getpid()))
        time.sleep(600)
checkpoint.write_hook = hook
sys.argv = ["topo_train", *sys.argv[4:]]
runpy.run_module("topo_train", run_name="__main__", alter_sys=True)
"""
KILL_STEPS = [
    "trainer.max_steps=8",
    "trainer.checkpoint_every=3",
    "trainer.val_every=2",
]


def _mlflow_history(uri: str) -> tuple[list, dict[str, list[tuple[int, float]]]]:
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    history = {
        key: sorted((m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, key))
        for key in runs[0].data.metrics
    }
    return runs, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the same run, never killed, tracked into its own database."""
    root = tmp_path_factory.mktemp("reference")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env["TOPO_CACHE_DIR"] = str(root / "cache")
    result = subprocess.run(
        [sys.executable, "-m", "topo_train", *tiny_overrides(root), *KILL_STEPS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.parametrize(
    ("instant", "save"),
    [("written", 1), ("rotated", 2)],
    ids=["first-save-complete-but-not-renamed", "last.pt-rotated-away-new-not-in-place"],
)
def test_a_kill_inside_a_checkpoint_write_loses_nothing(tmp_path, uninterrupted, instant, save):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    marker = tmp_path / "in-the-window"
    args = [*tiny_overrides(tmp_path), *KILL_STEPS]
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_DRIVER, instant, str(save), str(marker), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached the write window"
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_dir = tmp_path / "run"
    assert instant != "rotated" or not (run_dir / "last.pt").exists()  # the bug's window
    resumed = run_cli(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = uninterrupted / "run"
    a = torch.load(reference / "model.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (run_dir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert not list(run_dir.glob(".*.tmp"))
    runs, history = _mlflow_history(uri)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the killed run, continued
    expected = _mlflow_history(f"sqlite:///{uninterrupted / 'mlflow.db'}")[1]
    assert history == expected  # each (metric, step) once, with the same values


def test_the_same_command_twice_at_once_is_refused_naming_the_holder(tmp_path):
    from topo_train.run_lock import RunDirectoryLock

    args = [*tiny_overrides(tmp_path), "tracking=none"]
    with RunDirectoryLock(tmp_path / "run"):
        second = run_cli(args, tmp_path)
    assert second.returncode != 0
    assert f"pid {os.getpid()}" in second.stderr and "already running" in second.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".topo.lock"]
