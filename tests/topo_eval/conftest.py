"""Compose ``python -m topo_eval``'s config as the CLI does: from the configs inside the package."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import topo_eval
from topo_eval.__main__ import USER_CONFIGS

EVAL_CONF = Path(topo_eval.__file__).parent / "conf"


def compose_eval(*overrides: str) -> DictConfig:
    """``conf/eval.yaml`` of the topo_eval package composed with ``overrides``."""
    GlobalHydra.instance().clear()
    try:
        with warnings.catch_warnings():  # no user configs in the test's working directory
            warnings.filterwarnings("ignore", message=f".*path={USER_CONFIGS} is not available")
            with initialize_config_dir(str(EVAL_CONF), version_base="1.3"):
                return compose("eval", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(name="compose_eval")
def compose_eval_fixture() -> Callable[..., DictConfig]:
    return compose_eval
