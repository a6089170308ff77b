"""Scores against the simulator's truth, for sessions written by ``topo_data.sensorium.simulate``.

A fit to real data says how well a model predicts; on a simulated mouse the truth
(``<name>.ground_truth.npz``) also says whether it learned the right thing and how far it is
from the best any model could do:

* **oracle** — the competition's scores of the true rates (the Poisson means of every trial,
  behaviour and eye position included): the ceiling of every score;
* **FEVE with the true noise** — the competition's FEVE takes the variance across repeats of an
  image as noise, but repeats differ in behaviour and pupil position, which move the rates; here
  the noise is the variance of the responses around the true rates (the true rates score 1);
* **RF recovery** — the readout's RF centres against the true ones, per axis, and against the
  smooth retinotopic map (what a readout that predicts positions from cortex can reach; the
  true RFs add scatter about it);
* **shifter recovery** — the shift the model applies per trial against the true eye shift.

Correlations are per axis: the model states positions in the grid of its core's output, the
truth in full-image grid units, which differ by a scale and offset per axis only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from topo_eval.predictive.metrics import (
    FEV_THRESHOLD,
    explainable_variance_given_rates,
    feve_given_rates,
)


def session_truth(dataset: object) -> dict[str, np.ndarray] | None:
    """The truth of a loader's session restricted to its neurons, or None when there is none.

    Needs ``dataset.session.source`` (a simulated session's zip or folder) with
    ``<name>.ground_truth.npz`` beside it, and ``dataset.neurons.unit_ids``. Returns
    ``rates`` (trials in file, n) in the loader's standardised response units (× precision),
    ``rf_center`` and ``rf_smooth`` (n, 2) in full-image grid units, ``shift_px`` (trials in
    file, 2).
    """
    from topo_data.sensorium.simulate import ground_truth_path, load_ground_truth

    source = getattr(getattr(dataset, "session", None), "source", None)
    if source is None or not ground_truth_path(Path(source)).is_file():
        return None
    truth = load_ground_truth(source)
    unit_ids = np.asarray(dataset.neurons.unit_ids)
    order = np.argsort(truth["unit_ids"])
    found = order[np.searchsorted(truth["unit_ids"][order], unit_ids).clip(max=len(order) - 1)]
    if not np.array_equal(truth["unit_ids"][found], unit_ids):
        return None  # neurons the simulator did not write: not this truth's session
    rates = truth["rates"][:, found]
    normalizer = getattr(dataset, "normalizer", None)
    if normalizer is not None:
        rates = normalizer.responses(rates)
    center = truth["rf_center_grid"][found]
    return {
        "rates": np.asarray(rates, np.float64),
        "rf_center": center,
        "rf_smooth": center - truth["rf_scatter_grid"][found],
        "shift_px": truth["shift_px"],
    }


def truth_scores(
    targets: np.ndarray,
    predictions: np.ndarray,
    rates: np.ndarray,
    truth: Mapping[str, np.ndarray],
    fev_threshold: float = FEV_THRESHOLD,
) -> dict[str, np.ndarray]:
    """Per-neuron columns of the truth: true and smooth RF centres, FEV and FEVE with the true
    noise. ``targets``, ``predictions`` and the trials' true ``rates`` are (trials, neurons)
    in one order (``truth["rates"][trial_ids]``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        fev = explainable_variance_given_rates(targets, rates)[0]
        feve = feve_given_rates(targets, predictions, rates, fev_threshold)
    return {
        "true_rf_x": truth["rf_center"][:, 0],
        "true_rf_y": truth["rf_center"][:, 1],
        "smooth_rf_x": truth["rf_smooth"][:, 0],
        "smooth_rf_y": truth["rf_smooth"][:, 1],
        "fev_true_noise": fev,
        "feve_true_noise": feve,
    }


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation over the rows where both are finite; NaN with fewer than 3 or no variance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if finite.sum() < 3 or np.std(a[finite]) == 0 or np.std(b[finite]) == 0:
        return float("nan")
    return float(np.corrcoef(a[finite], b[finite])[0, 1])


def rf_recovery(rows: Mapping[str, np.ndarray]) -> dict[str, float]:
    """RF scores of a neuron table's rows, per axis a ∈ {x, y}:

    * ``rf_r_a`` — predicted vs true RF centre;
    * ``rf_smooth_r_a`` — predicted centre vs the true smooth map of cortex;
    * ``rf_ceiling_r2_a`` — the fraction of the true centres' variance the smooth map explains
      (squared correlation): the best ``rf_r_a²`` of a readout driven by cortical position.
    """
    scores = {}
    for axis in ("x", "y"):
        predicted, true = rows[f"rf_{axis}"], rows[f"true_rf_{axis}"]
        smooth = rows[f"smooth_rf_{axis}"]
        scores[f"rf_r_{axis}"] = pearson(predicted, true)
        scores[f"rf_smooth_r_{axis}"] = pearson(predicted, smooth)
        scores[f"rf_ceiling_r2_{axis}"] = pearson(smooth, true) ** 2
    return scores


def learned_shifts(
    model: nn.Module, loader: object, data_key: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(trial_ids (T,), shifts (T, 2) in the core's grid units) of the model's shifter over the
    loader's batches; None without a shifter or pupil centres."""
    shifter = getattr(model, "shifter", None)
    if shifter is None:
        return None
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    trials, shifts = [], []
    with torch.no_grad():
        for batch in loader:
            pupil = getattr(batch, "pupil_center", None)
            if pupil is None:
                return None
            shifts.append(shifter[data_key](pupil.to(device)).detach().cpu().double())
            trials.append(torch.as_tensor(batch.trial_id).cpu())
    if not shifts:
        return None
    return torch.cat(trials).numpy(), torch.cat(shifts).numpy()


def shift_recovery(
    model: nn.Module, loader: object, data_key: str, truth: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(true shifts (T, 2) in full-image pixels, learned shifts (T, 2) in grid units) of the
    loader's trials, or None when the model has no shifter."""
    learned = learned_shifts(model, loader, data_key)
    if learned is None:
        return None
    trial_ids, shifts = learned
    return truth["shift_px"][trial_ids], shifts


def shift_scores(pair: tuple[np.ndarray, np.ndarray] | None) -> dict[str, float]:
    """``shift_r_x``, ``shift_r_y``: learned vs true eye shift per axis over the trials (NaN
    without a shifter or with a pupil that moves nothing)."""
    if pair is None:
        return {"shift_r_x": float("nan"), "shift_r_y": float("nan")}
    true, learned = pair
    return {f"shift_r_{a}": pearson(learned[:, i], true[:, i]) for i, a in enumerate("xy")}
