"""The DVC pipeline offline: `dvc repro` and `dvc exp run -S …` (in the workspace and queued) on
a copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.topo_eval.test_topography_task import FAST

pytestmark = pytest.mark.slow

TINY = [
    "trainer.max_steps=2",
    "data.image_size=32",
    "data.batch_size=8",
    "data.train_per_class=4",
    "data.val_per_class=1",
    "trainer.progress=false",
    "trainer.val_every=0",
]
LAYOUT = ["positions.n_neighborhoods=300"]
# The topography stage's report at a size that takes seconds (one analysis per kind of layer)
SMALL_REPORT = [
    *[override for override in FAST if not override.startswith("topography.progress")],
    "topography.layers.correlation=[layer2.0,layer4.1]",
    "topography.layers.dimensionality=[layer4.1]",
    "topography.layers.wiring=[]",
]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    env.pop("TOPO_CACHE_DIR", None)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The tracked files of this checkout in a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    copy = tmp_path / "repo"
    for name in listed:
        source = ROOT / name
        if source.is_symlink():  # conf -> the configs shipped inside topo_train
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).symlink_to(os.readlink(source))
        elif source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for args in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"],
    ):
        subprocess.run(args, cwd=copy, check=True)
    return copy


def exp_run(repository: Path, overrides: list[str], *flags: str) -> subprocess.CompletedProcess:
    """`dvc exp run [flags] -S …` with the tiny run's overrides plus ``overrides``."""
    sets = [flag for override in TINY + overrides for flag in ("-S", override)]
    return run([sys.executable, "-m", "dvc", "exp", "run", *flags, *sets], repository)


def tiny_swap(repository: Path) -> str:
    """Few windows and proposals in the swap stage (dvc.yaml's vars) and a small topography
    report, committed: the revision, the baseline of the experiments."""
    pipeline = repository / "dvc.yaml"
    text = pipeline.read_text()
    for old, new in (
        ("n_windows: 200\n", "n_windows: 20\n"),
        ("per_window: 500", "per_window: 50"),
        ("topography.progress=false", " ".join(["topography.progress=false", *SMALL_REPORT])),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    pipeline.write_text(text)
    return commit(repository, "dvc.yaml")


def commit(repository: Path, *paths: str) -> str:
    """Commit ``paths`` in the copy; its new revision."""
    for args in (
        ["git", "add", *paths],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "baseline"],
    ):
        subprocess.run(args, cwd=repository, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True
    ).stdout.strip()


