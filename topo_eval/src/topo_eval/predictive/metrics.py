"""Predictive-model metrics of the Sensorium competition, on numpy arrays (trials × neurons).

Definitions follow neuralpredictors / sensorium: correlations are
means of products of z-scored arrays (population std + eps), computed per neuron; FEVE keeps
neurons whose fraction of explainable variance is at least 0.15. Predictions must be in the
same (standardised) units as the targets: FEVE depends on scale and offset.

The competition's noise is the variance across repeats of an image, which also holds whatever
else changes between repeats (behaviour, eye position); ``*_given_rates`` take the noise from
known true rates instead (a simulated mouse), see docs/predictive.md, "Which FEVE to trust".
"""

from __future__ import annotations

import numpy as np

from topo_models import TopoError

FEV_THRESHOLD = 0.15


def _pair(targets: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(targets, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape:
        raise TopoError(
            "targets and predictions must be (trials, neurons) of one shape",
            field="targets / predictions",
            found=(y.shape, p.shape),
        )
    if not (np.isfinite(y).all() and np.isfinite(p).all()):
        raise TopoError("targets or predictions hold NaN or inf", field="targets / predictions")
    return y, p


def correlation(targets: np.ndarray, predictions: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per-neuron correlation over trials (single-trial correlation); constant → 0."""
    y, p = _pair(targets, predictions)
    zy = (y - y.mean(axis=0)) / (y.std(axis=0) + eps)
    zp = (p - p.mean(axis=0)) / (p.std(axis=0) + eps)
    return (zy * zp).mean(axis=0)


def _by_image(values: np.ndarray, image_ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    ids = np.asarray(image_ids)
    if ids.shape != (values.shape[0],):
        raise TopoError(
            "one image id per trial is needed",
            field="image_ids",
            expected=(values.shape[0],),
            found=ids.shape,
        )
    unique = np.unique(ids)
    return [values[ids == image] for image in unique], unique


def correlation_to_average(
    targets: np.ndarray, predictions: np.ndarray, image_ids: np.ndarray, eps: float = 1e-8
) -> np.ndarray:
    """Per-neuron correlation across images of the responses and predictions averaged over
    each image's repeats."""
    y, p = _pair(targets, predictions)
    mean_y = np.stack([group.mean(axis=0) for group in _by_image(y, image_ids)[0]])
    mean_p = np.stack([group.mean(axis=0) for group in _by_image(p, image_ids)[0]])
    return correlation(mean_y, mean_p, eps)


def explainable_variance(targets: np.ndarray, image_ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """(fraction of explainable variance, total variance, noise variance), per neuron.

    total = variance over all trials (ddof 1); noise = mean over images of the variance across
    that image's repeats (ddof 1); FEV = (total − noise) / total.
    """
    y = np.asarray(targets, dtype=np.float64)
    groups, images = _by_image(y, image_ids)
    repeats = np.array([len(group) for group in groups])
    if (repeats < 2).any():
        raise TopoError(
            "every image needs at least two repeats to measure noise",
            field="image_ids",
            expected=">= 2 trials per image",
            found=f"image {images[repeats < 2][0]} has {repeats.min()}",
        )
    total = y.var(axis=0, ddof=1)
    noise = np.mean([group.var(axis=0, ddof=1) for group in groups], axis=0)
    return (total - noise) / total, total, noise


def feve(
    targets: np.ndarray,
    predictions: np.ndarray,
    image_ids: np.ndarray,
    fev_threshold: float = FEV_THRESHOLD,
) -> np.ndarray:
    """The competition's per-neuron fraction of explainable variance explained, NaN for
    neurons whose FEV is below ``fev_threshold`` (the competition averages the rest:
    ``np.nanmean``).

    FEVE = 1 − (mse − noise) / (total − noise), mse over all trials.
    """
    y, p = _pair(targets, predictions)
    fev, total, noise = explainable_variance(y, image_ids)
    mse = ((y - p) ** 2).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = 1 - (mse - noise) / (total - noise)
    return np.where(fev >= fev_threshold, explained, np.nan)


def explainable_variance_given_rates(
    targets: np.ndarray, rates: np.ndarray
) -> tuple[np.ndarray, ...]:
    """(FEV, total variance, noise variance) per neuron with the noise known: the mean squared
    deviation of the responses from their true rates (their Poisson means on a simulated mouse).

    Unlike :func:`explainable_variance`, this counts what moves the rate between repeats of an
    image (behaviour, eye position) as signal, not noise. total = variance over trials (ddof 1).
    """
    y, r = _pair(targets, rates)
    total = y.var(axis=0, ddof=1)
    noise = ((y - r) ** 2).mean(axis=0)
    return (total - noise) / total, total, noise


def feve_given_rates(
    targets: np.ndarray,
    predictions: np.ndarray,
    rates: np.ndarray,
    fev_threshold: float = FEV_THRESHOLD,
) -> np.ndarray:
    """Per-neuron FEVE with the noise of :func:`explainable_variance_given_rates`, NaN where
    that FEV is below ``fev_threshold``: 1 − (mse − noise) / (total − noise). The true rates
    score exactly 1; repeats that differ in behaviour do not inflate it."""
    y, p = _pair(targets, predictions)
    fev, total, noise = explainable_variance_given_rates(y, rates)
    mse = ((y - p) ** 2).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = 1 - (mse - noise) / (total - noise)
    return np.where(fev >= fev_threshold, explained, np.nan)
