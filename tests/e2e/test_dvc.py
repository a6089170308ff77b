"""The DVC pipeline offline: `dvc repro` and `dvc exp run -S …` on a copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT

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


def exp_run(repository: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    """`dvc exp run -S …` with the tiny run's overrides plus ``overrides``."""
    sets = [flag for override in TINY + overrides for flag in ("-S", override)]
    return run([sys.executable, "-m", "dvc", "exp", "run", *sets], repository)


def test_dvc_exp_run_composes_params_and_runs_every_stage(repository):
    exp_run(repository, [*LAYOUT, "loss.alpha=0.5"])
    params = yaml.safe_load((repository / "params.yaml").read_text())
    assert params["loss"]["alpha"] == 0.5 and params["trainer"]["max_steps"] == 2
    assert (repository / "dvc_runs" / "positions" / "layer2.0.npz").is_file()
    assert (repository / "dvc_runs" / "train" / "model.pt").is_file()
    table = (repository / "dvc_runs" / "responses" / "responses.csv").read_text().splitlines()
    assert table[0] == "layer,unit,x_mm,y_mm,response" and len(table) > 1000
    assert (repository / "dvc_runs" / "responses" / "figures" / "layer4.1.png").is_file()
    report = repository / "dvc_runs" / "topography"
    assert (report / "topography.csv").is_file() and (report / "index.html").is_file()
    status = run([sys.executable, "-m", "dvc", "status", "dvc.yaml"], repository)  # this pipeline
    assert "up to date" in status.stdout


def test_dvc_repro_runs_the_committed_params_offline(repository):
    params = yaml.safe_load((repository / "params.yaml").read_text())
    for override in TINY + LAYOUT:
        key, value = override.split("=")
        section, name = key.split(".")
        params[section][name] = yaml.safe_load(value)
    (repository / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([sys.executable, "-m", "dvc", "repro"], repository)
    assert (repository / "dvc.lock").is_file()
    assert (repository / "dvc_runs" / "responses" / "responses.csv").is_file()
    again = run([sys.executable, "-m", "dvc", "repro"], repository)
    assert "didn't change, skipping" in again.stdout or "up to date" in again.stdout


def test_ctrl_c_during_dvc_repro_exits_cleanly_and_dvc_repro_resumes_the_run(repository):
    """Ctrl-C in a terminal reaches dvc and the stage's process alike (one process group): no
    traceback, a line saying to rerun the same dvc command, and that command then continues the
    training stage from its checkpoint in the same MLflow run instead of starting over."""
    params = yaml.safe_load((repository / "params.yaml").read_text())
    for override in [*TINY, *LAYOUT, "trainer.max_steps=60", "trainer.checkpoint_every=2"]:
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
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repository,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # pytest-xdist workers ignore SIGINT and children inherit that; a shell's child hears it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    checkpoint = repository / "dvc_runs" / "train" / "last.pt"
    deadline = time.time() + 600
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists(), "the train stage never wrote its first checkpoint"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground job
    output = process.communicate(timeout=300)[0]
    assert process.returncode != 0
    assert "Traceback" not in output, output[-3000:]
    assert "interrupted; resume with the same dvc command (dvc repro)" in output, output[-3000:]
    step = torch.load(checkpoint, weights_only=True)["step"]
    run_id = json.loads((repository / "dvc_runs" / "train" / "mlflow_run.json").read_text())
    resumed = run([sys.executable, "-m", "dvc", "repro"], repository)
    assert f"resumed from dvc_runs/train at step {step}" in resumed.stdout + resumed.stderr
    assert json.loads((repository / "dvc_runs" / "train" / "mlflow_run.json").read_text()) == run_id
    assert (repository / "dvc_runs" / "responses" / "responses.csv").is_file()
