"""Nothing read from a file chooses what is imported or called.

Every entry point that turns a file's contents into objects gets the same payload — a config
whose ``_target_`` is ``sympy.sympify`` (which ships with torch) with an argument that would
create a marker file — and must refuse it with a TopoError naming the file, the field and the
target, the marker never appearing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from topo_data.catalog import data_module_constructors
from topo_models import TopoError
from topo_models.registry import model_constructors
from topo_models.retina import cell_ln
from topo_models.spatial import SpatialMLP

ROOT = Path(__file__).resolve().parents[1]


def payload(marker: Path) -> dict:
    return {
        "_target_": "sympy.sympify",
        "_args_": [f"__import__('os').system('touch {marker}')"],
    }


def assert_refused(error: pytest.ExceptionInfo, file: Path, field: str, marker: Path) -> None:
    message = str(error.value)
    assert str(file) in message and field in message and "sympy.sympify" in message
    assert not marker.exists()


class Pwn:
    """Pickles as a call of os.system: what a malicious pickle or npy holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def spatial_checkpoint(path: Path, config_yaml: str = "{}") -> Path:
    config = {
        "_target_": "topo_models.spatial.SpatialMLP",
        "input_shape": [1, 4, 4],
        "n_tasks": 2,
        "labels": 2,
        "widths": [3],
    }
    model = SpatialMLP(input_shape=(1, 4, 4), n_tasks=2, labels=2, widths=[3])
    torch.save(
        {"model": model.state_dict(), "model_config": config, "config_yaml": config_yaml}, path
    )
    return path


def test_a_model_config_naming_a_foreign_target_is_refused_by_every_model_loader(tmp_path):
    from topo_eval.model_loading import load_trained_model
    from topo_train.sheet.swapped import load_network

    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "model_config": payload(marker)}, path)
    for load in (load_trained_model, load_network):
        with pytest.raises(TopoError, match="refused") as error:
            load(path)
        assert_refused(error, path, "model_config._target_", marker)


def test_special_keys_nested_targets_and_objects_are_refused(tmp_path):
    from topo_models.rebuild import build_from_config

    built = []
    allowed = {"ok": lambda **kw: built.append(kw)}
    for config, field in (
        ({"_target_": "ok", "_args_": [1]}, "m._args_"),
        ({"_target_": "ok", "_partial_": True}, "m._partial_"),
        ({"_target_": "ok", "a": {"_target_": "os.system"}}, "m.a._target_"),
        ({"_target_": "ok", "a": [{"b": object()}]}, "m.a[0].b"),
    ):
        with pytest.raises(TopoError, match="refused") as error:
            build_from_config(config, allowed, file=tmp_path / "f.pt", field="m")
        assert field in str(error.value)
    assert built == []  # nothing constructed
    build_from_config({"_target_": "ok", "a": [1, {"b": None}]}, allowed, file=None, field="m")
    assert built == [{"a": [1, {"b": None}]}]


@pytest.mark.parametrize(
    ("group", "table"), [("model", model_constructors), ("data", data_module_constructors)]
)
def test_every_shipped_config_target_is_in_the_allowlist(group, table):
    targets = {yaml.safe_load(f.read_text())["_target_"] for f in (ROOT / "conf" / group).glob("*")}
    assert targets <= set(table())


def test_a_checkpoint_naming_a_data_module_by_its_old_path_still_rebuilds_it(tmp_path):
    """Checkpoints saved before topo_data's family folders name the modules' old paths."""
    from topo_data.retina import RetinaResponseData
    from topo_data.retina.responses import write_recording
    from topo_eval.data_loading import build_data_module, with_training_data

    table = data_module_constructors()
    old = "topo_data.retina_responses.RetinaResponseData"
    assert table[old] is table["topo_data.retina.RetinaResponseData"] is RetinaResponseData
    rng = np.random.default_rng(0)
    arrays = {
        "stimulus": rng.random((60, 3, 3)).astype(np.float32),
        "responses": rng.poisson(0.5, (60, 2)).astype(np.float32),
    }
    data = {"_target_": old, "path": str(write_recording(arrays, tmp_path / "rec.npz"))}
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "config_yaml": yaml.safe_dump({"data": {**data, "window": 10}})}, path)
    cfg = with_training_data(OmegaConf.create({"checkpoint": str(path), "data": None}))
    assert isinstance(build_data_module(cfg.data, file=path), RetinaResponseData)


