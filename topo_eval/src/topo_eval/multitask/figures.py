"""Figures of a spatial multi-task network: where its neurons sit and which task they serve.

* ``plot_positions_by_task`` — the learned positions of every spatial layer (columns), coloured
  by assigned task: the picture the SpatialNetworks paper shows and its code never drew.
* ``plot_task_strength`` — one figure per task: each neuron at its position, coloured by its
  task-specific strength ``max(0, a_t − max_{t'≠t} a_t')`` (the original drew these in index
  order, which hides the spatial layout).
* ``plot_score_table`` — the tasks × networks accuracy heatmap of the score step.
* ``plot_sweep`` — accuracy before vs after splitting across a strength sweep.
Positions with more than two dimensions are drawn in their first two; one-dimensional ones
against the neuron index.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TASK_COLOURS = plt.get_cmap("tab10")


def _xy(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, str]:
    positions = np.asarray(positions)
    if positions.shape[1] == 1:
        return np.arange(len(positions)), positions[:, 0], "neuron", "position"
    return positions[:, 0], positions[:, 1], "x", "y"


def _columns(count: int) -> tuple[plt.Figure, np.ndarray]:
    figure, axes = plt.subplots(1, count, figsize=(3.4 * count, 3.6), squeeze=False)
    return figure, axes[0]


def plot_positions_by_task(
    positions: dict[str, np.ndarray],
    assignment: dict[str, np.ndarray],
    task_names: list[str],
    separation: pd.DataFrame | None = None,
) -> plt.Figure:
    """Layers as columns, neurons at their learned positions, coloured by assigned task."""
    figure, axes = _columns(len(positions))
    scores = (
        {}
        if separation is None
        else dict(zip(separation.layer, separation.silhouette, strict=True))
    )
    for axis, (name, where) in zip(axes, positions.items(), strict=True):
        x, y, xlabel, ylabel = _xy(where)
        for index, task in enumerate(task_names):
            chosen = assignment[name] == index
            axis.scatter(x[chosen], y[chosen], s=9, color=TASK_COLOURS(index % 10), label=task)
        title = name if name not in scores else f"{name}  (silhouette {scores[name]:.2f})"
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
    axes[0].legend(fontsize=7, loc="best", title="assigned task", title_fontsize=7)
    figure.suptitle("learned positions, coloured by the task each neuron is assigned to")
    figure.tight_layout()
    return figure


def plot_task_strength(
    positions: dict[str, np.ndarray], strength: dict[str, np.ndarray], task: int, task_name: str
) -> plt.Figure:
    """Layers as columns, neurons at their positions, coloured by their strength for ``task``."""
    figure, axes = _columns(len(positions))
    for axis, (name, where) in zip(axes, positions.items(), strict=True):
        x, y, xlabel, ylabel = _xy(where)
        values = strength[name][task]
        top = float(values.max()) if values.size and values.max() > 0 else 1.0
        dots = axis.scatter(x, y, c=values, s=9, cmap="viridis", vmin=0.0, vmax=top)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        figure.colorbar(dots, ax=axis, fraction=0.046)
    figure.suptitle(f"task-specific strength for {task_name}: max(0, a_t − max other a)")
    figure.tight_layout()
    return figure


def plot_score_table(table: pd.DataFrame) -> plt.Figure:
    """Heatmap of accuracies: rows networks, columns tasks, values printed in the cells."""
    values = table.to_numpy(dtype=np.float64)
    figure, axis = plt.subplots(figsize=(1.6 + 1.3 * values.shape[1], 1.2 + 0.6 * values.shape[0]))
    image = axis.imshow(values, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(values.shape[1]), table.columns, rotation=30, ha="right")
    axis.set_yticks(range(values.shape[0]), table.index)
    axis.set_xlabel("evaluated on task")
    axis.set_ylabel("network")
    for (row, column), value in np.ndenumerate(values):
        axis.text(
            column,
            row,
            f"{value:.2f}",
            ha="center",
            va="center",
            color="white" if value < 0.6 else "black",
            fontsize=8,
        )
    figure.colorbar(image, ax=axis, label="accuracy")
    axis.set_title("accuracy of the full network and each task's sub-network")
    figure.tight_layout()
    return figure


def plot_sweep(table: pd.DataFrame) -> plt.Figure:
    """Accuracy before (x) vs after (y) splitting, one dot per run; spatial vs non-spatial."""
    figure, axis = plt.subplots(figsize=(5.2, 4.6))
    for spatial, marker, label in ((True, "o", "spatial costs on"), (False, "s", "no costs")):
        rows = table[table.spatial == spatial]
        if rows.empty:
            continue
        axis.scatter(rows.accuracy_before, rows.accuracy_after, marker=marker, s=40, label=label)
        for _, row in rows.iterrows():
            axis.annotate(
                f"α={row.proximity:g}, β={row.transport:g}",
                (row.accuracy_before, row.accuracy_after),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("mean task accuracy, full network")
    axis.set_ylabel("mean task accuracy, own sub-network")
    axis.legend(fontsize=8)
    axis.set_title("what splitting costs")
    figure.tight_layout()
    return figure
