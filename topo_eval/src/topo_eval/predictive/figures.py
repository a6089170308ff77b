"""Figures of a predictive model's neuron table (``predictive_report.neuron_table``).

Retinotopy: mouse V1 maps visual space smoothly onto cortex, so a good readout's predicted
receptive-field centres vary smoothly with the neurons' cortical positions. The axes of
``cell_motor_coordinates`` need not align with the visual axes, so the figure reports the
multiple correlation of each RF coordinate with both cortical coordinates (rotation-free).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from topo_models import TopoError  # noqa: E402


def retinotopy_r(cortex_xy: np.ndarray, rf: np.ndarray) -> float:
    """Multiple correlation R of ``rf`` (n,) with an affine function of ``cortex_xy`` (n, 2):
    the correlation of ``rf`` with its least-squares fit; NaN with fewer than 4 finite rows."""
    finite = np.isfinite(cortex_xy).all(axis=1) & np.isfinite(rf)
    if finite.sum() < 4:
        return float("nan")
    design = np.column_stack([np.ones(finite.sum()), cortex_xy[finite]])
    fitted = design @ np.linalg.lstsq(design, rf[finite], rcond=None)[0]
    if np.std(fitted) == 0 or np.std(rf[finite]) == 0:
        return 0.0
    return float(np.corrcoef(fitted, rf[finite])[0, 1])


def _session(neurons: pd.DataFrame, data_key: str) -> pd.DataFrame:
    rows = neurons[neurons.data_key == data_key]
    if rows.empty:
        raise TopoError(
            "no neurons of the session in the table",
            field="data_key",
            expected=sorted(neurons.data_key.unique()),
            found=data_key,
        )
    return rows


def plot_rf_positions(neurons: pd.DataFrame, data_key: str) -> plt.Figure:
    """Two panels of one session's neurons at their cortical position (µm), coloured by the
    predicted RF x (left) and RF y (right) in grid units; titles give ``retinotopy_r``."""
    rows = _session(neurons, data_key)
    cortex = rows[["cortex_x_um", "cortex_y_um"]].to_numpy()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
    for axis, column, name in zip(axes, ("rf_x", "rf_y"), ("x", "y"), strict=True):
        values = rows[column].to_numpy()
        dots = axis.scatter(
            cortex[:, 0], cortex[:, 1], c=values, s=6, cmap="coolwarm", vmin=-1, vmax=1
        )
        axis.set_aspect("equal")
        axis.set_xlabel("cortical x (µm)")
        axis.set_title(f"{data_key}: predicted RF {name}, R = {retinotopy_r(cortex, values):.2f}")
        figure.colorbar(dots, ax=axis, label=f"RF {name} (grid units, -1 to 1)")
    axes[0].set_ylabel("cortical y (µm)")
    figure.tight_layout()
    return figure


def plot_correlation_histograms(neurons: pd.DataFrame, bins: int = 40) -> plt.Figure:
    """One histogram of per-neuron single-trial correlation per session, mean marked."""
    keys = list(dict.fromkeys(neurons.data_key))
    figure, axes = plt.subplots(
        len(keys), 1, figsize=(6, 2.6 * len(keys)), squeeze=False, sharex=True
    )
    for axis, key in zip(axes[:, 0], keys, strict=True):
        values = neurons.correlation[neurons.data_key == key].to_numpy()
        axis.hist(values, bins=bins, range=(min(-0.2, values.min()), 1.0), color="0.55")
        axis.axvline(values.mean(), color="crimson", label=f"mean {values.mean():.3f}")
        axis.set_ylabel("neurons")
        axis.set_title(f"{key}: {len(values)} neurons")
        axis.legend(loc="upper right")
    axes[-1, 0].set_xlabel("single-trial correlation (prediction vs response)")
    figure.tight_layout()
    return figure
