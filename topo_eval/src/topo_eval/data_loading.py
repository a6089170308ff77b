"""Rebuild a run's data module from a config — the checkpoint's or the command line's —
through topo's own table of data modules, never by instantiating what a file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from topo_data.catalog import data_module_constructors
from topo_models import TopoError
from topo_models.rebuild import build_from_config
from topo_models.safe_load import read_torch_file


def build_data_module(data: DictConfig | dict[str, Any], file: str | Path | None) -> Any:
    """The data module ``data`` describes (``file``: the checkpoint it came from, for errors)."""
    config = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else data
    return build_from_config(config, data_module_constructors(), file=file, field="data")


def with_training_data(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``data`` taken from the training run saved in the checkpoint when unset,
    so the model is scored on the sessions, neurons and inputs it was trained on."""
    if cfg.get("data") is not None:
        return cfg
    saved = read_torch_file(cfg.checkpoint)
    training = OmegaConf.create(saved.get("config_yaml", "{}") if isinstance(saved, dict) else "{}")
    if OmegaConf.select(training, "data") is None:
        raise TopoError(
            "the checkpoint does not say which data it was trained on; pass data=…",
            file=cfg.checkpoint,
            field="data",
            expected="a model.pt written by topo_train, or data.paths=[…] on the command line",
        )
    filled = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    filled.data = training.data
    return filled
