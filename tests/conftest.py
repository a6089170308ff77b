"""Shared fixtures: compose the real Hydra configs with overrides for tiny, fast runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

if os.environ.get("PYTEST_XDIST_WORKER"):  # one test per core: one thread each, children too
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


# The longest files first, longest first (seconds measured in one CI run). pytest-xdist
# (--dist loadfile) hands whole files to its two workers in collection order (with
# --no-loadscope-reorder, in pyproject.toml; by default it reorders files by their number of
# tests, which put the one-test e2e files last), so a long file collected last would run alone at
# the end while the other core idles (test_train.py did: 74 s after the other worker had
# finished); started first, the short files fill in around them.
LONGEST_FIRST = (
    "tests/e2e/test_sensorium_training.py",  # 172 s
    "tests/e2e/test_cli.py",  # 156
    "tests/e2e/test_dvc.py",  # 152
    "tests/e2e/test_readme_commands.py",  # 133
    "tests/e2e/test_topography_trend.py",  # 131
    "tests/e2e/test_spatial_multitask.py",  # 96
    "tests/e2e/test_memory_growth.py",  # 73
    "tests/e2e/test_distributed.py",  # 51
    "tests/topo_train/test_train.py",  # 48
    "tests/e2e/test_slurm_requeue.py",  # 34
    "tests/e2e/test_installed_package.py",  # 34
    "tests/e2e/test_ddp_equivalence.py",  # 28
    "tests/e2e/test_sweep_failures.py",  # 20
    "tests/e2e/test_retina_run_cli.py",  # 19
    "tests/topo_eval/test_regulariser_benchmark.py",  # 16
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


def tiny_overrides(tmp_path: Path, run: str = "run") -> list[str]:
    """A run that trains ResNet-18 at 32 px for a few steps in seconds on 2 cores."""
    return [
        f"run_dir={tmp_path / run}",
        f"data.root={tmp_path / 'cache'}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.train_per_class=4",
        "data.val_per_class=1",
        "positions.n_neighborhoods=300",
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "trainer.val_every=2",
        "trainer.progress=false",
        "trainer.figure_layers=[]",  # no responses figure: half a second; tested where drawn
    ]


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite store MLflow has made its tables in, once per test process: making them (its
    migrations) takes about 1.5 s, which every test that tracks would otherwise pay again."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def isolated_tracking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_store: Path
) -> str:
    """Every test tracks into its own SQLite file (never the repository's mlflow.db): a copy
    of an empty store beside ``tmp_path`` (so that the test's folder holds only what it
    writes), its artifacts in ``mlartifacts/`` next to it. Tests of a store made from nothing
    give their own path."""
    store = tmp_path.parent / f"{tmp_path.name}-mlflow" / "mlflow.db"
    store.parent.mkdir(exist_ok=True)
    shutil.copyfile(empty_mlflow_store, store)
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TOPO_CACHE_DIR", str(tmp_path / "cache"))
    return uri


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (per-step retina ops are dominated by thread hand-off on a
    small shared CPU), restoring the thread count afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def compose_config(
    overrides: list[str], config_name: str = "train", config_dir: Path = CONF
) -> DictConfig:
    """``<config_dir>/<config_name>.yaml`` (``conf/train.yaml`` by default) composed with
    ``overrides`` (for fixtures of any scope)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose(config_name, overrides=overrides)


@pytest.fixture
def compose_train() -> Callable[..., DictConfig]:
    """compose_train(overrides) → conf/train.yaml composed as `python -m topo_train` sees it."""

    yield compose_config
    GlobalHydra.instance().clear()
