"""How cleanly a split separates the tasks, in both directions — this project's own index.

For a split into sub-networks ``S_1 … S_T`` (``S_s`` keeps only task s's neurons in the masked
layers), ``a(S, t)`` the accuracy of network S on task t, ``full`` the unsplit network and
``c = 1 / labels`` chance, the specialisation of task t is

    s_t = ( a(S_t, t) − mean_{s≠t} a(S_s, t) ) / ( a(full, t) − c )

the drop of task t when its own neurons are removed (``a(full, t) − a(S_other, t)``) minus its
drop when the others' are removed (``a(full, t) − a(S_t, t)``), in units of what the full
network does above chance: 1 when the own sub-network keeps the full accuracy and the others
fall to chance, 0 when every sub-network does task t equally well, negative when another
task's sub-network does it better. A split's **symmetric index** is ``min_t s_t``: a split is
as clean as its least separated task, so one clean for a single task scores near 0 however
clean that task is. Undefined (NaN) where the full network is not above chance on a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from topo_eval.multitask.score import FULL, score_networks, split_summary, task_accuracies
from topo_eval.multitask.split import spatial_layers, split_network

COLUMNS = (
    "network",
    "split",
    "task",
    "full",
    "own_subnetwork",
    "other_subnetworks",
    "specialisation",
    "split_index",
)


def task_specialisation(summary: pd.DataFrame, chance: float) -> np.ndarray:
    """``(tasks,)`` s_t from :func:`split_summary`'s rows (full, own and others' accuracy)."""
    full = summary.full.to_numpy(dtype=np.float64)
    above = full - chance
    gap = summary.own_subnetwork.to_numpy(np.float64) - summary.other_subnetworks.to_numpy(
        np.float64
    )
    return np.divide(gap, above, out=np.full_like(gap, np.nan), where=above > 0)


def symmetric_index(specialisation: Sequence[float] | np.ndarray) -> float:
    """``min_t s_t``; NaN if any task's value is undefined (or there are none)."""
    values = np.asarray(specialisation, dtype=np.float64)
    return float(values.min()) if values.size and not np.isnan(values).any() else float("nan")


def chance_level(model: nn.Module, n_tasks: int) -> float:
    """``1 / labels``, the labels per task read from the output layer (labels × tasks)."""
    output = list(spatial_layers(model).values())[-1]
    return n_tasks / output.weight.shape[0]


def specialisation_rows(
    table: pd.DataFrame, chance: float, network: str, split: str
) -> pd.DataFrame:
    """:data:`COLUMNS` for one split, from its tasks × networks accuracy table."""
    summary = split_summary(table)
    values = task_specialisation(summary, chance)
    rows = summary[["task", "full", "own_subnetwork", "other_subnetworks"]].copy()
    rows.insert(0, "split", split)
    rows.insert(0, "network", network)
    rows["specialisation"] = values
    rows["split_index"] = symmetric_index(values)
    return rows[list(COLUMNS)]


def layer_splits(model: nn.Module) -> dict[str, list[str]]:
    """Every hidden spatial layer masked alone (the output layer's split is given: its
    neurons are the task heads)."""
    return {name: [name] for name in list(spatial_layers(model))[:-1]}


def split_specialisation(
    model: nn.Module,
    data: Any,
    splits: Mapping[str, Sequence[str]],
    network: str,
    method: str = "greedy",
    zero_bias: bool = True,
    seed: int = 0,
    split: str = "val",
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """:data:`COLUMNS` for each named split of ``model`` (name → the layers masked), every
    sub-network scored on every task; the full network is scored once."""
    names = [task.name for task in data.tasks]
    full = task_accuracies(model, data, split, device)
    chance = chance_level(model, data.n_tasks)
    frames = []
    for name, where in splits.items():
        networks, _, _ = split_network(model, data.n_tasks, list(where), method, zero_bias, seed)
        table = score_networks(dict(zip(names, networks, strict=True)), data, split, device)
        table.loc[FULL] = full
        frames.append(specialisation_rows(table, chance, network, name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _cell(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.2f}"


def specialisation_table(
    model: nn.Module,
    data: Any,
    table: pd.DataFrame,
    where: Sequence[str],
    control: nn.Module | None = None,
    **split_options: Any,
) -> pd.DataFrame:
    """:data:`COLUMNS` of the split that made ``table`` (its ``where`` layers; network
    ``run``) and of every other hidden layer masked alone; the same splits of ``control``
    (network ``control``), all on ``data``. ``split_options``: of
    :func:`split_specialisation`."""
    configured = "+".join(where)
    layers = {k: v for k, v in layer_splits(model).items() if k != configured}
    chance = chance_level(model, data.n_tasks)
    frames = [
        specialisation_rows(table, chance, "run", configured),
        split_specialisation(model, data, layers, "run", **split_options),
    ]
    if control is not None:
        splits = {configured: list(where), **layers}
        frames.append(split_specialisation(control, data, splits, "control", **split_options))
    return pd.concat(frames, ignore_index=True)


def index_lines(rows: pd.DataFrame) -> list[str]:
    """Per split and network: the symmetric index, then each task's s_t."""
    lines = ["specialisation index min_t s_t (per task s_t): that split, then each hidden layer"]
    networks = list(dict.fromkeys(rows.network))
    width = max((len(str(split)) for split in rows.split), default=0) + 2
    for split, group in rows.groupby("split", sort=False):
        cells = []
        for network in networks:
            mine = group[group.network == network]
            if mine.empty:
                continue
            per_task = " / ".join(_cell(v) for v in mine.specialisation)
            cells.append(f"{network} {_cell(float(mine.split_index.iloc[0]))} ({per_task})")
        lines.append(f"  {split:<{width}}" + "   ".join(cells))
    return lines
