"""V1 tuning from grating responses: scaling, tuning curves, circular variance and the preferred
orientation of TDANN's von Mises fit (Margalit et al. 2024, V1 analyses), vectorised over units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from topo_eval.topography.maps import single_threaded_blas
from topo_models import TopoError

MACAQUE_MEDIAN_PEAK = 20.0
"""Median peak rate (spikes/s) responses are scaled to. TDANN uses the median peak rate of the
Ringach et al. (2002) macaque V1 cells; that database is not available to us, so this is a
configurable stand-in of the usual order of magnitude, not the database's value."""

SELECTIVE_CV = 0.6  # orientation-selective: circular variance below this (Ringach et al. 2002)
RESPONSIVE_MEAN = 1.0  # responsive: mean scaled response above this (spikes/s)
FIT_POINTS = 50  # TDANN interpolates each curve to 50 points before its von Mises fit
_CHUNK = 16384  # units per block of the batched fit


def as_responses(responses: object, field: str = "responses") -> np.ndarray:
    """``responses`` as a finite 2-D float array (images, units); TopoError otherwise."""
    array = np.asarray(responses)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or 0 in array.shape:
        raise TopoError(
            "responses must be a non-empty 2-D numeric array (images, units)",
            field=field,
            expected="(images, units)",
            found=f"{array.dtype} {array.shape}",
        )
    array = array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)
    if not np.isfinite(array).all():
        raise TopoError(
            "responses contain NaN or infinite values",
            field=field,
            expected="finite values",
            found=f"{int(np.size(array) - np.isfinite(array).sum())} non-finite values",
        )
    return array


def scale_to_macaque(responses: np.ndarray, median_peak: float = MACAQUE_MEDIAN_PEAK) -> np.ndarray:
    """Shift responses (images, units) to be non-negative (global minimum to 0), then scale so
    the median over units of each unit's maximum is ``median_peak``: the thresholds of TDANN's
    V1 statistics (mean > 1 spikes/s) assume macaque-like rates. Keeps the input's float dtype."""
    scaled = as_responses(responses) - np.min(responses)
    median_max = float(np.median(scaled.max(axis=0)))
    if not median_max > 0:
        raise TopoError(
            "responses are constant for most units: nothing to scale",
            field="responses",
            expected="a positive median of per-unit maxima after the shift",
            found=median_max,
        )
    scaled *= scaled.dtype.type(median_peak / median_max)
    return scaled


