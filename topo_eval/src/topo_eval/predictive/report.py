"""Per-neuron and per-session Sensorium scores of a predictive model.

Predictions and targets stay in the loader's standardised response units: FEVE depends on the
prediction's scale and offset, and the competition's ground truth is stored in those units.
Loaders follow topo_data.sensorium: batches carry ``images, responses, behavior, pupil_center,
trial_id`` and ``loader.dataset`` holds ``data_key, tier, trial_ids, frame_image_id, neurons``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from topo_eval.predictive.ground_truth import (
    rf_recovery,
    session_truth,
    shift_recovery,
    shift_scores,
    truth_scores,
)
from topo_eval.predictive.metrics import (
    FEV_THRESHOLD,
    correlation,
    correlation_to_average,
    explainable_variance,
    feve,
)
from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes

NEURON_COLUMNS = (
    "data_key",
    "tier",
    "neuron",
    "unit_id",
    "cortex_x_um",
    "cortex_y_um",
    "correlation",
    "correlation_to_average",
    "fev",
    "feve",
    "rf_x",
    "rf_y",
    "n_trials",
)
# Added to NEURON_COLUMNS when a session carries the simulator's truth (ground_truth.py).
TRUTH_COLUMNS = (
    "true_rf_x",
    "true_rf_y",
    "smooth_rf_x",
    "smooth_rf_y",
    "oracle_correlation",
    "oracle_correlation_to_average",
    "oracle_feve",
    "fev_true_noise",
    "feve_true_noise",
    "shift_r_x",
    "shift_r_y",
)


class Loader(Protocol):
    """What the report needs of a loader: iterable batches and the tier's dataset."""

    dataset: object

    def __iter__(self) -> Iterable: ...


def image_ids_of(dataset: object, trial_ids: np.ndarray) -> np.ndarray:
    """Each trial's ``frame_image_id``, looked up by trial id (batches may come shuffled)."""
    for name in ("trial_ids", "frame_image_id"):
        if not hasattr(dataset, name):
            raise TopoError(
                "the loader's dataset lacks a trial attribute",
                field=f"dataset.{name}",
                expected="a StaticTierDataset (topo_data.sensorium)",
                found=type(dataset).__name__,
            )
    known = np.asarray(dataset.trial_ids)
    images = np.asarray(dataset.frame_image_id)
    order = np.argsort(known, kind="stable")
    where = np.searchsorted(known[order], trial_ids).clip(max=len(known) - 1)
    found = order[where]
    missing = known[found] != trial_ids
    if missing.any():
        raise TopoError(
            "a batch holds a trial id the dataset does not list",
            field="batch.trial_id",
            expected="ids in dataset.trial_ids",
            found=trial_ids[missing][:5].tolist(),
        )
    return images[found]


