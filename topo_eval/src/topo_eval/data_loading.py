"""Rebuild a run's data module from a config — the checkpoint's or the command line's —
through topo's own table of data modules, never by instantiating what a file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from topo_data.catalog import data_module_constructors
from topo_models.rebuild import build_from_config


def build_data_module(data: DictConfig | dict[str, Any], file: str | Path | None) -> Any:
    """The data module ``data`` describes (``file``: the checkpoint it came from, for errors)."""
    config = OmegaConf.to_container(data, resolve=True) if isinstance(data, DictConfig) else data
    return build_from_config(config, data_module_constructors(), file=file, field="data")
