"""The topography report's figures: maps on the sheet, curves against distance, sweeps.

Each function takes plain arrays (coordinates in the sheet's units, x = column 0, y = column 1,
y drawn downwards as on the other sheet figures) and returns a figure for
:func:`topo_eval.figure_files.write_figure`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CYCLIC = "hsv"  # orientation preference, as Nauhaus et al.'s maps
DOT = 2.0


def _sheet_axis(axis: plt.Axes, title: str, units: str) -> None:
    axis.set_aspect("equal")
    axis.invert_yaxis()
    axis.set_xlabel(f"x ({units})")
    axis.set_ylabel(f"y ({units})")
    axis.set_title(title, fontsize=10)


def plot_preference_maps(
    coords: np.ndarray,
    orientation_deg: np.ndarray,
    sf: np.ndarray,
    colour: np.ndarray,
    responsive: np.ndarray,
    layer: str,
    units: str = "mm",
) -> plt.Figure:
    """Units coloured by preferred orientation (responsive units), SF and colour (all)."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    shown = responsive & np.isfinite(orientation_deg)
    dots = axes[0].scatter(
        *coords[shown].T, c=orientation_deg[shown], cmap=CYCLIC, vmin=0, vmax=180, s=DOT
    )
    figure.colorbar(dots, ax=axes[0], label="preferred orientation (deg)")
    levels = np.unique(sf)
    sf_index = np.searchsorted(levels, sf)
    dots = axes[1].scatter(*coords.T, c=sf_index, cmap="viridis", s=DOT)
    bar = figure.colorbar(dots, ax=axes[1], label="preferred SF (cycles/image)")
    bar.set_ticks(range(len(levels)), labels=[f"{v:.3g}" for v in levels])
    names = np.unique(colour)
    colour_index = np.searchsorted(names, colour)
    dots = axes[2].scatter(*coords.T, c=colour_index, cmap="coolwarm", s=DOT)
    bar = figure.colorbar(dots, ax=axes[2], label="preferred colour")
    bar.set_ticks(range(len(names)), labels=[str(n) for n in names])
    _sheet_axis(axes[0], f"orientation ({int(shown.sum()):,} responsive units)", units)
    _sheet_axis(axes[1], "spatial frequency (every unit)", units)
    _sheet_axis(axes[2], "colour (every unit)", units)
    figure.suptitle(f"{layer}: preferences to sine gratings")
    figure.tight_layout()
    return figure


def plot_orientation_map(
    values: np.ndarray,
    extent: tuple[float, float, float, float],
    marks: np.ndarray | None,
    title: str,
    units: str = "mm",
    axis: plt.Axes | None = None,
) -> plt.Figure:
    """A smoothed orientation map (``values`` (ny, nx), row 0 at ``extent``'s top = smallest
    y) with pinwheels marked: ``marks`` (k, 3) of x, y, sign (+1 white, -1 black)."""
    figure = axis.figure if axis is not None else plt.figure(figsize=(6, 5))
    axis = axis or figure.add_subplot()
    image = axis.imshow(values, extent=extent, cmap=CYCLIC, vmin=0, vmax=180)
    if marks is not None and len(marks):
        for sign, colour in ((1, "white"), (-1, "black")):
            chosen = marks[marks[:, 2] == sign]
            axis.scatter(*chosen[:, :2].T, s=25, c=colour, edgecolors="k", linewidths=0.5)
    axis.set_xlabel(f"x ({units})")
    axis.set_ylabel(f"y ({units})")
    axis.set_title(title, fontsize=10)
    if len(figure.axes) == 1:
        figure.colorbar(image, ax=axis, label="preferred orientation (deg)")
        figure.tight_layout()
    return figure


