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

from topo_eval.predictive.ground_truth import pearson  # noqa: E402
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
    predicted RF x (left) and RF y (right) in grid units over the range they span; titles give
    ``retinotopy_r``, the multiple correlation of that RF coordinate with cortical (x, y)."""
    rows = _session(neurons, data_key)
    cortex = rows[["cortex_x_um", "cortex_y_um"]].to_numpy()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True, sharey=True)
    for axis, column, name in zip(axes, ("rf_x", "rf_y"), ("x", "y"), strict=True):
        values = rows[column].to_numpy()
        low, high = _range(values)
        dots = axis.scatter(
            cortex[:, 0], cortex[:, 1], c=values, s=6, cmap="coolwarm", vmin=low, vmax=high
        )
        axis.set_aspect("equal")
        axis.set_xlabel("cortical x (µm)")
        r = retinotopy_r(cortex, values)
        axis.set_title(f"{data_key}: predicted RF {name}\nR(RF {name} ~ cortical x, y) = {r:.2f}")
        figure.colorbar(dots, ax=axis, label=f"predicted RF {name} (model grid units)")
    axes[0].set_ylabel("cortical y (µm)")
    figure.tight_layout()
    return figure


def _range(values: np.ndarray) -> tuple[float, float]:
    """Colour limits spanning the finite values (±1 when there are none or all are equal)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() == finite.max():
        centre = float(finite[0]) if finite.size else 0.0
        return centre - 1.0, centre + 1.0
    return float(finite.min()), float(finite.max())


def _versus(axis: plt.Axes, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str) -> float:
    """Scatter ``y`` against ``x`` with labelled axes; return their correlation."""
    finite = np.isfinite(x) & np.isfinite(y)
    axis.scatter(x[finite], y[finite], s=6, color="0.3")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    return pearson(x, y)


def plot_rf_recovery(neurons: pd.DataFrame, data_key: str) -> plt.Figure:
    """Predicted RF centres of a simulated session against the truth, per axis (columns x, y):
    top, against the true centres; bottom, against the true smooth map of cortex, whose own
    share of the true centres' variance (R², the ceiling of a readout driven by cortical
    position) is in the title. Needs the truth columns of ``neuron_table``."""
    rows = _session(neurons, data_key)
    figure, axes = plt.subplots(2, 2, figsize=(9, 8.4))
    for column, name in enumerate("xy"):
        predicted = rows[f"rf_{name}"].to_numpy()
        true, smooth = rows[f"true_rf_{name}"].to_numpy(), rows[f"smooth_rf_{name}"].to_numpy()
        ylabel = f"predicted RF {name} (model grid units)"
        r = _versus(axes[0, column], true, predicted, f"true RF {name} (image grid units)", ylabel)
        axes[0, column].set_title(f"RF {name}: r(predicted, true) = {r:.2f}")
        r = _versus(
            axes[1, column], smooth, predicted, f"true smooth map {name} (image grid units)", ylabel
        )
        ceiling = pearson(smooth, true) ** 2
        axes[1, column].set_title(
            f"r(predicted, smooth map) = {r:.2f}\nsmooth map explains R² = {ceiling:.2f} of true"
        )
    figure.suptitle(f"{data_key}: receptive-field centres against the simulator's truth")
    figure.tight_layout()
    return figure


def plot_oracle(neurons: pd.DataFrame, data_key: str) -> plt.Figure:
    """Per-neuron single-trial correlation of the model against that of the true rates (the
    oracle, the ceiling of any model), with the identity line."""
    rows = _session(neurons, data_key)
    model, oracle = rows.correlation.to_numpy(), rows.oracle_correlation.to_numpy()
    figure, axis = plt.subplots(figsize=(5.4, 5))
    _versus(
        axis,
        oracle,
        model,
        "single-trial correlation of the true rates (oracle)",
        "single-trial correlation of the model",
    )
    low = min(0.0, np.nanmin(model), np.nanmin(oracle))
    axis.plot([low, 1], [low, 1], color="crimson", lw=1, label="model = oracle")
    axis.set_title(
        f"{data_key}: model {np.nanmean(model):.3f} vs oracle {np.nanmean(oracle):.3f}"
        f" ({np.nanmean(model) / np.nanmean(oracle):.0%} of the ceiling)"
    )
    axis.legend(loc="upper left")
    figure.tight_layout()
    return figure


def plot_shift_recovery(true_px: np.ndarray, learned: np.ndarray, data_key: str) -> plt.Figure:
    """The shifter's per-trial shift (model grid units) against the true eye shift (full-image
    pixels), per axis: ``ground_truth.shift_recovery``'s pair."""
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for index, name in enumerate("xy"):
        r = _versus(
            axes[index],
            true_px[:, index],
            learned[:, index],
            f"true eye shift {name} (image pixels)",
            f"shifter's shift {name} (model grid units)",
        )
        axes[index].set_title(f"shift {name}: r(learned, true) = {r:.2f}")
    figure.suptitle(f"{data_key}: the shifter's pupil → shift map against the simulator's")
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
