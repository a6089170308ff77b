"""params.yaml (what `dvc repro` runs) is conf/train.yaml composed, as `dvc exp run` writes it."""

from __future__ import annotations

import shlex

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT
from topo_models.positions import PositionsFromDirectory


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


def stage_overrides(stage: str) -> list[str]:
    """The Hydra overrides of a topo_train stage of dvc.yaml, its vars filled in (paths of the
    run and of Hydra's log left out)."""
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {k: v for entry in pipeline.get("vars", []) for k, v in entry.items()}
    command = pipeline["stages"][stage]["cmd"]
    for name, values in variables.items():
        for key, value in values.items():
            command = command.replace(f"${{{name}.{key}}}", str(value))
    words = shlex.split(command)
    assert words[:7] == [
        "python",
        "-m",
        "topo_train",
        "--config-dir",
        ".",
        "--config-name",
        "params",
    ]
    return [w for w in words[7:] if not w.startswith(("hydra.", "run_dir="))]


@pytest.mark.parametrize("experiment", [None, "tdann_simclr"])
def test_the_pipelines_control_and_swap_compose_on_the_default_and_the_papers_params(
    experiment, tmp_path, monkeypatch
):
    """The control and swap stages rewrite params.yaml's loss and positions on their command
    lines; on the default and on experiment=tdann_simclr (the paper's chain) the control has no
    spatial term at all and the swap is a valid swapped layout on the positions stage's files."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base=None):
        params = compose("train", overrides=[f"experiment={experiment}"] if experiment else [])
    GlobalHydra.instance().clear()
    container = OmegaConf.to_container(params, resolve=True)
    container["hydra"] = {"searchpath": [f"file://{CONF}"]}  # the packaged groups, as in a run
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(container, sort_keys=False))
    composed = {}
    with initialize_config_dir(str(tmp_path), version_base=None):
        for stage in ("control", "swap"):
            composed[stage] = compose("params", overrides=stage_overrides(stage))
    GlobalHydra.instance().clear()
    control = composed["control"].loss
    assert control.alpha == 0 and "layer_weights" not in control and control.regularisers == []
    assert control.temperature == params.loss.temperature
    layout = composed["swap"].positions
    assert layout._target_ == "topo_train.sheet.swapped.SwappedLayout"
    assert layout.initial.directory == "dvc_runs/positions" and layout.seed == params.seed
    swapped = instantiate(layout)  # every key is an argument of the layout
    assert swapped.network == "dvc_runs/control/model.pt"
    assert isinstance(swapped.initial, PositionsFromDirectory)
