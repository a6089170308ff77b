"""Sensorium 2022 submission files: write, read and score.

The competition's CSV has one row per trial with the columns ``trial_indices, image_ids,
prediction, neuron_ids``; ``prediction`` and ``neuron_ids`` are Python-style lists
(``"[0.5, 1.25, ...]"``), and every row repeats the same neuron ids. The scorer does what the
competition's ``Metrics`` does: sort both sides by trial id and by neuron id, require the ids to
match exactly, then average the per-neuron scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from topo_eval.predictive.metrics import FEV_THRESHOLD
from topo_eval.predictive.report import (
    Loader,
    image_ids_of,
    model_predictions,
    session_scores,
)
from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes

COLUMNS = ("trial_indices", "image_ids", "prediction", "neuron_ids")


def submission_file_name(tier: str) -> str:
    """``submission_file_live_test.csv`` for tier test (the live test), else ``…_<tier>.csv``."""
    return f"submission_file_{'live_test' if tier == 'test' else tier}.csv"


@dataclass(frozen=True)
class Submission:
    """One submission file's contents, in file order.

    Attributes:
        trial_ids: (trials,) trial indices.
        image_ids: (trials,) frame image ids.
        neuron_ids: (neurons,) unit ids, the column order of ``predictions``.
        predictions: (trials, neurons) float64, standardised response units.
    """

    trial_ids: np.ndarray
    image_ids: np.ndarray
    neuron_ids: np.ndarray
    predictions: np.ndarray


def competition_trial_indices(dataset: object, trial_ids: np.ndarray) -> np.ndarray:
    """The ``trial_indices`` the competition writes: ``meta/trials/trial_idx`` of each trial
    (hashed strings in the two competition mice), or the file index where a dataset has none."""
    trials = getattr(getattr(dataset, "session", None), "trials", None)
    if trials is None or "trial_idx" not in trials:
        return np.asarray(trial_ids)
    return np.asarray(trials["trial_idx"])[np.asarray(trial_ids)]


def ground_truth(loader: Loader) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(responses (trials, neurons) float64, trial_indices, image_ids, neuron_ids) of a tier,
    as the competition's ground-truth file holds them (the loader's standardised units)."""
    batches = list(loader)
    if not batches:
        raise TopoError("the loader yields no batches", field="loader")
    responses = torch.cat([batch.responses.cpu() for batch in batches]).double().numpy()
    trial_ids = torch.cat([torch.as_tensor(batch.trial_id).cpu() for batch in batches]).numpy()
    dataset = loader.dataset
    return (
        responses,
        competition_trial_indices(dataset, trial_ids),
        image_ids_of(dataset, trial_ids),
        np.asarray(dataset.neurons.unit_ids),
    )


def _list_column(rows: np.ndarray) -> list[str]:
    """Rows as ``"[a, b, ...]"`` strings: Python's list repr, which round-trips floats."""
    return [str(row) for row in rows.tolist()]


def write_submission(
    model: nn.Module,
    loader: Loader,
    path: str | Path,
    data_key: str,
    tier: str,
    device: str | torch.device = "cpu",
) -> Path:
    """Write the submission CSV of ``tier`` for one session into the directory ``path``.

    Returns:
        The file written (atomically): ``path / submission_file_name(tier)``.
    """
    found_tier = getattr(loader.dataset, "tier", tier)
    if found_tier != tier:
        raise TopoError(
            "the loader is of another tier", field="tier", expected=tier, found=found_tier
        )
    _, predictions, trial_ids, image_ids = model_predictions(model, loader, data_key, device)
    if not np.isfinite(predictions).all():
        raise TopoError("the model predicts NaN or inf", field=f"model(data_key={data_key})")
    neuron_ids = np.asarray(loader.dataset.neurons.unit_ids)
    if neuron_ids.shape != (predictions.shape[1],):
        raise TopoError(
            "unit ids do not match the predicted neurons",
            field=f"{data_key}: dataset.neurons.unit_ids",
            expected=(predictions.shape[1],),
            found=neuron_ids.shape,
        )
    table = pd.DataFrame(
        {
            "trial_indices": competition_trial_indices(loader.dataset, trial_ids),
            "image_ids": image_ids,
            "prediction": _list_column(predictions),
            "neuron_ids": str(neuron_ids.tolist()),
        }
    )
    target = Path(path) / submission_file_name(tier)
    atomic_write_bytes(table.to_csv(index=False).encode(), target)
    return target


