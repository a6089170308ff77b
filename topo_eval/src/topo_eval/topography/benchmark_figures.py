"""Figures of the regulariser benchmark: what each method buys in topography, and what it costs
in accuracy, at each strength."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from topo_eval.topography.figures import plot_orientation_map

MARKERS = {"weak": "o", "medium": "s", "strong": "^"}


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both x and y (higher is better), by x."""
    points = np.column_stack([x, y])
    finite = np.flatnonzero(np.isfinite(points).all(axis=1))
    inside = points[finite]
    beaten = (
        (inside[None, :, 0] >= inside[:, None, 0])
        & (inside[None, :, 1] >= inside[:, None, 1])
        & ((inside[None, :, 0] > inside[:, None, 0]) | (inside[None, :, 1] > inside[:, None, 1]))
    ).any(axis=1)
    front = finite[~beaten]
    return front[np.argsort(points[front, 0])]


def plot_pareto(table: pd.DataFrame, x: str, y: str) -> plt.Figure:
    """One point per run, coloured by method, shaped by strength; the front joined."""
    figure, axis = plt.subplots(figsize=(6.5, 4.8))
    colours = plt.get_cmap("tab10")
    for index, (method, rows) in enumerate(table.groupby("method", sort=True)):
        for row in rows.itertuples():
            axis.scatter(
                getattr(row, x) if x in rows else np.nan,
                rows.loc[row.Index, y],
                color=colours(index % 10),
                marker=MARKERS.get(str(row.level), "o") if method != "none" else "*",
                s=110 if method == "none" else 60,
                label=method if row.Index == rows.index[0] else None,
                edgecolors="k",
                linewidths=0.5,
            )
    front = pareto_front(table[x].to_numpy(float), table[y].to_numpy(float))
    axis.plot(table[x].to_numpy()[front], table[y].to_numpy()[front], "k--", lw=1, label="front")
    axis.axhline(0, color="grey", lw=0.8)
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.set_title("accuracy against topography (marker: ○ weak, □ medium, △ strong)", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_metrics_by_strength(table: pd.DataFrame, metrics: Sequence[str]) -> plt.Figure:
    """Each metric against strength (log axis), one line per method; the control dashed."""
    count = max(1, len(metrics))
    columns = min(3, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    control = table[table.method == "none"]
    for axis, metric in zip(axes.flat, metrics, strict=False):
        regularised = table[table.method != "none"].dropna(subset=[metric, "strength"])
        regularised = regularised[regularised.strength > 0]
        for method, found in regularised.groupby("method", sort=True):
            ordered = found.sort_values("strength")
            axis.plot(ordered.strength, ordered[metric], marker="o", label=method)
        for value in control[metric].dropna():
            axis.axhline(value, color="k", ls="--", lw=1, label="control")
        if len(regularised):
            axis.set_xscale("log")
        axis.set_xlabel("strength (per-layer weight)")
        axis.set_title(metric, fontsize=9)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def plot_map_grid(
    maps: Sequence[tuple[str, str, np.ndarray, tuple[float, float, float, float], str]],
    columns: Sequence[str],
) -> plt.Figure:
    """Smoothed orientation maps, ``(sheet, column, values, extent, units)``: one row per sheet
    (TDANN's first), one column per strength with the control on that sheet first."""
    sheets = sorted({sheet for sheet, *_ in maps}, key=lambda s: (s != "tdann", s))
    figure, axes = plt.subplots(
        len(sheets),
        len(columns),
        figsize=(3.4 * len(columns), 3.2 * len(sheets)),
        squeeze=False,
    )
    for axis in axes.flat:
        axis.axis("off")
    for sheet, column, values, extent, units in maps:
        axis = axes[sheets.index(sheet), list(columns).index(column)]
        axis.axis("on")
        title = f"control, {sheet} sheet" if column == "control" else f"{sheet}, {column}"
        plot_orientation_map(values, extent, None, title, units, axis=axis)
    figure.suptitle("smoothed orientation preference (V1 layer): sheet × strength")
    figure.tight_layout()
    return figure