def plot_distance_curves(
    curves: Mapping[str, object], title: str, ylabel: str, units: str = "mm", ratio: bool = True
) -> plt.Figure:
    """Mean (± sd over samples) of each ``name → DistanceCurves`` against distance; divided by
    the chance (shuffled-position) mean when ``ratio``, else drawn beside it dashed."""
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for name, found in curves.items():
        edges = np.asarray(found.bin_edges)
        centres = (edges[:-1] + edges[1:]) / 2
        values = np.asarray(found.curves, float)
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # empty bins stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            chance = np.nanmean(np.asarray(found.chance, float), axis=0)
            if ratio:
                values = values / chance
            mean, spread = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        line = axis.plot(centres, mean, marker="o", label=name)[0]
        axis.fill_between(centres, mean - spread, mean + spread, alpha=0.2, color=line.get_color())
        if not ratio:
            axis.plot(centres, chance, ls="--", color=line.get_color(), label=f"{name} (chance)")
    if ratio:
        axis.axhline(1.0, color="grey", ls="--", lw=1, label="chance")
    axis.set_xlabel(f"cortical distance ({units})")
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_selectivity_maps(
    coords: np.ndarray,
    t_maps: np.ndarray,
    categories: Sequence[str],
    patches: Mapping[str, Sequence[object]],
    layer: str,
    units: str = "mm",
) -> plt.Figure:
    """One panel per category: each unit's selectivity t, patch centres marked (×)."""
    count = len(categories)
    figure, axes = plt.subplots(
        1, count, figsize=(4.2 * count + 1.5, 4.4), squeeze=False, layout="constrained"
    )
    limit = float(np.nanpercentile(np.abs(t_maps), 99)) or 1.0
    for axis, name, t in zip(axes[0], categories, t_maps, strict=True):
        dots = axis.scatter(*coords.T, c=t, cmap="RdBu_r", vmin=-limit, vmax=limit, s=DOT)
        centres = np.array([p.centre_mm for p in patches.get(name, [])]).reshape(-1, 2)
        axis.scatter(*centres.T, marker="x", c="k", s=60)
        _sheet_axis(axis, f"{name}: {len(centres)} patch(es)", units)
    figure.colorbar(dots, ax=axes[0].tolist(), label="selectivity t (on vs other categories)")
    figure.suptitle(f"{layer}: category selectivity")
    return figure


def plot_matrix(matrix: np.ndarray, labels: Sequence[str], title: str, label: str) -> plt.Figure:
    """A small labelled square matrix (co-localisation between categories)."""
    figure, axis = plt.subplots(figsize=(1.2 * len(labels) + 2.5, 1.2 * len(labels) + 1.5))
    image = axis.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels=labels)
    for (i, j), value in np.ndenumerate(matrix):
        axis.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
    figure.colorbar(image, ax=axis, label=label)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_eigenspectra(eigenvalues: Mapping[str, np.ndarray]) -> plt.Figure:
    """Each layer's PCA eigenvalues (normalised to sum 1) against rank, log-log."""
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for layer, values in eigenvalues.items():
        values = np.asarray(values, float)
        values = values[values > 0]
        if len(values):
            axis.loglog(np.arange(1, len(values) + 1), values / values.sum(), label=layer)
    axis.set_xlabel("principal component")
    axis.set_ylabel("fraction of variance")
    axis.set_title("eigenspectra of channel responses (spatially max-pooled)", fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_sweep_metrics(table: pd.DataFrame, x: str, metrics: Sequence[str]) -> plt.Figure:
    """Each metric of ``table`` (one row per run) against the swept value ``x``."""
    count = max(1, len(metrics))
    columns = min(3, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows), squeeze=False)
    ordered = table.sort_values(x)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        axis.plot(ordered[x], ordered[metric], marker="o")
        chance = f"{metric} chance"
        if chance in ordered:
            axis.plot(ordered[x], ordered[chance], ls="--", color="grey", label="chance")
            axis.legend(fontsize=8)
        axis.set_xlabel(x)
        axis.set_title(metric, fontsize=9)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.axis("off")
    figure.tight_layout()
    return figure


def plot_maps_side_by_side(
    maps: Sequence[tuple[str, np.ndarray, tuple[float, float, float, float]]], units: str = "mm"
) -> plt.Figure:
    """One smoothed orientation map per run, ``(label, values, extent)``, left to right."""
    count = max(1, len(maps))
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2), squeeze=False)
    for axis, (label, values, extent) in zip(axes[0], maps, strict=False):
        plot_orientation_map(values, extent, None, label, units, axis=axis)
    figure.suptitle("smoothed orientation preference per run")
    figure.tight_layout()
    return figure
