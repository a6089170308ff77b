"""Every config group option composes, maps onto its constructor, and presets hold their values."""

from __future__ import annotations

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import get_object, instantiate

from tests.conftest import CONF
from topo_train.train import with_objective_requirements

GROUPS = {
    group: sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    for group in (
        "model",
        "loss",
        "data",
        "positions",
        "optim",
        "sched",
        "trainer",
        "tracking",
        "experiment",
    )
}
TDANN_LOSSES = [
    loss for loss in GROUPS["loss"] if loss not in ("poisson", "spatial_costs", "retina_poisson")
]
# families whose units are not placed on a TDANN sheet (predictive neurons bring their cortical
# coordinates, spatial multi-task networks learn their positions)
PREDICTIVE_EXPERIMENTS = ("sensorium_baseline", "sensorium_ln", "sensorium_plus")
SHEETLESS_EXPERIMENTS = (*PREDICTIVE_EXPERIMENTS, "spatial_multitask", "retina_fit")


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g, options in GROUPS.items() for o in options]
)
def test_every_option_composes_and_names_a_real_target(compose_train, group, option):
    overrides = [f"{group}={option}"]
    cfg = compose_train(overrides)
    for name in ("model", "loss", "data", "positions", "optim", "sched", "trainer", "tracking"):
        if name == "positions" and cfg.positions is None:  # no TDANN sheet
            assert overrides[0] in {f"experiment={e}" for e in SHEETLESS_EXPERIMENTS}
            continue
        assert callable(get_object(cfg[name]._target_)), (name, cfg[name]._target_)


@pytest.mark.parametrize(
    ("group", "option"),
    [(g, o) for g, options in GROUPS.items() if g != "experiment" for o in options],
)
def test_every_group_file_configures_its_own_constructor_only(group, option):
    """One file, one constructor: a ``_target_`` and no ``@package _global_`` reaching into
    other groups (experiments are the one place that composes several)."""
    text = (CONF / group / f"{option}.yaml").read_text()
    assert "@package" not in text
    assert yaml.safe_load(text).get("_target_"), (group, option)


@pytest.mark.parametrize("loss", TDANN_LOSSES)
def test_loss_options_pick_their_head_and_views(compose_train, loss):
    """The objective declares its head and views; the loop fills them into null keys."""
    cfg = with_objective_requirements(compose_train([f"loss={loss}"]))
    simclr = "simclr" in loss
    assert cfg.model.head == ("projector" if simclr else "classifier")
    assert cfg.data.views == ("simclr" if simclr else "supervised")
    assert cfg.loss.alpha == (0.25 if loss.startswith("spatial") else 0.0)


def test_tdann_simclr_experiment_holds_the_papers_settings(compose_train):
    cfg = compose_train(["experiment=tdann_simclr", "data.train_dir=/data/train"])
    assert cfg.data.image_size == 224 and cfg.data.batch_size == 128
    assert cfg.optim.lr == 0.6 and cfg.optim.weight_decay == 1e-6 and not cfg.optim.nesterov
    assert cfg.sched._target_.endswith("CosineAnnealingLR") and cfg.sched.T_max == 500400
    assert cfg.loss.alpha == 0.25 and cfg.loss.temperature == 0.1
    assert all(w is None for w in cfg.loss.layer_weights.values())  # every layer takes alpha
    assert cfg.positions.jitter_mm == 0.3 and cfg.positions.scale == "training"


def test_trainer_and_optimiser_configs_instantiate(compose_train):
    import torch

    cfg = compose_train([])
    settings = instantiate(cfg.trainer)
    assert settings.max_steps == cfg.trainer.max_steps and settings.figure_layers[0] == "layer2.0"
    optimizer = instantiate(cfg.optim)([torch.nn.Parameter(torch.zeros(1))])
    scheduler = instantiate(cfg.sched)(optimizer)
    assert isinstance(optimizer, torch.optim.SGD) and scheduler.T_max == cfg.trainer.max_steps


def test_slurm_launcher_preset_runs_one_task_per_gpu():
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_4gpu"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 4 and launcher.tasks_per_node == 4
    assert launcher.max_num_timeout > 0  # requeued jobs resume from their run directory


@pytest.mark.parametrize("experiment", PREDICTIVE_EXPERIMENTS)
def test_sensorium_experiments_hold_the_published_training_settings(compose_train, experiment):
    cfg = compose_train([f"experiment={experiment}"])
    assert cfg.positions is None and cfg.data.scale == 0.25 and cfg.data.batch_size == 128
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 0.009
    sched = cfg.sched
    assert sched._target_.endswith("ReduceLROnPlateau") and sched.mode == "max"
    assert (sched.factor, sched.patience, sched.threshold, sched.min_lr) == (0.3, 5, 1e-6, 1e-4)
    assert sched.threshold_mode == "abs"
    stop = cfg.trainer.early_stopping
    assert (stop.metric, stop.mode, stop.patience, stop.rounds) == ("val/correlation", "max", 5, 4)
    assert cfg.trainer.max_epochs == 200 and cfg.trainer.max_steps is None
    assert cfg.trainer.val_every_epochs == 1 and cfg.trainer.grad_clip_norm is None
    assert cfg.loss._target_.endswith("PoissonObjective") and cfg.loss.scale_loss
    assert not cfg.loss.avg_loss
    expected_model = "sensorium_ln" if experiment.endswith("_ln") else "sensorium_cnn"
    assert cfg.model._target_.endswith(expected_model)
    plus = experiment == "sensorium_plus"
    assert cfg.model.shifter == plus and cfg.data.include_behavior == plus


def test_sensorium_plus_adds_behaviour_channels_and_the_eye_position(compose_train):
    cfg = compose_train(["experiment=sensorium_plus"])
    assert cfg.data.include_behavior and cfg.data.include_eye_position and cfg.model.shifter


def test_spatial_multitask_experiment_holds_the_published_hyper_parameters(compose_train):
    cfg = compose_train(["experiment=spatial_multitask"])
    assert cfg.model._target_.endswith("SpatialMLP") and list(cfg.model.widths) == [
        128,
        128,
        128,
        256,
    ]
    assert cfg.model.activation == "Sigmoid" and cfg.data.batch_size == 256
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 5e-3
    assert (cfg.loss.proximity, cfg.loss.transport, cfg.loss.norm) == (3.0, 1.0, "l1")
    assert cfg.positions is None and cfg.trainer.early_stopping.metric == "val/accuracy"


def test_a_head_the_objective_does_not_train_is_refused(compose_train):
    from topo_models import TopoError

    cfg = compose_train(["loss=supervised", "model.head=projector"])
    with pytest.raises(TopoError, match="model.head"):
        with_objective_requirements(cfg)
