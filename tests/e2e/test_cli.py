"""The real entry points in subprocesses: single runs, sweeps, kill and resume."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from tests.conftest import compose_config, tiny_overrides

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


def test_cli_run_names_a_paste_safe_directory_logs_and_prints_a_command_that_evaluates_it(
    tmp_path,
):
    """A run in Hydra's run directory: a name that pastes as an override value, a log file
    holding what the terminal showed (and the progress the bar showed), and a summary whose
    evaluation command runs as printed."""
    drawn = ("trainer.progress=false", "trainer.figure_layers=[]")  # the bar and the figure
    overrides = [o for o in sweep_overrides(tmp_path) if o not in drawn]
    result = run_cli([*overrides, "trainer.max_steps=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = list((tmp_path / "runs" / "topo_train").iterdir())
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    assert re.fullmatch(r"[A-Za-z0-9_.+\-]+", run_dir.name), run_dir.name
    assert (run_dir / "model.pt").is_file()
    assert (run_dir / "figures" / "responses_on_sheet.png").is_file()
    assert (run_dir / "figures" / "loss_curves.png").is_file()
    log = (run_dir / "topo_train.log").read_text()
    assert "[INFO] - building positions" in log and "[INFO] - training " in log
    assert "[topo_train.progress][INFO] - step 2/2 (100%)" in log
    assert "step 2/2 (100%)" not in result.stdout  # the bar showed it (on stderr)
    assert "run finished: runs/topo_train/" in result.stdout and "run finished" in log
    assert "mlflow ui --backend-store-uri sqlite:///" in result.stdout
    lines = result.stdout.splitlines()
    command = lines[lines.index("evaluate it:") + 1].strip()
    assert command.startswith(f"python -m topo_eval checkpoint=runs/topo_train/{run_dir.name}/")
    words = shlex.split(command)
    evaluated = subprocess.run(
        [sys.executable, *words[1:], f"output_dir={tmp_path / 'eval'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "responses.csv").is_file()


def test_ctrl_c_exits_130_with_one_line_and_the_same_command_resumes(tmp_path, isolated_tracking):
    """SIGINT after the first checkpoint: no traceback, exit status 130, a line saying how to
    resume, the MLflow run KILLED and the checkpoint as last saved; the same command then
    finishes the run in the same MLflow run."""
    args = [*tiny_overrides(tmp_path), "trainer.max_steps=12", "trainer.val_every=0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "topo_train", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # pytest-xdist workers ignore SIGINT and children inherit that; a shell's child hears it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    checkpoint = tmp_path / "run" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists(), "the run never wrote its first checkpoint"
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 130, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "interrupted; resume the run with the same command: " in output
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] % 2 == 0 and state["step"] < 12
    client = mlflow.MlflowClient(isolated_tracking)
    assert client.get_run(state["mlflow_run_id"]).info.status == "KILLED"
    resumed = run_cli(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {tmp_path / 'run'} at step {state['step']}" in resumed.stdout
    assert client.get_run(state["mlflow_run_id"]).info.status == "FINISHED"


def test_ctrl_c_during_a_sweep_ends_its_parent_run_killed_with_the_job(tmp_path, isolated_tracking):
    """Ctrl-C in a sweep's first job: one line, exit 130, and in MLflow the job and the
    sweep's parent run both KILLED (not left RUNNING)."""
    base = [o for o in sweep_overrides(tmp_path) if not o.startswith("trainer.max_steps")]
    process = subprocess.Popen(
        [sys.executable, "-m", "topo_train", "-m", "loss.alpha=0,0.5", "trainer.max_steps=400"]
        + [*base, "trainer.checkpoint_every=2"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    sweeps = tmp_path / "runs" / "sweeps"
    deadline = time.time() + 300
    while not list(sweeps.rglob("last.pt")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(sweeps.rglob("last.pt")), "the first job never wrote a checkpoint"
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "interrupted; resume" in output, output[-3000:]
    client = mlflow.MlflowClient(isolated_tracking)
    runs = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    statuses = {r.data.tags.get("topo.sweep", "job"): r.info.status for r in runs}
    assert statuses == {"parent": "KILLED", "job": "KILLED"}, statuses


def test_two_sweeps_started_together_finish_and_each_reports_only_its_own_failures(
    tmp_path, isolated_tracking
):
    """Two sweeps at once on a fresh mlflow.db (both migrate it), beside an earlier sweep's
    failure marker: each finishes in its own directory under its own parent run; the one with
    a failing job (alpha < 0) finishes its other job and exits 1 naming that job alone. The
    other sweeps one layer's weight, in one command."""
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
        for alphas in ("loss.layer_weights.layer4_1=0,2.5", "loss.alpha=-1,0.5")
    ]
    good, bad = (process.communicate(timeout=600)[0] for process in sweeps)
    assert sweeps[0].returncode == 0, good[-3000:]
    assert sweeps[1].returncode == 1 and "1 sweep job(s) failed" in bad, bad[-3000:]
    assert "loss.alpha--1" in bad and "another" not in bad
    directories = sorted(
        p.parent for p in (tmp_path / "runs" / "sweeps" / "topo_train").glob("*/multirun.yaml")
    )
    assert len(directories) == 2
    finished = [p.parent.name for d in directories for p in d.glob("*/model.pt")]
    assert len(finished) == 3
    failed = [p.parent.name for d in directories for p in d.glob("*/FAILED")]
    assert len(failed) == 1 and "loss.alpha--1" in failed[0]
    table = [  # the sweep's table of its jobs: name, status, last metrics
        line.split() for line in bad.splitlines() if re.match(r"  data\S+__loss.alpha-", line)
    ]
    assert sorted(row[1] for row in table if len(row) > 1) == ["failed", "finished"], bad[-3000:]
    client = mlflow.MlflowClient(isolated_tracking)
    runs = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("topo.sweep") == "parent"}
    assert sorted(r.info.status for r in parents.values()) == ["FAILED", "FINISHED"]
    names = sorted(r.info.run_name for r in parents.values())  # the sweeps' overrides
    assert names[0].startswith("sweep loss.alpha=-1,0.5 ") and "trainer.max_steps=1" in names[0]
    assert names[1].startswith("sweep loss.layer_weights.layer4_1=0,2.5 ")
    for parent in parents.values():
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        if parent.info.status == "FAILED":  # alpha = -1 is refused before its run starts
            assert [r.data.params["loss.alpha"] for r in children] == ["0.5"]
            continue
        swept = sorted(r.data.params["loss.layer_weights.layer4_1"] for r in children)
        assert swept == ["0", "2.5"]
        assert sorted(r.info.run_name for r in children) == [  # what differs between the jobs
            "loss.layer_weights.layer4_1=0",
            "loss.layer_weights.layer4_1=2.5",
        ]
        others = {r.data.params["loss.layer_weights.layer2_0"] for r in children}
        assert others == {"None"}  # untouched layers keep alpha


# Runs `python -m topo_train` with a checkpoint write hook that, at the chosen save and instant,
# writes a marker and waits there to be killed.
KILL_DRIVER = """
import os, runpy, sys, time
from pathlib import Path
import topo_train.run_checkpoints as checkpoint
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
    """The reference: the same run, never killed, trained in this process (the same numbers as
    the CLI's) and tracked into its own database."""
    from topo_train import train

    root = tmp_path_factory.mktemp("reference")
    tracking = f"tracking.tracking_uri=sqlite:///{root / 'mlflow.db'}"
    train(compose_config([*tiny_overrides(root), *KILL_STEPS, tracking]))
    return root


def _kill_inside_a_write(instant: str, save: int, args: list[str], cwd: Path, env: dict) -> None:
    """Run the CLI until it is inside its ``save``-th checkpoint write at ``instant``, then
    SIGKILL it there."""
    marker = cwd / f"in-the-window-{instant}"
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_DRIVER, instant, str(save), str(marker), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), f"the run never reached the write window {instant}"
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_kills_inside_checkpoint_writes_lose_nothing(tmp_path, uninterrupted, isolated_tracking):
    """Killed (1) with its first checkpoint complete but not yet renamed — no checkpoint, and
    a tracking run already open — then (2) with last.pt rotated away and the new one not yet in
    place, the run resumes to the uninterrupted run's weights, metrics.jsonl and MLflow
    history, in one MLflow run."""
    uri = isolated_tracking  # run_cli's runs track there too
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    args = [*tiny_overrides(tmp_path), *KILL_STEPS]
    run_dir = tmp_path / "run"
    _kill_inside_a_write("written", 1, args, tmp_path, env)
    assert not (run_dir / "last.pt").exists() and list(run_dir.glob(".last.pt.*.tmp"))
    _kill_inside_a_write("rotated", 2, args, tmp_path, env)  # starts over: no checkpoint yet
    assert not (run_dir / "last.pt").exists() and (run_dir / "last.prev.pt").exists()
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
