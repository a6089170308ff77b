"""train(cfg) on tiny data: outputs, tracking, determinism, resume checks and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException

from tests.conftest import tiny_overrides
from topo_models import TopoError
from topo_train import train


def losses(run_dir: Path) -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss/total"]) for r in map(json.loads, lines) if "loss/total" in r]


def test_training_writes_checkpoint_positions_figure_and_mlflow_run(
    tmp_path, compose_train, caplog, isolated_tracking
):
    caplog.set_level(logging.INFO)
    drawn = [o for o in tiny_overrides(tmp_path) if not o.startswith("trainer.figure_layers")]
    cfg = compose_train(drawn)  # the default figure layers
    metrics = train(cfg)
    run_dir = tmp_path / "run"
    assert {"loss/task", "loss/spatial", "spatial/layer2_0", "val/loss/total"} <= set(metrics)
    assert (run_dir / "last.pt").is_file() and (run_dir / "model.pt").is_file()
    assert sorted(p.stem for p in (run_dir / "positions").glob("*.npz"))[0] == "layer1.0"
    assert [step for step, _ in losses(run_dir)] == [1, 2, 3, 4]
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["step"] == 4
    client = mlflow.MlflowClient(isolated_tracking)
    run = client.get_run(state["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["loss.alpha"] == "0.25"
    assert run.data.params["model._target_"] == "topo_models.ResNet18Spatial"
    history = client.get_metric_history(run.info.run_id, "spatial/layer2_0")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert all(0.0 <= m.value <= 1.0 for m in history)  # relative SL lies in [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "figures", "positions", "checkpoint"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/responses_on_sheet.png", "figures/loss_curves.png"}
    assert (run_dir / "figures" / "loss_curves.png").is_file()
    summary = caplog.records[-1].getMessage()  # the run ends by saying what it made
    assert summary.startswith(f"run finished: {run_dir} (step 4)")
    assert f"MLflow run {run.info.run_id}" in summary
    assert summary.splitlines()[-1].strip() == (
        f"python -m topo_eval checkpoint={run_dir}/model.pt positions={run_dir}/positions"
    )


def test_ctrl_c_ends_the_mlflow_run_killed_and_keeps_the_last_checkpoint(
    tmp_path, compose_train, monkeypatch, isolated_tracking
):
    from topo_train.trainer import Trainer

    step = Trainer.train_step

    def interrupted_at_step_3(self, batch):
        if self.step == 2:  # after the checkpoint of step 2
            raise KeyboardInterrupt
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", interrupted_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train(tiny_overrides(tmp_path)))
    run_dir = tmp_path / "run"
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["step"] == 2 and not (run_dir / "model.pt").exists()
    assert not list(run_dir.glob(".*.tmp"))
    client = mlflow.MlflowClient(isolated_tracking)
    assert client.get_run(state["mlflow_run_id"]).info.status == "KILLED"


def test_same_seed_gives_the_same_loss_curve_and_another_seed_does_not(tmp_path, compose_train):
    curves = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = compose_train([*tiny_overrides(tmp_path, run), f"seed={seed}", "tracking=none"])
        train(cfg)
        curves.append(losses(tmp_path / run))
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_rerunning_a_finished_run_resumes_and_changes_nothing(tmp_path, compose_train):
    overrides = [*tiny_overrides(tmp_path), "tracking=none"]
    train(compose_train(overrides))
    before = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    train(compose_train(overrides))
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resume_refuses_a_changed_config_and_keeps_the_checkpoint(tmp_path, compose_train):
    overrides = [*tiny_overrides(tmp_path), "tracking=none"]
    train(compose_train(overrides))
    checkpoint = tmp_path / "run" / "last.pt"
    original = checkpoint.read_bytes()
    with pytest.raises(TopoError, match="loss.alpha"):
        train(compose_train([*overrides, "loss.alpha=0.5"]))
    assert checkpoint.read_bytes() == original


def test_on_config_change_restart_deletes_the_other_run_and_trains_anew(tmp_path, compose_train):
    """What the DVC stage asks for: changed params start over (the same run as a fresh run_dir
    gives), unchanged params resume; the run's own Hydra record and logs stay."""
    overrides = [*tiny_overrides(tmp_path), "tracking=none", "on_config_change=restart"]
    train(compose_train(overrides))
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / "topo_train.log").write_text("kept")
    (tmp_path / "run" / "stray.txt").write_text("the other run's file")
    train(compose_train([*overrides, "loss.alpha=0.5"]))
    assert not (tmp_path / "run" / "stray.txt").exists()
    assert (tmp_path / "run" / "topo_train.log").read_text() == "kept"
    assert (tmp_path / "run" / ".hydra").is_dir()
    fresh = tmp_path / "fresh"
    train(compose_train([*overrides, "loss.alpha=0.5", f"run_dir={fresh}"]))
    assert losses(tmp_path / "run") == losses(fresh)
    restarted = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    train(compose_train([*overrides, "loss.alpha=0.5"]))  # same config: resumes, changes nothing
    again = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(restarted[k], again[k]) for k in restarted)
    with pytest.raises(TopoError, match="on_config_change"):
        train(compose_train([*overrides[:-1], "on_config_change=sometimes"]))


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, compose_train):
    overrides = [*tiny_overrides(tmp_path), "tracking=none"]
    train(compose_train(overrides))
    run_dir = tmp_path / "run"
    reference = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    damaged = (run_dir / "last.pt").read_bytes()[:1000]
    (run_dir / "last.pt").write_bytes(damaged)
    train(compose_train(overrides))  # resumes at step 2 from last.prev.pt, redoes 3 and 4
    assert (run_dir / "last.pt.damaged").read_bytes() == damaged  # kept, out of the rotation
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["step"] == 4
    assert all(torch.equal(reference[k], state["model"][k]) for k in reference)
    assert [step for step, _ in losses(run_dir)] == [1, 2, 3, 4]