def _parse_lists(column: pd.Series, path: Path, field: str) -> np.ndarray:
    try:
        return np.array(json.loads("[" + ",".join(column) + "]"))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise TopoError(
            "a list column cannot be parsed",
            file=path,
            field=field,
            expected="rows like [0.5, 1.25] of equal length, finite numbers",
            found=f"{type(error).__name__}: {error}",
        ) from error


def read_submission(path: str | Path) -> Submission:
    """Read a submission CSV (as written by ``write_submission`` or the competition's code)."""
    path = Path(path)
    if not path.is_file():
        raise TopoError("no such submission file", file=path, expected="a submission CSV")
    table = pd.read_csv(path)
    missing = [name for name in COLUMNS if name not in table.columns]
    if missing or table.empty:
        raise TopoError(
            "not a submission file",
            file=path,
            expected=f"columns {list(COLUMNS)} and at least one row",
            found=f"columns {list(table.columns)}, {len(table)} rows",
        )
    first = table.neuron_ids.iloc[0]
    if not (table.neuron_ids == first).all():
        raise TopoError("rows list different neuron ids", file=path, field="neuron_ids")
    neuron_ids = _parse_lists(pd.Series([first]), path, "neuron_ids")[0]
    predictions = _parse_lists(table.prediction, path, "prediction").astype(np.float64)
    if predictions.shape != (len(table), len(neuron_ids)):
        raise TopoError(
            "predictions do not have one value per neuron id",
            file=path,
            field="prediction",
            expected=(len(table), len(neuron_ids)),
            found=predictions.shape,
        )
    return Submission(
        table.trial_indices.to_numpy(), table.image_ids.to_numpy(), neuron_ids, predictions
    )


def _sorted_ids(ids: np.ndarray, field: str) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids)
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    if (ordered[1:] == ordered[:-1]).any():
        raise TopoError("ids repeat", field=field, found=ordered[1:][ordered[1:] == ordered[:-1]])
    return order, ordered


def _require_equal(submitted: np.ndarray, truth: np.ndarray, field: str) -> None:
    if submitted.shape != truth.shape or not (submitted == truth).all():
        differ = np.flatnonzero(submitted != truth)[:5] if submitted.shape == truth.shape else None
        raise TopoError(
            f"the submission's {field} do not match the ground truth",
            field=field,
            expected=f"{truth.size} ids equal to the ground truth's (after sorting)",
            found=f"{submitted.size} ids"
            + ("" if differ is None else f"; first differing (sorted) positions {differ.tolist()}"),
        )


def score_submission(
    submission: Submission | str | Path,
    responses: np.ndarray,
    trial_ids: np.ndarray,
    image_ids: np.ndarray,
    neuron_ids: np.ndarray,
    fev_threshold: float = FEV_THRESHOLD,
) -> dict[str, float]:
    """The competition's three scores of a submission against ground truth.

    Args:
        submission: a Submission or the path of a submission CSV.
        responses: (trials, neurons) ground truth in standardised units.
        trial_ids, image_ids: (trials,) of the ground truth.
        neuron_ids: (neurons,) of the ground truth.

    Returns:
        ``single_trial_correlation`` and ``correlation_to_average`` (means over neurons) and
        ``feve`` (mean over neurons with FEV ≥ threshold; NaN when none).
    """
    if not isinstance(submission, Submission):
        submission = read_submission(submission)
    responses = np.asarray(responses, dtype=np.float64)
    truth_trials, trials = _sorted_ids(trial_ids, "trial_indices")
    truth_neurons, neurons = _sorted_ids(neuron_ids, "neuron_ids")
    if responses.shape != (trials.size, neurons.size):
        raise TopoError(
            "ground-truth responses do not match their ids",
            field="responses",
            expected=(trials.size, neurons.size),
            found=responses.shape,
        )
    sub_trials, sub_trial_ids = _sorted_ids(submission.trial_ids, "trial_indices")
    sub_neurons, sub_neuron_ids = _sorted_ids(submission.neuron_ids, "neuron_ids")
    _require_equal(sub_trial_ids, trials, "trial_indices")
    _require_equal(sub_neuron_ids, neurons, "neuron_ids")
    truth = responses[truth_trials][:, truth_neurons]
    predicted = submission.predictions[sub_trials][:, sub_neurons]
    scores = session_scores(truth, predicted, np.asarray(image_ids)[truth_trials], fev_threshold)
    kept = scores["fev"] >= fev_threshold
    return {
        "single_trial_correlation": float(scores["correlation"].mean()),
        "correlation_to_average": float(scores["correlation_to_average"].mean()),
        "feve": float(scores["feve"][kept].mean()) if kept.any() else float("nan"),
    }
