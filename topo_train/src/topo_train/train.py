"""``train(cfg)``: build a run from a composed config and train it (apart from ``@hydra.main``).

Tests and scripts call this with a config from Hydra's compose API; ``python -m topo_train``
calls it from the CLI. The run directory (``cfg.run_dir``) holds everything a run writes:
positions, ``last.pt`` checkpoints, ``metrics.jsonl``, ``model.pt`` and figures. If it already
holds a checkpoint the run resumes from it — after checking the config has not changed.

The run knows no family: it builds the data module, the model, the run hooks and the
objective from their config groups and talks to them only through the contracts of
:mod:`topo_train.contracts`.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes
from topo_train.config_diff import config_differences
from topo_train.contracts import DataModule, RunHooks
from topo_train.loss_figure import FIGURE as LOSS_FIGURE
from topo_train.loss_figure import write_loss_figure
from topo_train.optimisers import parameter_groups
from topo_train.preemption import RequeueExit, deferred_requeue
from topo_train.run_checkpoints import atomic_torch_save, latest_checkpoint, remove_stale_temp_files
from topo_train.run_lock import RunDirectoryLock
from topo_train.run_summary import run_summary, shown_path
from topo_train.runtime import (
    close_distributed,
    export_submitit_environment,
    init_distributed,
    resolve_device,
    seed_everything,
    tune_cpu_allocator,
)
from topo_train.sheet.run_hooks import SheetRunHooks, write_positions
from topo_train.tracking import NullTracker
from topo_train.trainer import METRICS_FILE, Trainer

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
MLFLOW_RUN_FILE = "mlflow_run.json"


def model_config(model_cfg: DictConfig, data: DataModule) -> dict[str, Any]:
    """The model's config with the values the data decide filled into its null keys.

    Saved beside the weights so evaluation rebuilds the exact same module.
    """
    config = OmegaConf.to_container(model_cfg, resolve=True)
    for key, value in data.model_config_values().items():
        if key in config and config[key] is None:
            config[key] = value
    return config


def build_model(model_cfg: dict[str, Any], data: DataModule) -> nn.Module:
    """The model, given the data module's run-time constructor arguments (arrays, which are
    not config values)."""
    return instantiate(model_cfg, **data.model_kwargs())


def with_objective_requirements(cfg: DictConfig) -> DictConfig:
    """``cfg`` with what the objective declares it needs of the other groups
    (``requires``) filled into their null keys; a different value set there is refused."""
    objective = get_class(cfg.loss._target_)
    wired = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for group, values in objective.requires.items():
        for key, value in values.items():
            section = wired.get(group)
            if section is None or key not in section:
                raise TopoError(
                    f"{objective.__name__} needs {group}.{key}={value}, and this {group} "
                    "config has no such key",
                    field=f"{group}.{key}",
                    expected=value,
                    found=None if section is None else sorted(section),
                )
            if section[key] is None:
                section[key] = value
            elif section[key] != value:
                raise TopoError(
                    f"{objective.__name__} ({cfg.loss._target_}) trains with {group}.{key}="
                    f"{value}; leave it unset or choose another loss",
                    field=f"{group}.{key}",
                    expected=value,
                    found=section[key],
                )
    return wired


def run_hooks(cfg: DictConfig, settings: Any) -> list[RunHooks]:
    """The hooks of this run: units on a fixed sheet when ``positions`` is set."""
    if cfg.get("positions") is None:
        return []
    return [SheetRunHooks(cfg.positions, cfg.get("positions_dir"), settings.figure_layers)]


ON_CONFIG_CHANGE = ("refuse", "restart")
# What a restart keeps: the lock this process holds, and Hydra's record and log of this very run
# when run_dir is also Hydra's output directory.
_KEPT_ON_RESTART = (".topo.lock", ".hydra")


def _check_resume_config(
    run_dir: Path, config: dict[str, Any], on_change: str = "refuse"
) -> dict[str, Any] | None:
    """The checkpoint's saved state when resuming. A changed config is refused, or with
    ``on_change="restart"`` the earlier run's files are deleted and training starts anew."""
    if on_change not in ON_CONFIG_CHANGE:
        raise TopoError(
            "unknown policy for a changed config",
            field="on_config_change",
            expected=ON_CONFIG_CHANGE,
            found=on_change,
        )
    found = latest_checkpoint(run_dir)
    if found is None:
        return None
    path, state = found
    saved = OmegaConf.to_container(OmegaConf.create(state.get("config_yaml", "{}")))
    differences = config_differences(saved, config)
    if not differences:
        return state
    if on_change == "restart":
        log.warning(
            "%s holds a run of another config (%s): deleting it and starting anew "
            "(on_config_change=restart)",
            run_dir,
            ", ".join(differences[:5]),
        )
        for entry in run_dir.iterdir():
            if entry.name in _KEPT_ON_RESTART or entry.suffix == ".log":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return None
    raise TopoError(
        "this run directory holds a checkpoint of a different config; resuming would mix two "
        "experiments. Use another run_dir, move the checkpoint away to start over, or set "
        "on_config_change=restart to delete it",
        file=path,
        field=", ".join(differences[:10]),
        expected="the config the checkpoint was trained with",
        found="changed values",
    )