def test_damaged_checkpoints_with_no_intact_one_are_reported_and_kept(tmp_path, compose_train):
    overrides = [*tiny_overrides(tmp_path), "tracking=none"]
    train(compose_train(overrides))
    checkpoint = tmp_path / "run" / "last.pt"
    (tmp_path / "run" / "last.prev.pt").unlink()
    damaged = checkpoint.read_bytes()[:1000]
    checkpoint.write_bytes(damaged)
    with pytest.raises(TopoError, match="truncated, corrupt") as error:
        train(compose_train(overrides))
    assert str(checkpoint) in str(error.value) and "no last.prev.pt" in str(error.value)
    assert checkpoint.read_bytes() == damaged


def test_a_kill_between_position_layers_leaves_a_directory_that_rebuilds(
    tmp_path, compose_train, monkeypatch
):
    from topo_models.positions import LayerPositions

    overrides = [*tiny_overrides(tmp_path), "tracking=none", "trainer.max_steps=1"]
    positions = tmp_path / "run" / "positions"
    save = LayerPositions.save
    written: list[str] = []

    def killed_after_two_layers(self, directory):
        if len(written) == 2:
            raise KeyboardInterrupt  # stands for the kill: nothing after it runs
        written.append(self.name)
        return save(self, directory)

    monkeypatch.setattr(LayerPositions, "save", killed_after_two_layers)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train(overrides))
    monkeypatch.undo()
    assert not positions.exists()  # only the temp directory holds the two layers
    train(compose_train(overrides))
    assert len(list(positions.glob("*.npz"))) == 8
    assert not list((tmp_path / "run").glob(".*.tmp"))
    # a directory an older topo left half-written (one layer) is rebuilt, not trusted
    for path in sorted(positions.glob("*.npz"))[1:]:
        path.unlink()
    (tmp_path / "run" / "last.pt").unlink()
    (tmp_path / "run" / "last.prev.pt").unlink(missing_ok=True)
    train(compose_train(overrides))
    assert len(list(positions.glob("*.npz"))) == 8


def test_unknown_layer_in_layer_weights_lists_the_real_layers(tmp_path, compose_train):
    cfg = compose_train(
        [*tiny_overrides(tmp_path), "tracking=none", "+loss.layer_weights.layer5_0=1.0"]
    )
    with pytest.raises(InstantiationException) as error:
        train(cfg)
    cause = error.value.__cause__
    assert isinstance(cause, TopoError)
    assert "loss.layer_weights.layer5_0" in str(cause) and "layer4_1" in str(cause)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_negative_alpha_is_refused(tmp_path, compose_train):
    cfg = compose_train([*tiny_overrides(tmp_path), "tracking=none", "loss.alpha=-0.1"])
    with pytest.raises(InstantiationException) as error:
        train(cfg)
    assert isinstance(error.value.__cause__, TopoError)
    assert "loss.alpha" in str(error.value.__cause__)


def test_positions_of_another_input_size_are_refused(tmp_path, compose_train):
    make = compose_train([*tiny_overrides(tmp_path, "pos"), "task=positions", "data.image_size=64"])
    from topo_train.train import make_positions

    make_positions(make)
    cfg = compose_train(
        [*tiny_overrides(tmp_path), "tracking=none", f"positions_dir={tmp_path / 'pos'}"]
    )
    with pytest.raises(TopoError, match="layer1.0") as error:
        train(cfg)
    assert "(64, 8, 8)" in str(error.value) and "(64, 16, 16)" in str(error.value)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_config_key_typos_fail(tmp_path, compose_train):
    with pytest.raises(ConfigCompositionException):
        compose_train([*tiny_overrides(tmp_path), "loss.alhpa=0.3"])
    cfg = compose_train([*tiny_overrides(tmp_path), "tracking=none", "+loss.alhpa=0.3"])
    with pytest.raises(InstantiationException, match="alhpa"):
        train(cfg)


def test_supervised_run_builds_a_classifier_for_the_data_classes(tmp_path, compose_train):
    cfg = compose_train([*tiny_overrides(tmp_path), "tracking=none", "loss=spatial_supervised"])
    metrics = train(cfg)
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["model_config"]["head"] == "classifier"
    assert saved["model_config"]["num_classes"] == 10
    assert saved["model"]["fc.weight"].shape == (10, 512)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_positions_from_a_directory_train_and_keep_their_coordinates(tmp_path, compose_train):
    from topo_models.positions import NetworkPositions
    from topo_train.train import make_positions

    make_positions(
        compose_train([*tiny_overrides(tmp_path, "pos"), "task=positions", "positions=uniform"])
    )

    def without_layout(run: str) -> list[str]:
        return [o for o in tiny_overrides(tmp_path, run) if not o.startswith("positions.")]

    cfg = compose_train(
        [
            *without_layout("run"),
            "tracking=none",
            "positions=from_dir",
            f"positions.directory={tmp_path / 'pos'}",
            "positions.scale=training",
        ]
    )
    train(cfg)
    source = NetworkPositions.load(tmp_path / "pos")
    used = NetworkPositions.load(tmp_path / "run" / "positions")
    assert used.scale == "training"
    for name in source:
        assert (used[name].coordinates == source[name].coordinates).all()
    wrong = compose_train(
        [
            *without_layout("other"),
            "tracking=none",
            "positions=from_dir",
            f"positions.directory={tmp_path / 'pos'}",
            "positions.scale=human",
        ]
    )
    with pytest.raises(TopoError, match="another scale"):
        train(wrong)
