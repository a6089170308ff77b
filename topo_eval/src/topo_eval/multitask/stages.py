"""The spatial multi-task workflow as ``python -m topo_eval`` tasks (and DVC stages):

``record`` (activity.npz) → ``split`` (assignment.csv/.npz, task<t>.pt) → ``score``
(score.csv, score_summary.csv, specialisation.csv, separation.csv, figures/score.png) →
``plot`` (figures/positions_by_task.png, figures/strength_task<t>.png); ``multitask`` runs all
four into one directory, ``multitask_sweep`` splits and scores every run of a training sweep.
Each stage reads the trained ``model.pt`` (``checkpoint=``) and, unless ``data=`` is given,
the data it was trained on (from the checkpoint's config). Every ``run_<stage>(cfg,
output_dir)`` returns (its table's path, headline metrics for MLflow), as ``python -m
topo_eval`` calls a task (``conf/task/<stage>.yaml`` names it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from topo_eval.data_loading import build_data_module
from topo_eval.figure_files import write_figure
from topo_eval.model_loading import load_trained_model
from topo_eval.multitask.figures import (
    plot_positions_by_task,
    plot_score_table,
    plot_sweep,
    plot_task_strength,
)
from topo_eval.multitask.record import ActivityRecord, record_activity, task_strength
from topo_eval.multitask.score import (
    FULL,
    accuracy_lines,
    score_metrics,
    score_networks,
    split_summary,
)
from topo_eval.multitask.separation import separation_lines, separation_table
from topo_eval.multitask.specialisation import (
    chance_level,
    index_lines,
    specialisation_table,
    task_specialisation,
)
from topo_eval.multitask.split import TaskAssignment, split_network
from topo_models import TopoError
from topo_models.atomic import atomic_write, atomic_write_bytes
from topo_models.safe_load import read_torch_file

log = logging.getLogger("topo_eval")

STAGES = ("record", "split", "score", "plot")


@dataclass
class MultiTaskRun:
    """A trained spatial multi-task network with the data it is evaluated on."""

    checkpoint: Path
    model: nn.Module
    data: Any
    saved: dict[str, Any]  # the checkpoint's contents (model_config, config_yaml …)

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.data.tasks]

    def positions(self) -> dict[str, np.ndarray]:
        """Every spatial layer's learned positions ``(neurons, dim)``."""
        return {
            name: layer.positions.detach().cpu().numpy()
            for name, layer in self.model.spatial_layers().items()
        }


def load_run(checkpoint: str | Path, data: DictConfig | None = None) -> MultiTaskRun:
    """The model of ``checkpoint`` and its data (the training config's ``data`` unless given)."""
    checkpoint = Path(checkpoint)
    model = load_trained_model(checkpoint)
    if not hasattr(model, "spatial_layers"):
        raise TopoError(
            "not a spatial multi-task network",
            file=checkpoint,
            field="model_config._target_",
            expected="topo_models.spatial.SpatialMLP | SpatialCNN",
            found=type(model).__name__,
        )
    saved = read_torch_file(checkpoint)
    if data is None:
        data = OmegaConf.select(OmegaConf.create(saved.get("config_yaml", "{}")), "data")
    if data is None:
        raise TopoError(
            "the checkpoint does not say which data it was trained on; pass data=…",
            file=checkpoint,
            field="data",
        )
    return MultiTaskRun(checkpoint, model, build_data_module(data, file=checkpoint), saved)


def _options(cfg: DictConfig) -> DictConfig:
    return cfg.get("multitask") or OmegaConf.create({})


def run_record(
    cfg: DictConfig, output_dir: Path, run: MultiTaskRun | None = None
) -> tuple[Path, dict[str, float]]:
    """Per-task activity of every spatial layer → ``activity.npz``."""
    run = run or load_run(cfg.checkpoint, cfg.get("data"))
    options = _options(cfg)
    record = record_activity(
        run.model,
        run.data,
        split=options.get("split", "val"),
        reduction=options.get("reduction", "mean"),
        device=cfg.get("device", "cpu"),
    )
    path = record.save(output_dir)
    log.info("recorded %s activity of %d layers → %s", record.reduction, len(record.layers), path)
    return path, {}


