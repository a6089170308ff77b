"""Dimensionality of a layer's responses: PCA spectrum, effective dimensionality and the
power-law decay of the spectrum (TDANN: the spatial constraint lowers dimensionality).
"""

from __future__ import annotations

import numpy as np

from topo_eval.topography.tuning import as_responses
from topo_models import TopoError


def pca_eigenvalues(responses: np.ndarray) -> np.ndarray:
    """Eigenvalues of the units' covariance over images (sample covariance, n - 1), descending,
    min(images - 1, units) of them. Computed from the smaller Gram matrix, so 10,000 images of
    a 100,000-unit layer need a 10,000^2 matrix, not a 100,000^2 one.

    Args:
        responses: (images, units), at least 2 images.
    """
    responses = as_responses(responses)
    if responses.shape[0] < 2:
        raise TopoError(
            "PCA needs at least 2 images",
            field="responses",
            expected="(>= 2, units)",
            found=responses.shape,
        )
    centred = responses - responses.mean(axis=0, dtype=np.float64)
    gram = centred @ centred.T if centred.shape[0] <= centred.shape[1] else centred.T @ centred
    eigenvalues = np.linalg.eigvalsh(gram.astype(np.float64))[::-1] / (len(responses) - 1)
    return np.clip(eigenvalues[: min(len(responses) - 1, responses.shape[1])], 0.0, None)


def _as_spectrum(eigenvalues: object) -> np.ndarray:
    spectrum = np.asarray(eigenvalues, dtype=np.float64).ravel()
    if not len(spectrum) or not np.isfinite(spectrum).all() or (spectrum < 0).any():
        raise TopoError(
            "eigenvalues must be a non-empty vector of finite, non-negative values",
            field="eigenvalues",
            expected="finite values >= 0",
            found=spectrum[:5].tolist(),
        )
    if not spectrum.sum() > 0:
        raise TopoError("all eigenvalues are 0", field="eigenvalues", expected="a positive sum")
    return spectrum


def effective_dimensionality(eigenvalues: np.ndarray) -> float:
    """``(sum lambda)^2 / sum lambda^2`` (participation ratio): k for k equal eigenvalues, 1
    when one dominates. TDANN's human VTC reference is about 16.7."""
    spectrum = _as_spectrum(eigenvalues)
    return float(spectrum.sum() ** 2 / (spectrum**2).sum())


def power_law_exponent(eigenvalues: np.ndarray, first: int = 2, last: int = 50) -> float:
    """alpha of ``lambda_n ~ n^-alpha``: minus the least-squares slope of log lambda against
    log n over PCs ``first..last`` (1-based, inclusive; TDANN uses 2-50)."""
    spectrum = np.sort(_as_spectrum(eigenvalues))[::-1]
    if not 1 <= first < last <= len(spectrum) or not (spectrum[first - 1 : last] > 0).all():
        raise TopoError(
            "the PC range must lie within the spectrum and hold positive eigenvalues",
            field="last",
            expected=f"1 <= first < last <= {len(spectrum)}, positive eigenvalues",
            found=(first, last),
        )
    n = np.arange(first, last + 1)
    slope = np.polyfit(np.log(n), np.log(spectrum[first - 1 : last]), 1)[0]
    return float(-slope)