def tuning_curves(responses: np.ndarray, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Mean response over the images that share each label value.

    Returns:
        values: (k,) the sorted distinct labels; curves: (units, k) float64.
    """
    responses = as_responses(responses)
    labels = np.asarray(labels)
    if labels.shape != (responses.shape[0],):
        raise TopoError(
            "one label per image is needed",
            field="labels",
            expected=(responses.shape[0],),
            found=labels.shape,
        )
    values, inverse = np.unique(labels, return_inverse=True)
    means = np.zeros((len(values), len(labels)), dtype=responses.dtype)
    means[inverse, np.arange(len(labels))] = 1.0
    means /= means.sum(axis=1, keepdims=True)
    return values, (means @ responses).T.astype(np.float64)


def _as_curves(curves: object, angles_deg: object) -> tuple[np.ndarray, np.ndarray]:
    curves = np.asarray(curves, dtype=np.float64)
    angles = np.asarray(angles_deg, dtype=np.float64)
    if curves.ndim != 2 or angles.shape != (curves.shape[1],) or len(angles) < 3:
        raise TopoError(
            "curves must be (units, angles) with one angle per column, at least 3",
            field="curves",
            expected=f"(units, {len(angles)}) and >= 3 angles",
            found=f"curves {curves.shape}, angles {angles.shape}",
        )
    if np.nanmin(curves, initial=0.0) < 0:
        raise TopoError(
            "tuning curves must be non-negative (scale responses first)",
            field="curves",
            expected=">= 0",
            found=float(np.nanmin(curves)),
        )
    wrapped = np.mod(angles, 180.0)
    if not np.isfinite(angles).all() or len(np.unique(wrapped)) != len(angles):
        raise TopoError(
            "orientations must be finite and distinct modulo 180 deg",
            field="angles_deg",
            expected="distinct orientations",
            found=angles.tolist(),
        )
    return curves, wrapped


def circular_variance(curves: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """``1 - |sum r e^{2i theta}| / sum r`` per unit (Ringach et al. 2002): 0 for a unit that
    responds to one orientation only, 1 for an untuned one. NaN where a curve sums to 0.

    Args:
        curves: (units, angles) non-negative responses.
        angles_deg: (angles,) orientations in degrees.
    """
    curves, angles = _as_curves(curves, angles_deg)
    phasors = np.exp(2j * np.deg2rad(angles))
    total = curves.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.abs(curves @ phasors) / np.where(total > 0, total, np.nan)


def _interpolation(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The linear map from a curve to TDANN's 50 interpolated points: the curve closed at
    first + 180 deg (the first value repeated), sampled at ``linspace(first, first + 180, 50)``.

    Returns the column order that sorts the angles, the (angles, 50) matrix and the first angle.
    """
    order = np.argsort(angles)
    ordered = angles[order]
    closed = np.append(ordered, ordered[0] + 180.0)
    grid = np.linspace(ordered[0], ordered[0] + 180.0, FIT_POINTS)
    basis = np.eye(len(angles))
    matrix = np.stack([np.interp(grid, closed, np.append(row, row[0])) for row in basis])
    return order, matrix, float(ordered[0])


def _solve_symmetric(upper: np.ndarray, rhs: np.ndarray, damping: np.ndarray) -> np.ndarray:
    """Solve (M + damping diag(M)) x = rhs for n symmetric 3x3 matrices M given by their upper
    triangles (n, 6) = (m00, m01, m02, m11, m12, m22): closed-form cofactors, no per-matrix
    LAPACK call."""
    m00, m01, m02, m11, m12, m22 = upper.T
    scale = 1.0 + damping
    m00, m11, m22 = m00 * scale, m11 * scale, m22 * scale
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    c11 = m00 * m22 - m02 * m02
    c12 = m01 * m02 - m00 * m12
    c22 = m00 * m11 - m01 * m01
    det = m00 * c00 + m01 * c01 + m02 * c02
    det = np.where(np.abs(det) > 0, det, np.inf)  # singular: no step
    r0, r1, r2 = rhs.T
    return (
        np.stack(
            [
                c00 * r0 + c01 * r1 + c02 * r2,
                c01 * r0 + c11 * r1 + c12 * r2,
                c02 * r0 + c12 * r1 + c22 * r2,
            ],
            axis=1,
        )
        / det[:, None]
    )


def _fit_log_von_mises(y: np.ndarray, max_iter: int = 100, tol_rad: float = 1e-6) -> np.ndarray:
    """Least-squares fit of ``exp(b + p cos x + q sin x)`` to y (n, 50) on x = linspace(-pi, pi).

    This is TDANN's ``a exp(kappa cos(x - x0)) / (2 pi I0(kappa))`` with ``kappa = |(p, q)|``,
    ``x0 = atan2(q, p)`` and ``a`` folded into ``b``: the same least-squares problem for a > 0
    (always the optimum for non-negative data) without the von Mises' two branches (kappa < 0
    is x0 + pi) and with a Jacobian whose products are one matrix multiply. Initialised by the
    y^2-weighted linear fit of log y (Caruana's trick for Gaussians), then batched
    Levenberg-Marquardt steps; a unit stops once an accepted step turns x0 by < ``tol_rad`` or
    no step lowers its cost. Returns (n, 3) = (b, p, q).
    """
    x = np.linspace(-np.pi, np.pi, FIT_POINTS)
    basis = np.stack([np.ones_like(x), np.cos(x), np.sin(x)], axis=1)  # (50, 3)
    rows, cols = np.triu_indices(3)
    products = basis[:, rows] * basis[:, cols]  # (50, 6): the normal matrix's upper triangle

    def model(params: np.ndarray) -> np.ndarray:
        return np.exp(np.clip(params @ basis.T, -700.0, 700.0))

    positive = y > 0
    weights = np.where(positive, y * y, 0.0)
    log_y = np.log(np.where(positive, y, 1.0))
    ridge = np.full(len(y), 1e-9)
    result = _solve_symmetric(weights @ products, (weights * log_y) @ basis, ridge)
    params, target, index = result, y, np.arange(len(y))
    fitted = model(params)
    residual = target - fitted
    cost = np.einsum("ij,ij->i", residual, residual)
    damping = np.full(len(y), 1e-3)
    for _ in range(max_iter):
        step = _solve_symmetric((fitted * fitted) @ products, (fitted * residual) @ basis, damping)
        candidate = params + step
        new_fit = model(candidate)
        new_residual = target - new_fit
        new_cost = np.einsum("ij,ij->i", new_residual, new_residual)
        better = new_cost < cost
        (p0, q0), (p1, q1) = params[:, 1:].T, candidate[:, 1:].T
        turn = np.abs(np.arctan2(p0 * q1 - q0 * p1, p0 * p1 + q0 * q1))  # change of x0 (rad)
        params[better], fitted[better], residual[better], cost[better] = (
            candidate[better],
            new_fit[better],
            new_residual[better],
            new_cost[better],
        )
        damping = np.where(better, damping / 3.0, damping * 4.0)
        done = (better & ~(turn >= tol_rad)) | (damping > 1e12)
        if done.any():
            result[index[done]] = params[done]
            keep = ~done
            params, target, index = params[keep], target[keep], index[keep]
            fitted, residual, cost, damping = (
                fitted[keep],
                residual[keep],
                cost[keep],
                damping[keep],
            )
        if not len(index):
            break
    result[index] = params
    return result


def preferred_orientation(curves: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Preferred orientation (deg, in [0, 180)) per unit by TDANN's von Mises fit: close the
    curve at 180 deg, interpolate linearly to 50 points, fit ``a exp(kappa cos(x - x0)) /
    (2 pi I0(kappa))`` on x in [-pi, pi] by least squares and take the fit's argmax. Unlike a
    per-unit ``curve_fit`` loop, all units are fitted together (see ``_fit_log_von_mises``);
    the argmax is exact (continuous), not one of the 50 grid points. The method's linear
    interpolation pulls sharp peaks towards the nearest sampled orientation (a few deg for
    kappa >= 4 at 22.5 deg sampling); that bias is TDANN's and kept.

    Args:
        curves: (units, angles) non-negative responses, e.g. 8 orientations.
        angles_deg: (angles,) distinct orientations in degrees.

    Returns:
        (units,) float64; NaN for curves with a NaN or summing to 0. A flat curve has no peak
        (kappa = 0): its angle is arbitrary, so mask such units by CV or peak-to-peak.
    """
    curves, angles = _as_curves(curves, angles_deg)
    order, interpolation, first = _interpolation(angles)
    preferred = np.full(len(curves), np.nan)
    valid = np.flatnonzero(np.isfinite(curves).all(axis=1) & (curves.sum(axis=1) > 0))
    # the products are (n, 50) x (50, 6), too thin for BLAS threads; the blocks keep the work
    # arrays in cache-friendly ~6 MB pieces
    with single_threaded_blas():
        for start in range(0, len(valid), _CHUNK):
            block = valid[start : start + _CHUNK]
            y = curves[block][:, order] @ interpolation
            y /= y.max(axis=1, keepdims=True)  # scale-free: same argmax, better conditioned
            _, p, q = _fit_log_von_mises(y).T
            preferred[block] = np.mod(first + (np.arctan2(q, p) + np.pi) * 90.0 / np.pi, 180.0)
    return preferred


@dataclass
class V1Tuning:
    """Per-unit tuning of one layer to sine gratings (all arrays (units,) unless noted)."""

    orientation_deg: np.ndarray  # von Mises preferred orientation, [0, 180)
    sf: np.ndarray  # preferred spatial frequency (cycles per image): argmax of SF means
    colour: np.ndarray  # preferred colour label ("bw" or "rc")
    cv: np.ndarray  # circular variance of the orientation curve
    peak_to_peak: np.ndarray  # orientation curve max - min (spikes/s)
    mean_response: np.ndarray  # mean scaled response over all gratings (spikes/s)
    responsive: np.ndarray  # mean_response > 1 and CV finite
    selective: np.ndarray  # responsive and CV < 0.6
    fraction_selective: float  # selective / responsive (NaN if none responds)
    orientation_curves: np.ndarray  # (units, orientations) scaled means
    orientations: np.ndarray  # (orientations,) deg
    sfs: np.ndarray  # (sfs,) cycles per image
    colours: np.ndarray  # (colours,)


GRATING_COLUMNS = ("orientation_deg", "sf_cycles_per_image", "color")


def v1_tuning(
    responses: np.ndarray, metadata: pd.DataFrame, median_peak: float = MACAQUE_MEDIAN_PEAK
) -> V1Tuning:
    """TDANN's V1 tuning statistics of responses (images, units) to sine gratings whose
    ``metadata`` (one row per image, as ``topo_data.images.sine_gratings`` returns) has the
    columns ``orientation_deg``, ``sf_cycles_per_image`` and ``color``. Responses are scaled to
    macaque rates first (``scale_to_macaque``)."""
    responses = as_responses(responses)
    missing = [column for column in GRATING_COLUMNS if column not in metadata.columns]
    if missing or len(metadata) != responses.shape[0]:
        raise TopoError(
            "grating metadata must have one row per image and the grating columns",
            field="metadata",
            expected=f"{responses.shape[0]} rows with {list(GRATING_COLUMNS)}",
            found=f"{len(metadata)} rows, missing {missing}",
        )
    scaled = scale_to_macaque(responses, median_peak)
    orientations, orientation_curves = tuning_curves(scaled, metadata["orientation_deg"])
    sfs, sf_curves = tuning_curves(scaled, metadata["sf_cycles_per_image"])
    colours, colour_curves = tuning_curves(scaled, metadata["color"].astype(str))
    mean_response = scaled.mean(axis=0, dtype=np.float64)
    del scaled
    cv = circular_variance(orientation_curves, orientations)
    responsive = (mean_response > RESPONSIVE_MEAN) & np.isfinite(cv)
    with np.errstate(invalid="ignore"):
        selective = responsive & (cv < SELECTIVE_CV)
    n_responsive = int(responsive.sum())
    return V1Tuning(
        orientation_deg=preferred_orientation(orientation_curves, orientations),
        sf=sfs[np.argmax(sf_curves, axis=1)],
        colour=colours[np.argmax(colour_curves, axis=1)],
        cv=cv,
        peak_to_peak=np.ptp(orientation_curves, axis=1),
        mean_response=mean_response,
        responsive=responsive,
        selective=selective,
        fraction_selective=selective.sum() / n_responsive if n_responsive else float("nan"),
        orientation_curves=orientation_curves,
        orientations=orientations.astype(np.float64),
        sfs=sfs.astype(np.float64),
        colours=colours,
    )