def test_multitask_stages_refuse_a_foreign_data_target_from_the_checkpoint(tmp_path):
    from topo_eval.multitask.stages import load_run, run_sweep

    marker = tmp_path / "pwned"
    run = tmp_path / "sweep" / "a"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    path = spatial_checkpoint(run / "model.pt", yaml.safe_dump({"data": payload(marker)}))
    with pytest.raises(TopoError, match="refused") as error:
        load_run(path)
    assert_refused(error, path, "data._target_", marker)
    cfg = OmegaConf.create({"sweep_dir": str(tmp_path / "sweep"), "multitask": {}})
    with pytest.raises(TopoError, match="refused") as error:  # the sweep's records
        run_sweep(cfg, tmp_path / "out")
    assert_refused(error, path, "data._target_", marker)


def test_retina_fit_report_refuses_a_foreign_data_target_from_the_checkpoint(tmp_path):
    from topo_eval.__main__ import with_training_data
    from topo_eval.retina_fit_report import run_retina_fit

    marker = tmp_path / "pwned"
    config = {"_target_": "topo_models.retina.cell_ln", "frames": 2, "height": 3, "width": 3}
    config["cells"] = 1
    model = cell_ln(frames=2, height=3, width=3, cells=1)
    path = tmp_path / "model.pt"
    config_yaml = yaml.safe_dump({"data": payload(marker)})
    torch.save(
        {"model": model.state_dict(), "model_config": config, "config_yaml": config_yaml}, path
    )
    cfg = with_training_data(OmegaConf.create({"checkpoint": str(path), "data": None}))
    with pytest.raises(TopoError, match="refused") as error:
        run_retina_fit(cfg, tmp_path / "eval")
    assert_refused(error, path, "data._target_", marker)


def test_predictive_task_refuses_a_foreign_data_target_from_the_checkpoint(tmp_path):
    from topo_eval.predictive_task import predictive_loaders

    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    with pytest.raises(TopoError, match="refused") as error:
        predictive_loaders(OmegaConf.create(payload(marker)), ["test"], path)
    assert_refused(error, path, "data._target_", marker)


def test_a_checkpoint_holding_a_foreign_global_is_refused_as_such(tmp_path):
    from topo_train.run_checkpoints import latest_checkpoint

    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"format": "topo-checkpoint-v1", "x": Pwn(marker)}, run_dir / "last.pt")
    with pytest.raises(TopoError) as error:
        latest_checkpoint(run_dir)
    message = str(error.value)
    assert "foreign global" in message and "posix.system" in message
    assert "corrupt" not in message.splitlines()[0]
    assert not marker.exists()


def test_positions_and_sensorium_meta_never_unpickle(tmp_path):
    from topo_data.sensorium.safe_npy import load_npy
    from topo_models.positions import NetworkPositions

    marker = tmp_path / "pwned"
    positions = tmp_path / "positions"
    positions.mkdir()
    objects = np.array([Pwn(marker)], dtype=object)
    np.savez(positions / "layer1.0.npz", name="layer1.0", coordinates=objects)
    with pytest.raises(TopoError):
        NetworkPositions.load(positions)
    np.save(tmp_path / "meta.npy", objects, allow_pickle=True)
    with pytest.raises(ValueError):  # TopoDataError
        load_npy(tmp_path / "meta.npy", "meta")
    assert not marker.exists()


def test_retina_parameter_files_hold_numbers_only(tmp_path):
    from topo_models.retina import Retina

    marker = tmp_path / "pwned"
    retina = Retina(spikes=False)
    path = retina.save_parameters(tmp_path / "retina.json")
    saved = json.loads(path.read_text())
    for key, value in (
        ("parameters", {"opl.tau_center": payload(marker)}),
        ("resolution", payload(marker)),
    ):
        (tmp_path / "bad.json").write_text(json.dumps({**saved, key: value}))
        with pytest.raises(TopoError, match="not a retina parameter file"):
            retina.load_parameters(tmp_path / "bad.json")
    assert not marker.exists()