def _save_model(payload: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda stream: torch.save(payload, stream))


def assignment_table(run: MultiTaskRun, assignment: TaskAssignment) -> pd.DataFrame:
    """One row per neuron: layer, neuron, task, task name and its position coordinates."""
    frames = []
    for name, where in run.positions().items():
        frame = pd.DataFrame(where, columns=[f"p{axis}" for axis in range(where.shape[1])])
        frame.insert(0, "task_name", np.asarray(run.task_names)[assignment.tasks[name]])
        frame.insert(0, "task", assignment.tasks[name])
        frame.insert(0, "neuron", np.arange(len(where)))
        frame.insert(0, "layer", name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def run_split(
    cfg: DictConfig, output_dir: Path, run: MultiTaskRun | None = None
) -> tuple[Path, dict[str, float]]:
    """Assignment and per-task sub-networks → ``assignment.{npz,csv}``, ``task<t>.pt``."""
    run = run or load_run(cfg.checkpoint, cfg.get("data"))
    options = _options(cfg)
    where, split = options.get("where"), _split_options(cfg)
    networks, assignment, masks = split_network(
        run.model,
        run.data.n_tasks,
        where=where if where is None or isinstance(where, str) else list(where),
        **split,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    assignment.save(output_dir)
    for index, (network, keep) in enumerate(zip(networks, masks, strict=True)):
        _save_model(
            {
                "model": network.state_dict(),
                "model_config": run.saved["model_config"],
                "config_yaml": run.saved.get("config_yaml", ""),
                "task": index,
                "task_name": run.task_names[index],
                "method": split["method"],
                "kept": {name: torch.as_tensor(mask) for name, mask in keep.items()},
            },
            output_dir / f"task{index}.pt",
        )
    table_path = output_dir / "assignment.csv"
    table = assignment_table(run, assignment)
    atomic_write_bytes(table.to_csv(index=False).encode(), table_path)
    log.info("split into %d sub-networks (%s) → %s", len(networks), split["method"], output_dir)
    return table_path, {}


def _split_dir(cfg: DictConfig, output_dir: Path) -> Path:
    given = _options(cfg).get("split_dir")
    return Path(given) if given else output_dir


def _subnetworks(run: MultiTaskRun, split_dir: Path) -> tuple[dict[str, nn.Module], list[str]]:
    """The full network and the split stage's sub-networks by task name; the layers masked."""
    networks: dict[str, nn.Module] = {FULL: run.model}
    for index, name in enumerate(run.task_names):
        path = split_dir / f"task{index}.pt"
        if not path.is_file():
            raise TopoError(
                "a sub-network is missing; run the split stage first",
                file=path,
                field="multitask.split_dir",
            )
        networks[name] = load_trained_model(path)
    return networks, list(read_torch_file(split_dir / "task0.pt").get("kept", {}))


def load_control(checkpoint: str | Path, run: MultiTaskRun) -> nn.Module:
    """The non-spatial control (``multitask.control``: the model.pt of an α = β = 0 run),
    which must have the run's task heads: it is split and scored on the run's data."""
    model = load_trained_model(checkpoint)
    found = chance_level(model, run.data.n_tasks) if hasattr(model, "spatial_layers") else None
    if found != chance_level(run.model, run.data.n_tasks):
        raise TopoError(
            "the control is not a spatial network with this run's tasks and labels",
            file=checkpoint,
            field="multitask.control",
            expected="the model.pt of the same experiment with loss.proximity=0 loss.transport=0",
            found=type(model).__name__ if found is None else f"{round(1 / found)} labels",
        )
    return model


def _split_options(cfg: DictConfig) -> dict[str, Any]:
    options = _options(cfg)
    return {
        "method": options.get("method", "greedy"),
        "zero_bias": bool(options.get("zero_bias", True)),
        "seed": int(options.get("seed", 0)),
    }


def run_score(
    cfg: DictConfig, output_dir: Path, run: MultiTaskRun | None = None
) -> tuple[Path, dict[str, float]]:
    """Accuracy of the full network and every sub-network on every task, the specialisation
    index of the split and of each hidden layer masked alone (and of the control's), and the
    separation scores; the report is logged. Returns the table's path and the headline
    numbers (logged to MLflow as metrics)."""
    run = run or load_run(cfg.checkpoint, cfg.get("data"))
    options = _options(cfg)
    split_dir = _split_dir(cfg, output_dir)
    networks, where = _subnetworks(run, split_dir)
    split, device = options.get("split", "val"), cfg.get("device", "cpu")
    table = score_networks(networks, run.data, split, device)
    summary = split_summary(table)
    summary["specialisation"] = task_specialisation(
        summary, chance_level(run.model, run.data.n_tasks)
    )
    control = options.get("control")
    special = specialisation_table(
        run.model,
        run.data,
        table,
        where,
        control=load_control(control, run) if control else None,
        split=split,
        device=device,
        **_split_options(cfg),
    )
    separation = separation_table(
        run.positions(),
        TaskAssignment.load(split_dir).tasks,
        n_shuffles=int(options.get("n_shuffles", 200)),
        seed=int(options.get("seed", 0)),
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    table_path = output_dir / "score.csv"
    atomic_write_bytes(table.to_csv().encode(), table_path)
    atomic_write_bytes(summary.to_csv(index=False).encode(), output_dir / "score_summary.csv")
    atomic_write_bytes(special.to_csv(index=False).encode(), output_dir / "specialisation.csv")
    atomic_write_bytes(separation.to_csv(index=False).encode(), output_dir / "separation.csv")
    write_figure(plot_score_table(table), output_dir / "figures" / "score.png")
    report = [
        *accuracy_lines(table, "+".join(where)),
        *index_lines(special),
        *separation_lines(separation),
    ]
    log.info("%s", "\n".join(report))
    return table_path, score_metrics(table, summary, special, separation)


def run_plot(
    cfg: DictConfig, output_dir: Path, run: MultiTaskRun | None = None
) -> tuple[Path, dict[str, float]]:
    """Positions coloured by task; per-task strength at the positions (needs ``record``)."""
    run = run or load_run(cfg.checkpoint, cfg.get("data"))
    options = _options(cfg)
    positions = run.positions()
    split_dir = _split_dir(cfg, output_dir)
    assignment = TaskAssignment.load(split_dir)
    separation_path = Path(options.get("score_dir") or split_dir) / "separation.csv"
    separation = pd.read_csv(separation_path) if separation_path.is_file() else None
    figures = output_dir / "figures"
    path = figures / "positions_by_task.png"
    write_figure(
        plot_positions_by_task(positions, assignment.tasks, run.task_names, separation), path
    )
    record_dir = options.get("record_dir")
    if record_dir is not None or (output_dir / "activity.npz").is_file():
        record = ActivityRecord.load(record_dir or output_dir)
        strength = {name: task_strength(values) for name, values in record.layers.items()}
        for index, name in enumerate(record.task_names):
            write_figure(
                plot_task_strength(positions, strength, index, name),
                figures / f"strength_task{index}.png",
            )
    log.info("figures → %s", figures)
    return path, {}


def run_multitask(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """record → split → score → plot into ``output_dir/<stage>``; returns score's outputs.

    Without a task per sample (concatenate/mix) the record step and the strength figures are
    skipped, with a message; the other stages do not need them.
    """
    run = load_run(cfg.checkpoint, cfg.get("data"))
    dirs = {stage: output_dir / stage for stage in STAGES}
    options = OmegaConf.to_container(_options(cfg), resolve=True)
    if run.data.has_task_identity:
        run_record(cfg, dirs["record"], run)
        options["record_dir"] = str(dirs["record"])
    else:
        log.info("input mode %s has no task per sample: record skipped", run.data.input_mode)
    run_split(cfg, dirs["split"], run)
    options["split_dir"] = str(dirs["split"])
    staged = OmegaConf.merge(cfg, {"multitask": options})
    table_path, metrics = run_score(staged, dirs["score"], run)
    staged = OmegaConf.merge(staged, {"multitask": {"score_dir": str(dirs["score"])}})
    run_plot(staged, dirs["plot"], run)
    return table_path, metrics


def _run_strengths(saved: dict[str, Any]) -> dict[str, Any]:
    config = OmegaConf.create(saved.get("config_yaml", "{}"))
    loss = OmegaConf.select(config, "loss", default={}) or {}
    proximity = float(loss.get("proximity", 0.0) or 0.0)
    transport = float(loss.get("transport", 0.0) or 0.0)
    return {
        "proximity": proximity,
        "transport": transport,
        "norm": loss.get("norm"),
        "seed": OmegaConf.select(config, "seed"),
        "input_mode": OmegaConf.select(config, "data.input_mode"),
        "spatial": proximity > 0 or transport > 0,
    }


def run_sweep(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Split and score every ``model.pt`` under ``sweep_dir``; tabulate accuracy before and
    after the split and the specialisation index against the cost strengths (``sweep.csv``,
    ``figures/sweep.png``): the runs with both costs 0 are the non-spatial controls."""
    sweep_dir = cfg.get("sweep_dir")
    if not sweep_dir or not Path(sweep_dir).is_dir():
        raise TopoError(
            "no sweep directory",
            field="sweep_dir",
            expected="a directory of training runs",
            found=sweep_dir,
        )
    sweep_dir = Path(sweep_dir)
    checkpoints = sorted(
        path for path in sweep_dir.rglob("model.pt") if (path.parent / "metrics.jsonl").is_file()
    )
    if not checkpoints:
        raise TopoError(
            "no finished training runs in the sweep directory",
            file=sweep_dir,
            expected="<run>/model.pt beside <run>/metrics.jsonl",
        )
    rows = []
    for checkpoint in checkpoints:
        name = checkpoint.parent.relative_to(sweep_dir).as_posix()
        run = load_run(checkpoint)
        run_dir = output_dir / name
        split_cfg = OmegaConf.merge(cfg, {"multitask": {"split_dir": str(run_dir)}})
        run_split(split_cfg, run_dir, run)
        _, metrics = run_score(split_cfg, run_dir, run)
        rows.append({"run": name, **_run_strengths(run.saved), **_sweep_columns(metrics)})
    table = pd.DataFrame(rows).sort_values(["spatial", "proximity", "transport", "run"])
    path = output_dir / "sweep.csv"
    atomic_write_bytes(table.to_csv(index=False).encode(), path)
    write_figure(plot_sweep(table), output_dir / "figures" / "sweep.png")
    log.info("sweep of %d runs → %s\n%s", len(table), path, table.to_string(index=False))
    summary = {}
    for spatial, group in table.groupby("spatial"):
        label = "spatial" if spatial else "nonspatial"
        summary[f"{label}/accuracy_before_split"] = float(group.accuracy_before.mean())
        summary[f"{label}/accuracy_after_split"] = float(group.accuracy_after.mean())
        summary[f"{label}/specialisation_index"] = float(group.specialisation_index.mean())
    return path, summary


def _sweep_columns(metrics: dict[str, float]) -> dict[str, float]:
    return {
        "accuracy_before": metrics["accuracy_before_split"],
        "accuracy_after": metrics["accuracy_after_split"],
        "accuracy_drop": metrics["accuracy_before_split"] - metrics["accuracy_after_split"],
        "accuracy_other_subnetworks": metrics["accuracy_other_subnetworks"],
        "specialisation_index": metrics["specialisation_index"],
        "silhouette": metrics["separation_silhouette"],
        "silhouette_shuffled": metrics["separation_shuffled"],
    }
