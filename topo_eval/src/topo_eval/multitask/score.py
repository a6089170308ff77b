"""``score``: accuracy of every (sub-)network on every task — a tasks × networks table.

A modular network's sub-network for task t stays accurate on t and falls to chance on the
others; the diagonal against the full network's row says how much splitting costs. Counts of
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
