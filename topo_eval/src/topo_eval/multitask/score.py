"""``score``: accuracy of every (sub-)network on every task — a tasks × networks table.

A modular network's sub-network for task t stays accurate on t and falls to chance on the
others; the diagonal against the full network's row says how much splitting costs, and each
column off the diagonal whether a task survives without its own neurons (both directions are
summed up by :mod:`topo_eval.multitask.specialisation`). Counts of
correct answers per task (``task_correct_counts``) make the accuracy exact for any number of
labels per task (the original hard-coded 10 in sequential mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from topo_models.spatial import task_correct_counts

FULL = "full"


@torch.no_grad()
def task_accuracies(
    model: nn.Module, data: Any, split: str = "val", device: str | torch.device = "cpu"
) -> np.ndarray:
    """``(tasks,)`` accuracy of ``model`` on each task over ``data.loader(split)``."""
    device = torch.device(device)
    model = model.to(device).eval()
    correct = counted = 0
    for inputs, targets in data.loader(split):
        c, n = task_correct_counts(model(inputs.to(device))[0], targets.to(device))
        correct, counted = correct + c.cpu(), counted + n.cpu()
    counted = np.asarray(counted, dtype=np.float64)
    return np.divide(
        np.asarray(correct, dtype=np.float64),
        counted,
        out=np.full_like(counted, np.nan),
        where=counted > 0,
    )


def score_networks(
    networks: Mapping[str, nn.Module],
    data: Any,
    split: str = "val",
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Rows: networks (``full`` and one sub-network per task); columns: task names."""
    names = [task.name for task in data.tasks]
    rows = {name: task_accuracies(net, data, split, device) for name, net in networks.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=names).rename_axis("network")


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per task: full-network accuracy, its own sub-network's, the others' mean, and the drop.

    Sub-network rows must be named after their task (as ``score_networks`` is given them).
    """
    rows = []
    for task in table.columns:
        others = [name for name in table.index if name not in (FULL, task)]
        own = float(table.loc[task, task]) if task in table.index else np.nan
        full = float(table.loc[FULL, task]) if FULL in table.index else np.nan
        rows.append(
            {
                "task": task,
                "full": full,
                "own_subnetwork": own,
                "other_subnetworks": float(table.loc[others, task].mean()) if others else np.nan,
                "accuracy_drop": full - own,
            }
        )
    return pd.DataFrame(rows)


def _cell(value: float) -> str:
    return "  –  " if np.isnan(value) else f"{value:5.2f}"


def accuracy_lines(table: pd.DataFrame, split: str) -> list[str]:
    """The tasks × networks table as text, both directions of every split on view."""
    width = max(len(str(name)) for name in table.index) + 2
    lines = [f"accuracy (rows: network, split at {split}; columns: task)"]
    lines.append(" " * (width + 2) + "  ".join(f"{str(t):>12}" for t in table.columns))
    for name, row in table.iterrows():
        cells = "  ".join(f"{_cell(float(v)):>12}" for v in row)
        lines.append(f"  {str(name):<{width}}{cells}")
    return lines


def score_metrics(
    table: pd.DataFrame, summary: pd.DataFrame, special: pd.DataFrame, separation: pd.DataFrame
) -> dict[str, float]:
    """The score stage's metrics from its tables (:func:`score_networks`, :func:`split_summary`
    with ``specialisation``, :mod:`~topo_eval.multitask.specialisation` rows and
    :func:`~topo_eval.multitask.separation.separation_table`). Headlines first (a task's
    summary names 8), then per task, sub-network and layer; MLflow keys use task indices
    (task names such as ``Digits[0:5]`` are not valid keys)."""
    configured = special.split.iloc[0]
    metrics = {}
    for network, prefix in (("run", ""), ("control", "control/")):
        rows = special[special.network == network]
        if not rows.empty:
            metrics[f"{prefix}specialisation_index"] = float(
                rows[rows.split == configured].split_index.iloc[0]
            )
    metrics["accuracy_before_split"] = float(summary.full.mean())
    metrics["accuracy_after_split"] = float(summary.own_subnetwork.mean())
    metrics["accuracy_other_subnetworks"] = float(summary.other_subnetworks.mean())
    for column, key in (
        ("silhouette", "separation_silhouette"),
        ("shuffled_mean", "separation_shuffled"),
    ):
        values = separation[column]
        metrics[key] = float(np.nanmean(values)) if values.notna().any() else float("nan")
    for t, value in enumerate(summary.specialisation):
        metrics[f"specialisation/task{t}"] = float(value)
    for s, name in enumerate(table.columns):  # sub-network s on every task t
        for t, task in enumerate(table.columns):
            metrics[f"accuracy/subnetwork{s}/task{t}"] = float(table.loc[name, task])
    for row in special.drop_duplicates(["network", "split"]).itertuples():
        if row.split != configured:
            prefix = "" if row.network == "run" else "control/"
            metrics[f"{prefix}specialisation_index/{row.split}"] = float(row.split_index)
    for row in separation.itertuples():
        metrics[f"silhouette/{row.layer}"] = float(row.silhouette)
    return metrics
