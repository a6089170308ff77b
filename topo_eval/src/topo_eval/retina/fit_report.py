"""``task=retina_fit``: score a fitted LN retina model on its validation windows and draw its
kernels (beside the planted ones when the recording was simulated).

Writes ``cells.csv`` (per cell: correlation of predicted rate and counts over the validation
frames, mean predicted and observed counts, and the kernel correlation with the planted cell
when known) and ``figures/kernels.png`` (per cell: the spatial map at the strongest lag and
the time course at the strongest pixel).
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from topo_eval.data_loading import build_data_module, with_training_data  # noqa: E402
from topo_eval.figure_files import write_figure  # noqa: E402
from topo_eval.model_loading import load_trained_model  # noqa: E402
from topo_models.atomic import atomic_write_bytes  # noqa: E402
from topo_models.errors import TopoError  # noqa: E402
from topo_models.retina.fit_metrics import (  # noqa: E402
    cell_correlations,
    kernel_correlations,
    window_rates,
)

log = logging.getLogger("topo_eval")


@torch.no_grad()
def fit_table(model: torch.nn.Module, data) -> pd.DataFrame:
    """One row per cell: validation correlation, mean counts, kernel correlation if planted."""
    predicted, observed = [], []
    for batch in data.val_loader():
        predicted.append(window_rates(model, batch.video, data.history).permute(1, 0, 2).flatten(1))
        observed.append(batch.responses.permute(1, 0, 2).flatten(1))
    rates, counts = torch.cat(predicted, dim=1), torch.cat(observed, dim=1)
    table = pd.DataFrame(
        {
            "cell": np.arange(rates.shape[0]),
            "correlation": cell_correlations(rates, counts).numpy(),
            "predicted_mean": rates.mean(dim=1).double().numpy(),
            "observed_mean": counts.mean(dim=1).double().numpy(),
        }
    )
    truth = data.ground_truth()
    if truth is not None:
        table["kernel_correlation"] = kernel_correlations(
            model.filter.kernel(), truth["true_kernels"]
        ).numpy()
    return table


def _strongest(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spatial map at the lag of the largest |tap|, time course at its pixel) of (kt, kh, kw)."""
    lag, row, col = np.unravel_index(np.abs(kernel).argmax(), kernel.shape)
    return kernel[lag], kernel[:, row, col]


def plot_kernels(fitted: np.ndarray, planted: np.ndarray | None, dt: float | None) -> plt.Figure:
    """Per cell: fitted (and planted) spatial maps and normalised time courses.

    Args:
        fitted: (cells, kt, kh, kw) kernels, ``[cell, lag]`` = the frame ``lag`` steps back.
        planted: the true kernels of a simulated recording, same shape, or None.
        dt: frame length in seconds for the time axis (frames if None).
    """
    cells = len(fitted)
    columns = 3 if planted is not None else 2
    figure, axes = plt.subplots(cells, columns, figsize=(3.2 * columns, 2.6 * cells), squeeze=False)
    lags = np.arange(fitted.shape[1]) * (dt if dt else 1.0)
    for n in range(cells):
        space, time = _strongest(fitted[n])
        panels = [("fitted", space)]
        if planted is not None:
            true_space, true_time = _strongest(planted[n])
            panels.append(("planted", true_space))
        for column, (name, image) in enumerate(panels):
            limit = float(np.abs(image).max()) or 1.0
            axes[n, column].imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes[n, column].set_title(f"cell {n}: {name} RF", fontsize=9)
            axes[n, column].axis("off")
        trace = axes[n, -1]
        trace.plot(lags, time / (np.abs(time).max() or 1.0), label="fitted")
        if planted is not None:
            trace.plot(lags, true_time / (np.abs(true_time).max() or 1.0), "--", label="planted")
        trace.axhline(0.0, color="0.7", linewidth=0.8)
        trace.set_xlabel("lag (s)" if dt else "lag (frames)")
        trace.set_title("time course (normalised)", fontsize=9)
        trace.legend(fontsize=7)
    figure.tight_layout()
    return figure


def run_retina_fit(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Write cells.csv and figures/kernels.png for ``cfg.checkpoint``; (table, MLflow metrics).

    ``cfg.data``, when null, is taken from the training run saved in the checkpoint
    (``with_training_data``), so the model is scored on the recording and windows it was
    fitted to.
    """
    model = load_trained_model(cfg.checkpoint)
    if not hasattr(getattr(model, "filter", None), "kernel"):
        raise TopoError(
            "task=retina_fit scores an LN model (experiment=retina_fit)",
            file=cfg.checkpoint,
            field="model",
            expected="a model.pt of experiment=retina_fit",
            found=type(model).__name__,
        )
    data = build_data_module(with_training_data(cfg).data, file=cfg.checkpoint)
    table = fit_table(model, data)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "cells.csv"
    atomic_write_bytes(table.to_csv(index=False).encode(), path)
    truth = data.ground_truth()
    kernels = model.filter.kernel().detach()[:, 0].numpy()
    planted = None if truth is None else truth["true_kernels"]
    write_figure(plot_kernels(kernels, planted, data.dt), output_dir / "figures" / "kernels.png")
    metrics = {"val_correlation": float(table.correlation.mean())}
    if "kernel_correlation" in table:
        metrics["kernel_correlation"] = float(table.kernel_correlation.mean())
    log.info("retina fit: %s → %s", {k: round(v, 4) for k, v in metrics.items()}, output_dir)
    return path, metrics