def model_predictions(
    model: nn.Module, loader: Loader, data_key: str, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run ``model`` over every batch of ``loader``, in the loader's order.

    Every module is put in eval mode and the model on ``device`` for the run; both are restored
    afterwards. ``pupil_center`` and ``behavior`` are passed on (None where the batch lacks them).

    Returns:
        targets (trials, neurons) and predictions (trials, neurons), float64 in the loader's
        standardised units; trial_ids (trials,); image_ids (trials,) from the dataset's
        ``frame_image_id``.
    """
    modes = [(module, module.training) for module in model.modules()]
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    model.eval().to(device)

    def moved(value: torch.Tensor | None) -> torch.Tensor | None:
        return None if value is None else value.to(device)

    targets, outputs, trial_ids = [], [], []
    try:
        with torch.no_grad():
            for batch in loader:
                rates = model(
                    batch.images.to(device),
                    data_key=data_key,
                    pupil_center=moved(getattr(batch, "pupil_center", None)),
                    behavior=moved(getattr(batch, "behavior", None)),
                )
                outputs.append(rates.detach().cpu())
                targets.append(batch.responses.cpu())
                trial_ids.append(torch.as_tensor(batch.trial_id).cpu())
    finally:
        model.to(home)
        for module, mode in modes:
            module.training = mode
    if not outputs:
        raise TopoError("the loader yields no batches", field=f"loader[{data_key}]")
    target, output = torch.cat(targets).double().numpy(), torch.cat(outputs).double().numpy()
    if output.shape != target.shape:
        raise TopoError(
            "the model's output does not match the responses",
            field=f"model(data_key={data_key})",
            expected=target.shape,
            found=output.shape,
        )
    trials = torch.cat(trial_ids).numpy()
    return target, output, trials, image_ids_of(loader.dataset, trials)


def readout_positions(model: nn.Module, data_key: str, n_neurons: int) -> np.ndarray:
    """Predicted receptive-field centres (n, 2) in grid units [-1, 1] (x = width, y = height),
    from ``model.readout.positions(data_key)``; NaN when the readout has no such method."""
    readout = getattr(model, "readout", None)
    if not hasattr(readout, "positions"):
        return np.full((n_neurons, 2), np.nan)
    with torch.no_grad():
        positions = readout.positions(data_key).detach().cpu().double().numpy()
    if positions.shape != (n_neurons, 2):
        raise TopoError(
            "readout positions do not match the neurons",
            field=f"model.readout.positions({data_key!r})",
            expected=(n_neurons, 2),
            found=positions.shape,
        )
    return positions


def session_scores(
    targets: np.ndarray,
    predictions: np.ndarray,
    image_ids: np.ndarray,
    fev_threshold: float = FEV_THRESHOLD,
) -> dict[str, np.ndarray]:
    """Per-neuron correlation, correlation to average, FEV and FEVE of one tier.

    The repeat-based scores use the images shown at least twice; with fewer than two such
    images (e.g. the train or validation tier) they are NaN. FEVE is NaN where FEV < threshold.
    """
    n = targets.shape[1]
    scores = {"correlation": correlation(targets, predictions)}
    counts = pd.Series(image_ids).value_counts()
    repeated = np.isin(image_ids, counts.index[counts >= 2])
    if np.unique(image_ids[repeated]).size < 2:
        return scores | {
            key: np.full(n, np.nan) for key in ("correlation_to_average", "fev", "feve")
        }
    y, p, ids = targets[repeated], predictions[repeated], image_ids[repeated]
    with np.errstate(divide="ignore", invalid="ignore"):  # zeroed targets: 0/0 → NaN
        scores["correlation_to_average"] = correlation_to_average(targets, predictions, image_ids)
        scores["fev"] = explainable_variance(y, ids)[0]
        scores["feve"] = feve(y, p, ids, fev_threshold)
    return scores


def neuron_table(
    model: nn.Module,
    loaders: Mapping[str, Mapping[str, Loader]],
    tier: str = "test",
    device: str | torch.device = "cpu",
    fev_threshold: float = FEV_THRESHOLD,
) -> pd.DataFrame:
    """One row per (data_key, neuron) of ``tier``: ids, cortical position (µm), the three
    competition scores, FEV, predicted RF position (grid units) and the number of trials; for
    a simulated session (``ground_truth.session_truth``) also ``TRUTH_COLUMNS``: true and smooth
    RF centres (full-image grid units), the true rates' scores (``oracle_*``), FEV / FEVE with
    the true noise, and the shifter's recovery of the eye shift (one value per session).

    Args:
        loaders: ``{tier: {data_key: DataLoader}}`` as ``topo_data.sensorium.static_loaders``.
    """
    if tier not in loaders:
        raise TopoError("no loaders for the tier", field="tier", expected=list(loaders), found=tier)
    tables = []
    for data_key, loader in loaders[tier].items():
        targets, predictions, trial_ids, image_ids = model_predictions(
            model, loader, data_key, device
        )
        n = targets.shape[1]
        neurons = loader.dataset.neurons
        coordinates = np.asarray(neurons.cell_motor_coordinates, dtype=np.float64)
        if coordinates.shape[0] != n or len(neurons.unit_ids) != n:
            raise TopoError(
                "the dataset's neuron metadata does not match the responses",
                field=f"{data_key}: dataset.neurons",
                expected=f"{n} neurons",
                found=f"{len(neurons.unit_ids)} unit_ids, {coordinates.shape[0]} coordinates",
            )
        rf = readout_positions(model, data_key, n)
        scores = session_scores(targets, predictions, image_ids, fev_threshold)
        columns = list(NEURON_COLUMNS)
        truth = session_truth(loader.dataset)
        if truth is not None:
            rates = truth["rates"][trial_ids]
            oracle = session_scores(targets, rates, image_ids, fev_threshold)
            shifts = shift_recovery(model, loader, data_key, truth)
            scores |= (
                {f"oracle_{key}": value for key, value in oracle.items() if key != "fev"}
                | truth_scores(targets, predictions, rates, truth, fev_threshold)
                | shift_scores(shifts)
            )
            columns += TRUTH_COLUMNS
        tables.append(
            pd.DataFrame(
                {
                    "data_key": data_key,
                    "tier": tier,
                    "neuron": np.arange(n),
                    "unit_id": np.asarray(neurons.unit_ids),
                    "cortex_x_um": coordinates[:, 0],
                    "cortex_y_um": coordinates[:, 1],
                    **scores,
                    "rf_x": rf[:, 0],
                    "rf_y": rf[:, 1],
                    "n_trials": len(targets),
                }
            )[columns]
        )
    if not tables:
        raise TopoError("the tier has no sessions", field=f"loaders[{tier!r}]", found="{}")
    return pd.concat(tables, ignore_index=True)


def _kept_mean(values: pd.Series, fev: pd.Series, fev_threshold: float) -> float:
    kept = fev >= fev_threshold
    return values[kept].mean() if kept.any() else np.nan


def _summary(rows: pd.DataFrame, fev_threshold: float) -> dict[str, float | int]:
    feve_competition = _kept_mean(rows.feve, rows.fev, fev_threshold)
    summary = {
        "n_neurons": len(rows),
        "n_kept": int((rows.fev >= fev_threshold).sum()),
        "correlation": rows.correlation.mean(),
        "correlation_to_average": rows.correlation_to_average.mean(),
        "feve": feve_competition,
        "feve_competition": feve_competition,
    }
    if "oracle_correlation" not in rows or rows.oracle_correlation.isna().all():
        return summary
    oracle = rows.oracle_correlation.mean()
    return summary | {
        "feve_true_noise": _kept_mean(rows.feve_true_noise, rows.fev_true_noise, fev_threshold),
        "oracle_correlation": oracle,
        "oracle_correlation_to_average": rows.oracle_correlation_to_average.mean(),
        "oracle_feve_competition": _kept_mean(rows.oracle_feve, rows.fev, fev_threshold),
        "correlation_fraction_of_oracle": rows.correlation.mean() / oracle,
        **rf_recovery({c: rows[c].to_numpy() for c in rows}),
        "shift_r_x": rows.shift_r_x.mean(),
        "shift_r_y": rows.shift_r_y.mean(),
    }


def session_table(neurons: pd.DataFrame, fev_threshold: float = FEV_THRESHOLD) -> pd.DataFrame:
    """One row per data_key, then one ``data_key="all"`` row pooling every neuron: the mean
    single-trial correlation, mean correlation to average and the competition's FEVE (mean of
    per-neuron FEVE over neurons with FEV ≥ threshold; ``feve`` and ``feve_competition`` are the
    same number), with neuron and trial counts. With the simulator's truth also: FEVE with the
    true noise, the oracle's scores, the model's correlation as a fraction of the oracle's, RF
    recovery (``ground_truth.rf_recovery``, pooled over neurons) and the shifter's ``shift_r_*``
    (mean over neurons)."""
    rows = [
        {"data_key": key, "n_trials": int(group.n_trials.iloc[0])} | _summary(group, fev_threshold)
        for key, group in neurons.groupby("data_key", sort=False)
    ]
    trials = sum(row["n_trials"] for row in rows)
    rows.append({"data_key": "all", "n_trials": trials} | _summary(neurons, fev_threshold))
    return pd.DataFrame(rows)


def write_tables(
    neurons: pd.DataFrame, sessions: pd.DataFrame, output_dir: Path
) -> tuple[Path, Path]:
    """``neurons.csv`` and ``sessions.csv`` in ``output_dir``, each written atomically."""
    paths = (Path(output_dir) / "neurons.csv", Path(output_dir) / "sessions.csv")
    for table, path in zip((neurons, sessions), paths, strict=True):
        atomic_write_bytes(table.to_csv(index=False).encode(), path)
    return paths
