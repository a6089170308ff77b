"""Run and sweep directory names: paste-safe as override values, stable, distinct, and old-style
directories still resumed."""

from __future__ import annotations

import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.conftest import CONF
from topo_train.run_names import (
    MAX_DIRNAME,
    legacy_dirname,
    override,
    resolve_dirname,
    run_dirname,
)
from topo_train.sweep import sweep_name, swept_keys, swept_overrides

OVERRIDES = [
    [],
    ["experiment=spatial_multitask"],
    ["experiment=sensorium_baseline", "trainer.max_epochs=2"],
    ["loss.alpha=-1", "optim.lr=1e-3"],
    ["loss.alpha=-1,0.5"],  # a sweep's values
    ["data.paths=[a/b,c d]", "+trainer.extra='x y'", "~loss.where"],
    [f"loss.layer_weights.layer{i}_0=0.25" for i in range(12)],  # too long for a file name
]


def parsed_value(line: str):
    """What Hydra's override parser makes of ``line`` (as topo_eval's command line would)."""
    return OverridesParser.create().parse_override(line).value()


@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: ",".join(o)[:40] or "none")
def test_run_names_paste_as_an_override_value_unquoted(overrides):
    name = run_dirname(overrides)
    assert re.fullmatch(r"[A-Za-z0-9_.+\-]+", name) and len(name) <= MAX_DIRNAME
    path = f"runs/topo_train/{name}/model.pt"
    assert parsed_value(f"checkpoint={path}") == path
    assert shlex.split(f"checkpoint={path}") == [f"checkpoint={path}"]  # nothing for the shell


def test_run_names_are_readable_and_stable():
    assert run_dirname([]) == "default"
    expected = "experiment-sensorium_baseline__trainer.max_epochs-2"
    assert run_dirname(["experiment=sensorium_baseline", "trainer.max_epochs=2"]) == expected
    assert run_dirname(["loss.alpha=-1,0.5"]) == "loss.alpha--1+0.5"
    # the resolver sees Hydra's override_dirname (sorted, joined with "," and "=")
    assert resolve_dirname("experiment=sensorium_baseline,trainer.max_epochs=2") == expected


def test_distinct_overrides_keep_distinct_names():
    names = {run_dirname(o) for o in OVERRIDES}
    assert len(names) == len(OVERRIDES)
    # characters dropped from a name are replaced by a hash of the overrides
    assert run_dirname(["data.paths=[a]"]) != run_dirname(["data.paths=(a)"])
    long = [f"loss.layer_weights.layer{i}_0=0.25" for i in range(12)]
    assert run_dirname(long) != run_dirname([*long[:-1], "loss.layer_weights.layer11_0=0.5"])


def test_an_old_style_run_directory_is_resumed_and_a_new_one_preferred(tmp_path):
    overrides = "experiment=sensorium_baseline,trainer.max_epochs=2"
    new, old = run_dirname(overrides.split(",")), legacy_dirname(overrides)
    assert resolve_dirname(overrides, str(tmp_path)) == new  # nothing yet: the new name
    (tmp_path / old).mkdir()
    assert resolve_dirname(overrides, str(tmp_path)) == old  # the old run resumes
    (tmp_path / new).mkdir()
    assert resolve_dirname(overrides, str(tmp_path)) == new


def test_the_composed_run_directory_resumes_an_old_style_one(tmp_path, monkeypatch):
    """hydra.run.dir as `python -m topo_train` resolves it, in the directory the user runs in
    (trainer.device is left out of names)."""
    monkeypatch.chdir(tmp_path)
    overrides = ["experiment=sensorium_baseline", "trainer.max_epochs=2", "trainer.device=cpu"]

    def run_dir() -> str:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        GlobalHydra.instance().clear()
        return cfg.hydra.run.dir

    assert run_dir() == "runs/topo_train/experiment-sensorium_baseline__trainer.max_epochs-2"
    (tmp_path / "runs/topo_train/experiment=sensorium_baseline,trainer.max_epochs=2").mkdir(
        parents=True
    )
    assert run_dir() == "runs/topo_train/experiment=sensorium_baseline,trainer.max_epochs=2"


def test_sweep_names_are_paste_safe_and_find_old_sweeps(tmp_path):
    overrides = ["loss.alpha=-1,0.5", "trainer.max_steps=1", "data.root=/data/x"]
    excluded = ["data.root"]
    assert sweep_name(overrides, excluded) == "loss.alpha--1+0.5__trainer.max_steps-1"
    (tmp_path / "loss.alpha=-1,0.5,trainer.max_steps=1").mkdir()
    assert sweep_name(overrides, excluded, tmp_path) == "loss.alpha=-1,0.5,trainer.max_steps=1"


def test_a_sweep_job_is_named_by_the_values_its_sweep_varies(monkeypatch):
    keys = swept_keys(["loss.alpha=-1,0.5", "trainer.max_steps=1", "seed=range(0,3)"])
    assert keys == ["loss.alpha", "seed"]
    monkeypatch.setenv("TOPO_SWEPT_KEYS", '["loss.alpha", "seed"]')
    job = ["loss.alpha=0.5", "seed=2", "trainer.max_steps=1"]
    assert swept_overrides(job) == ["loss.alpha=0.5", "seed=2"]


@pytest.mark.parametrize("path", ["runs/topo_train/default", "runs/a=b,c/x y", "it's/a=b"])
def test_override_quotes_only_what_the_parser_or_the_shell_would_read(path):
    line = override("checkpoint", path)
    [word] = shlex.split(line)
    assert parsed_value(word) == path
    assert (line == f"checkpoint={path}") == ("=" not in path and " " not in path)
