"""A non-editable install runs from any directory: the default configs ship with the packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
PACKAGES = ("topo_models", "topo_data", "topo_train", "topo_eval")
LEFT_BY_BUILDS = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_installed_packages_train_and_evaluate_outside_the_checkout(tmp_path):
    # torch, hydra, mlflow … come from this interpreter; the four packages are built and
    # installed as wheels (no link back to the checkout)
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(tmp_path / "venv")
    python = str(tmp_path / "venv" / "bin" / "python")
    env = {**os.environ, "TOPO_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default: a SQLite file where the run starts
    wheels, sources = tmp_path / "wheels", tmp_path / "sources"
    for package in PACKAGES:  # built from a copy: a build leaves build/ folders behind
        shutil.copytree(ROOT / package, sources / package, ignore=LEFT_BY_BUILDS)
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), *(str(sources / p) for p in PACKAGES)],
        tmp_path, env,
    )  # fmt: skip
    run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
         *map(str, sorted(wheels.glob("*.whl")))],
        tmp_path, env,
    )  # fmt: skip
    where = run([python, "-c", "import topo_train; print(topo_train.__file__)"], tmp_path, env)
    assert str(tmp_path / "venv") in where.stdout  # the installed copy, not the checkout

    work = tmp_path / "elsewhere"
    work.mkdir()
    tiny = [
        "data.image_size=32",
        "data.batch_size=8",
        "data.train_per_class=4",
        "data.val_per_class=1",
        "positions.n_neighborhoods=300",
        "trainer.progress=false",
    ]
    run([python, "-m", "topo_train", "trainer.max_steps=2", "run_dir=run", *tiny], work, env)
    assert (work / "run" / "model.pt").is_file() and (work / "mlflow.db").is_file()
    run(
        [python, "-m", "topo_eval", "checkpoint=run/model.pt", "positions=run/positions",
         "output_dir=responses"],
        work, env,
    )  # fmt: skip
    assert (work / "responses" / "responses.csv").is_file()
