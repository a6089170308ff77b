"""The rows and figures of a topography report, and how each layer's sheet is measured.

Every length parameter of the analyses is given in mm at TDANN's *human* scale (its published
defaults) and multiplied by the layer's ``Sheet.per_mm``: 1 for human-scale positions (those at
training scale are converted first), the sheet's extent over the human sheet of the layer's
area for positions that carry no scale.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from topo_eval.figure_files import write_figure
from topo_eval.topography.maps import SmoothedMap
from topo_eval.topography.smoothness import DistanceCurves, smoothness

COLUMNS = ("layer", "analysis", "metric", "value", "chance", "reference", "distances")


@dataclass(frozen=True)
class Sheet:
    """One layer's units on the sheet: ``coords`` (units, 2) and how long a human mm is."""

    coords: np.ndarray
    per_mm: float  # sheet units per human-scale mm
    label: str  # how distances in the table and figures are measured

    @property
    def units(self) -> str:
        return "mm" if self.per_mm == 1.0 else "sheet units"


@dataclass
class Report:
    """What the analyses found: table rows, and figures written as they are made."""

    figure_dir: Path
    rows: list[dict] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)

    def row(
        self,
        layer: str,
        analysis: str,
        metric: str,
        value: float,
        sheet: Sheet | None,
        chance: float | None = None,
        reference: float | None = None,
    ) -> None:
        self.rows.append(
            {
                "layer": layer,
                "analysis": analysis,
                "metric": metric,
                "value": float(value),
                "chance": np.nan if chance is None else float(chance),
                "reference": np.nan if reference is None else float(reference),
                "distances": "" if sheet is None else sheet.label,
            }
        )

    def figure(self, name: str, figure: plt.Figure, caption: str) -> None:
        write_figure(figure, self.figure_dir / name)
        self.figures.append((name, caption))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def metrics(self) -> dict[str, float]:
        """``<layer>/<metric>`` of every finite value, for MLflow."""
        return {
            f"{row['layer']}/{row['metric']}": row["value"]
            for row in self.rows
            if np.isfinite(row["value"])
        }


def nanmean(values: object, axis: int | None = None) -> np.ndarray:
    """``np.nanmean`` that gives NaN for an all-NaN slice without a warning (a bin without
    pairs, a layer without tuned units: the table shows an empty cell)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(values, np.float64), axis=axis)


def mean_smoothness(found: DistanceCurves) -> tuple[float, float]:
    """Mean smoothness of the curves, and of the chance curves."""
    value = nanmean([smoothness(curve) for curve in found.curves])
    chance = nanmean([smoothness(curve) for curve in found.chance])
    return float(value), float(chance)


def map_extent(found: SmoothedMap) -> tuple[float, float, float, float]:
    """imshow extent with row 0 (smallest y) at the top, as the other sheet figures."""
    dx = np.diff(found.x_centres[:2]).item() if len(found.x_centres) > 1 else 1.0
    dy = np.diff(found.y_centres[:2]).item() if len(found.y_centres) > 1 else 1.0
    return (
        found.x_centres[0] - dx / 2,
        found.x_centres[-1] + dx / 2,
        found.y_centres[-1] + dy / 2,
        found.y_centres[0] - dy / 2,
    )