def make_positions(cfg: DictConfig) -> Path:
    """``task=positions``: write the positions of ``cfg.model`` at the data's input size to
    ``run_dir`` (one ``<layer>.npz`` each) — the positions stage of a pipeline."""
    if cfg.get("run_dir") in (None, ""):
        raise TopoError("no output directory", field="run_dir", expected="a path")
    cfg = with_objective_requirements(cfg)
    seed_everything(int(cfg.seed), deterministic=True)
    data = instantiate(cfg.data)
    model = build_model(model_config(cfg.model, data), data)
    return write_positions(cfg.get("positions"), model, data, Path(cfg.run_dir))


def train(cfg: DictConfig, run_name: str | None = None) -> dict[str, float]:
    """Train the run described by ``cfg`` (a composed ``conf/train.yaml``).

    Args:
        cfg: the composed config.
        run_name: the MLflow run's name (None: the run directory's name).

    Returns:
        The last logged metrics (training window averages and validation means).
    """
    if cfg.get("run_dir") in (None, "", "???"):
        raise TopoError("no run directory", field="run_dir", expected="a path for this run's files")
    run_dir = Path(cfg.run_dir)
    cfg = with_objective_requirements(cfg)
    export_submitit_environment()
    settings = instantiate(cfg.trainer)
    if settings.tune_allocator:
        tune_cpu_allocator()
    context = init_distributed(settings.device)
    try:
        with ExitStack() as held:
            if context.is_main:  # one process per run directory; it clears what a kill left
                held.enter_context(RunDirectoryLock(run_dir))
                remove_stale_temp_files(run_dir)
            held.enter_context(deferred_requeue())  # under submitit: checkpoint, then requeue
            return _train(cfg, run_dir, settings, context, run_name or run_dir.name or "run")
    finally:
        close_distributed(context)


