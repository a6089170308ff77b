"""params.yaml (what `dvc repro` runs) is conf/train.yaml composed, as `dvc exp run` writes it."""

from __future__ import annotations

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT


def test_committed_params_yaml_is_the_composed_default_config(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TOPO_CACHE_DIR", raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base=None):  # as DVC composes
        composed = compose("train")
    GlobalHydra.instance().clear()
    OmegaConf.resolve(composed)
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == OmegaConf.to_container(composed), (
        "params.yaml is stale: regenerate it with `dvc exp run` or the compose in this test"
    )


def test_spatial_multitask_pipeline_params_are_the_composed_experiment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TOPO_CACHE_DIR", raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base=None):
        composed = compose("train", overrides=["experiment=spatial_multitask"])
    GlobalHydra.instance().clear()
    OmegaConf.resolve(composed)
    path = ROOT / "pipelines" / "spatial_multitask" / "params.yaml"
    assert yaml.safe_load(path.read_text()) == OmegaConf.to_container(composed), (
        f"{path} is stale: regenerate it from conf/ (compose train experiment=spatial_multitask)"
    )
