"""Where each neuron's receptive field sits, estimated from the training trials alone.

A readout that starts with its positions far from the fields may never find them: from some
initialisations the baseline's position MLP stays near a wrong map for tens of epochs while the
core learns features that suit it. The estimate gives it a start near the answer. Each neuron's
responses are correlated with every pixel of the images across trials; a field is where that
correlation is strongest, whatever its sign (ON, OFF or a Gabor's alternating lobes): the
squared correlation map, smoothed over a couple of pixels, peaks at the field's centre. One
matrix product for all neurons, so it costs about a second on a real session.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from topo_data.errors import TopoDataError

DEFAULT_SMOOTHING_PX = 1.5


def estimate_rf_centres(
    images: np.ndarray, responses: np.ndarray, smoothing_px: float = DEFAULT_SMOOTHING_PX
) -> np.ndarray:
    """(n, 2) pixel positions (x = column, y = row) of each neuron's strongest image correlation.

    Args:
        images: (trials, H, W) one channel of the model's input, any scale.
        responses: (trials, n) the neurons' responses to those trials.
        smoothing_px: σ of the Gaussian that smooths each squared-correlation map.

    A neuron whose responses never vary, or an image pixel that never varies, correlates 0;
    a neuron with no correlation anywhere lands at the image centre.
    """
    images = np.asarray(images, dtype=np.float32)
    responses = np.asarray(responses, dtype=np.float32)
    if images.ndim != 3 or responses.ndim != 2 or len(images) != len(responses):
        raise TopoDataError(
            "RF estimates need (trials, H, W) images and (trials, neurons) responses",
            field="images / responses",
            found=(images.shape, responses.shape),
        )
    if len(images) < 3:
        raise TopoDataError(
            "RF estimates need at least 3 trials", field="trials", found=len(images)
        )
    trials, height, width = images.shape
    pixels = _standardised(images.reshape(trials, -1))
    correlation = _standardised(responses).T @ pixels / trials  # (n, H·W)
    energy = gaussian_filter(
        np.square(correlation).reshape(-1, height, width), sigma=(0, smoothing_px, smoothing_px)
    ).reshape(len(correlation), -1)
    flat = energy.argmax(axis=1)
    rows, columns = np.unravel_index(flat, (height, width))
    centre = ((width - 1) / 2, (height - 1) / 2)
    flat_energy = energy.max(axis=1) <= 0  # no signal: the image centre, not pixel (0, 0)
    x = np.where(flat_energy, centre[0], columns).astype(np.float64)
    y = np.where(flat_energy, centre[1], rows).astype(np.float64)
    return np.stack([x, y], axis=1)


def _standardised(values: np.ndarray) -> np.ndarray:
    """Columns at mean 0 and std 1 (constant columns at 0)."""
    centred = values - values.mean(axis=0)
    std = centred.std(axis=0)
    return centred / np.where(std > 0, std, 1.0)