def coordinates(directory: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p)["coordinates"] for p in sorted(directory.glob("*.npz"))}


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def test_tdanns_chain_runs_as_an_experiment_and_alpha_variants_rerun_only_train_and_report(
    repository, isolated_tracking
):
    """One `dvc exp run` runs TDANN's whole chain (a `dvc repro` after it runs nothing); a
    queued α variant (`--queue`, `--run-all`) on the committed result reruns only the training
    and the report, and lands in MLflow as a sweep: one parent per baseline revision, one
    training child per experiment, the control's run only where the control ran."""
    first_baseline = tiny_swap(repository)
    first = exp_run(repository, [*LAYOUT, "loss.alpha=0.5"])
    assert stages_run(first.stdout) == {"positions", "control", "swap", "train", "topography"}
    params = yaml.safe_load((repository / "params.yaml").read_text())
    assert params["loss"]["alpha"] == 0.5 and params["trainer"]["max_steps"] == 2
    runs = repository / "dvc_runs"
    fuzzy, swapped = coordinates(runs / "positions"), coordinates(runs / "swapped")
    assert sorted(fuzzy) == sorted(swapped) and "layer2.0" in fuzzy
    for layer in fuzzy:  # a permutation of the fuzzy layout's units
        assert np.array_equal(np.sort(fuzzy[layer], 0), np.sort(swapped[layer], 0)), layer
    assert any(not np.array_equal(fuzzy[layer], swapped[layer]) for layer in fuzzy)
    trained_on = coordinates(runs / "train" / "positions")
    assert all(np.array_equal(trained_on[layer], swapped[layer]) for layer in swapped)
    assert (runs / "control" / "model.pt").is_file() and (runs / "train" / "model.pt").is_file()
    report = runs / "topography"
    assert (report / "topography.csv").is_file() and (report / "index.html").is_file()

    again = run([sys.executable, "-m", "dvc", "repro"], repository)
    assert not stages_run(again.stdout)
    status = run([sys.executable, "-m", "dvc", "status", "dvc.yaml"], repository)
    assert "up to date" in status.stdout

    # Variants are queued on a committed baseline (its dvc.lock: what they need not rerun)
    baseline = commit(repository, "dvc.lock", "params.yaml")
    # one queued variant (the grouping of several under one parent: test_dvc_experiments.py)
    exp_run(repository, [*LAYOUT, "loss.alpha=1.5"], "--queue")
    run([sys.executable, "-m", "dvc", "exp", "run", "--run-all"], repository)
    client = mlflow.MlflowClient(isolated_tracking)
    found = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    parents = {
        r.data.tags["topo.dvc_baseline_rev"]: r.info.run_id
        for r in found
        if r.data.tags.get("topo.sweep") == "parent"
    }
    assert sorted(parents) == sorted([first_baseline, baseline]), parents

    def children(revision: str) -> list:
        parent = parents[revision]
        return [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent]

    (control,) = [r for r in children(first_baseline) if r.data.tags["dvc.stage"] == "control"]
    assert float(control.data.params["loss.alpha"]) == 0
    assert "loss.layer_weights.layer4_1" not in control.data.params
    assert control.data.params["trainer.max_steps"] == "2"  # the composed config
    (trained,) = [r for r in children(first_baseline) if r.data.tags["dvc.stage"] == "train"]
    assert float(trained.data.params["loss.alpha"]) == 0.5
    (queued,) = children(baseline)  # its training alone, nothing before it rerun
    assert queued.data.tags["dvc.stage"] == "train" and queued.data.tags["dvc.exp_name"]
    assert float(queued.data.params["loss.alpha"]) == 1.5
    # the variant changed only the final training's alpha: its log shows that training and the
    # report reran, and no stage before them
    name = queued.data.tags["dvc.exp_name"]
    log = run([sys.executable, "-m", "dvc", "queue", "logs", name], repository)
    assert stages_run(log.stdout) == {"train", "topography"}, log.stdout[-3000:]


def test_ctrl_c_during_dvc_repro_exits_cleanly_and_dvc_repro_resumes_the_run(repository):
    """Ctrl-C in a terminal reaches dvc and the stage's process alike (one process group): no
    traceback, a line saying to rerun the same dvc command, and that command then continues the
    training stage (here the control, the first one of the chain) from its checkpoint in the same
    MLflow run instead of starting over."""
    params = yaml.safe_load((repository / "params.yaml").read_text())
    for override in [*TINY, *LAYOUT, "trainer.max_steps=20", "trainer.checkpoint_every=2"]:
        key, value = override.split("=")
        section, name = key.split(".")
        params[section][name] = yaml.safe_load(value)
    (repository / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TOPO_CACHE_DIR", None)
    command = [sys.executable, "-m", "dvc", "repro", "control"]
    process = subprocess.Popen(
        command,
        cwd=repository,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # pytest-xdist workers ignore SIGINT and children inherit that; a shell's child hears it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    checkpoint = repository / "dvc_runs" / "control" / "last.pt"
    deadline = time.time() + 600
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists(), "the control stage never wrote its first checkpoint"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground job
    output = process.communicate(timeout=300)[0]
    assert process.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    assert "interrupted; resume with the same dvc command (dvc repro)" in output, output[-3000:]
    step = torch.load(checkpoint, weights_only=True)["step"]
    run_file = repository / "dvc_runs" / "control" / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())
    resumed = run(command, repository)
    assert f"resumed from dvc_runs/control at step {step}" in resumed.stdout + resumed.stderr
    assert json.loads(run_file.read_text()) == run_id
    assert (repository / "dvc_runs" / "control" / "model.pt").is_file()