def _train(
    cfg: DictConfig, run_dir: Path, settings: Any, context: Any, run_name: str
) -> dict[str, float]:
    """The body of :func:`train`, run by rank 0 while it holds the run directory."""
    device = resolve_device(settings.device, context.local_rank)
    config = OmegaConf.to_container(cfg, resolve=True)
    previous = (
        _check_resume_config(run_dir, config, str(cfg.get("on_config_change", "refuse")))
        if context.is_main
        else None
    )
    seed_everything(int(cfg.seed), settings.deterministic)

    # Rank 0 first: data modules may write caches (the embedded folder) that replicas then read.
    if context.is_main:
        data = instantiate(cfg.data, **_rank_args(context))
    context.barrier()
    if not context.is_main:
        data = instantiate(cfg.data, **_rank_args(context))
    model_cfg = model_config(cfg.model, data)
    model = build_model(model_cfg, data)
    hooks = run_hooks(cfg, settings)
    objective_kwargs = dict(data.objective_kwargs())
    for hook in hooks:
        objective_kwargs.update(hook.start(model, data, run_dir, context))
    objective = instantiate(cfg.loss, **objective_kwargs)
    objective.check_model(model)
    model.to(device)
    objective.to(device)
    if context.enabled:
        if settings.sync_batchnorm and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        log.info("distributed: rank %d of %d on %s", context.rank, context.world_size, device)
    optimizer = instantiate(cfg.optim)(
        parameter_groups(model, not settings.no_weight_decay_on_norm, objective)
    )
    scheduler = instantiate(cfg.sched)(optimizer)
    tracker = instantiate(cfg.tracking) if context.is_main else NullTracker()
    config_yaml = OmegaConf.to_yaml(OmegaConf.create(config))
    trainer = Trainer(
        settings,
        model,
        objective,
        data,
        optimizer,
        scheduler,
        tracker,
        run_dir,
        device,
        context,
        checkpoint_extra=lambda: {"config_yaml": config_yaml, "mlflow_run_id": tracker.run_id},
    )
    resumed = trainer.resume_if_possible(previous)  # rank 0 read it already, for the config check
    run_id = _previous_run_id(run_dir) or (resumed or {}).get("mlflow_run_id")
    tracker.start(config, run_name=run_name, run_id=run_id)
    if context.is_main and tracker.run_id is not None and tracker.run_id != run_id:
        # before the first step: a run killed before its first checkpoint continues this one
        record = {"run_id": tracker.run_id}
        atomic_write_bytes(json.dumps(record).encode(), run_dir / MLFLOW_RUN_FILE)
    status = "FAILED"
    try:
        metrics = trainer.fit()
        if context.is_main:
            _finish(trainer, hooks, data, run_dir, tracker, config_yaml, model_cfg)
        status = "FINISHED"
    except RequeueExit:  # SLURM's timeout/preemption: checkpointed, the job is requeued
        status = "SCHEDULED"
        raise
    except KeyboardInterrupt:  # Ctrl-C: the run stops where its last checkpoint is
        status = "KILLED"
        raise
    finally:
        tracker.end(status)
    if context.is_main:
        shown = shown_path(run_dir)
        command = objective.evaluation_command(shown)
        log.info("%s", run_summary(shown, metrics, tracker.tracking_uri, tracker.run_id, command))
    return metrics


def _previous_run_id(run_dir: Path) -> str | None:
    """The tracking run an earlier attempt in ``run_dir`` opened, if any."""
    path = run_dir / MLFLOW_RUN_FILE
    if not path.is_file():
        return None
    try:
        run_id = json.loads(path.read_text()).get("run_id")
    except (ValueError, AttributeError):
        log.warning("ignoring unreadable %s", path)
        return None
    return run_id if isinstance(run_id, str) else None


def _rank_args(context) -> dict[str, int]:
    if not context.enabled:
        return {}
    return {"rank": context.rank, "world_size": context.world_size}


def _finish(
    trainer: Trainer,
    hooks: list[RunHooks],
    data: DataModule,
    run_dir: Path,
    tracker,
    config_yaml: str,
    model_cfg: dict[str, Any],
) -> None:
    """Write the final weights, then let the objective and the hooks finish; draw the loss
    curves; log artifacts."""
    model_path = run_dir / MODEL_FILE
    atomic_torch_save(
        {
            "model": trainer.bare_model.state_dict(),
            "model_config": model_cfg,
            "config_yaml": config_yaml,
        },
        model_path,
    )
    trainer.objective.finish(trainer.bare_model, data, run_dir, tracker)
    for hook in hooks:
        hook.finish(trainer.bare_model, data, run_dir, tracker)
    curves = write_loss_figure(run_dir / METRICS_FILE, run_dir / LOSS_FIGURE)
    if curves is not None:
        tracker.log_artifact(curves, "figures")
    if tracker.log_checkpoint:
        tracker.log_artifact(model_path, "checkpoint")
