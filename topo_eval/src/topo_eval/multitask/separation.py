"""Cluster separation of learned positions by assigned task — this project's own metric.

SpatialNetworks reports task clusters qualitatively (and computes no score); here a layer's
separation is the silhouette score (scikit-learn) of its neurons' positions under their task
labels, next to the same score for the labels shuffled ``n_shuffles`` times (seeded): a layer
whose tasks occupy separate regions of the sheet scores well above its shuffled control. The
p-value is the fraction of shuffles scoring at least as high (with the +1 correction).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from sklearn.metrics import silhouette_score

COLUMNS = (
    "layer",
    "neurons",
    "tasks_present",
    "silhouette",
    "shuffled_mean",
    "shuffled_std",
    "p_value",
    "within_between_ratio",
)


def _within_between(distances: np.ndarray, labels: np.ndarray) -> float:
    """Mean within-task over mean between-task pairwise distance (< 1: tasks cluster)."""
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    within, between = distances[same & off_diagonal], distances[~same]
    if within.size == 0 or between.size == 0:
        return math.nan
    return float(within.mean() / between.mean())


def cluster_separation(
    positions: np.ndarray, labels: np.ndarray, n_shuffles: int = 200, seed: int = 0
) -> dict[str, float]:
    """Silhouette of ``positions (N, dim)`` under ``labels (N,)`` and its shuffled control.

    Undefined (NaN) when fewer than two tasks, or every neuron in its own task, are present.
    """
    positions = np.asarray(positions, dtype=np.float64)
    labels = np.asarray(labels)
    present = len(np.unique(labels))
    row = {
        "neurons": len(labels),
        "tasks_present": present,
        "silhouette": math.nan,
        "shuffled_mean": math.nan,
        "shuffled_std": math.nan,
        "p_value": math.nan,
        "within_between_ratio": math.nan,
    }
    if not 2 <= present <= len(labels) - 1:
        return row
    distances = cdist(positions, positions)
    observed = float(silhouette_score(distances, labels, metric="precomputed"))
    generator = np.random.default_rng(seed)
    shuffled = np.array(
        [
            silhouette_score(distances, generator.permutation(labels), metric="precomputed")
            for _ in range(n_shuffles)
        ]
    )
    row.update(
        silhouette=observed,
        shuffled_mean=float(shuffled.mean()) if n_shuffles else math.nan,
        shuffled_std=float(shuffled.std()) if n_shuffles else math.nan,
        p_value=float((1 + (shuffled >= observed).sum()) / (1 + n_shuffles)),
        within_between_ratio=_within_between(distances, labels),
    )
    return row


def separation_table(
    positions: dict[str, np.ndarray],
    assignment: dict[str, np.ndarray],
    n_shuffles: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per layer (``COLUMNS``)."""
    rows = [
        {"layer": name, **cluster_separation(positions[name], assignment[name], n_shuffles, seed)}
        for name in positions
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def separation_lines(separation: pd.DataFrame) -> list[str]:
    """Each layer's silhouette against its shuffled-label control."""
    lines = ["silhouette of positions by assigned task (shuffled labels: mean ± std, p)"]
    for row in separation.itertuples():
        if np.isnan(row.silhouette):
            lines.append(f"  {row.layer:<14}undefined ({row.tasks_present} task(s) present)")
            continue
        lines.append(
            f"  {row.layer:<14}{row.silhouette:.2f} vs {row.shuffled_mean:.2f} ± "
            f"{row.shuffled_std:.3f} (p {row.p_value:.2g})"
        )
    return lines
