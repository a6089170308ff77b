"""The ground-truth response model: filters on a padded canvas, their drives and the rates.

Also the conversions between full-image pixels and the grid units of a rescaled, cropped feature
map (``align_corners=True``), in which a readout states RF positions. See
:mod:`topo_data.sensorium.simulate` for the model's equations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from topo_data.errors import TopoDataError

_CHUNK = 128


def _map_size(image_size: tuple[int, int], scale: float, crop: int) -> np.ndarray:
    height, width = image_size
    return np.array([round(width * scale) - 2 * crop, round(height * scale) - 2 * crop], float)


def pixels_to_grid(
    xy_px: np.ndarray, image_size: tuple[int, int], scale: float = 1.0, crop: int = 0
) -> np.ndarray:
    """Full-image pixel positions (..., 2) as (x, y) grid units of a rescaled, cropped map.

    ``scale`` maps pixel centres as ``skimage.transform.rescale`` does (``(p + 0.5) * scale -
    0.5``); ``crop`` pixels are then removed from every border (a valid 9x9 convolution crops 4);
    the result uses the ``align_corners=True`` convention: -1 and 1 are the first and last pixel.
    """
    scaled = (np.asarray(xy_px, dtype=np.float64) + 0.5) * scale - 0.5 - crop
    return 2.0 * scaled / (_map_size(image_size, scale, crop) - 1.0) - 1.0


def grid_units_per_pixel(
    image_size: tuple[int, int], scale: float = 1.0, crop: int = 0
) -> np.ndarray:
    """(2,) grid units (x, y) of that map per full-image pixel of displacement.

    E.g. the baseline shifter's output per camera pixel of pupil is
    ``grid_units_per_pixel(size, 0.25, 4)[:, None] * pupil_to_shift_px``.
    """
    return 2.0 * scale / (_map_size(image_size, scale, crop) - 1.0)


def _grid_to_pixels(grid: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    height, width = image_size
    return (np.asarray(grid) + 1.0) / 2.0 * (np.array([width, height], float) - 1.0)


def canvas(image_size: tuple[int, int]) -> tuple[int, int, int]:
    """``(pad, height, width)`` of the plane the filters live on.

    The image sits at rows and columns ``pad..`` of a larger canvas that is gray (contrast 0)
    elsewhere, so an RF near a border is cut by the screen's edge instead of wrapping around, and
    filters are normalised over the whole canvas (their tails vanish before its edges). Sizes are
    rounded up to multiples of 32 for the FFT.
    """
    height, width = image_size
    pad = math.ceil(0.3 * width)
    return pad, 32 * math.ceil((height + 2 * pad) / 32), 32 * math.ceil((width + 2 * pad) / 32)


def filter_bank(truth: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n, canvas H, canvas W) float32 filters at the RF centres (no eye shift), see :func:`canvas`.

    Gabor: envelope ``exp(-(x'² / 2σ² + y'² / 2(aσ)²))`` times ``cos(2π x' / λ + φ)``, with
    ``x' = dx cos θ + dy sin θ`` along the carrier (θ from +x towards +y, i.e. image down) and
    ``y' = -dx sin θ + dy cos θ``; its mean is removed in proportion to the envelope. DoG:
    ``polarity * (G(σ) / ΣG(σ) - G(kσ) / ΣG(kσ))`` with ``k = surround_ratio``. Both are then
    scaled to unit L2 norm over the canvas.
    """
    pad, height, width = canvas(tuple(int(s) for s in truth["image_size"]))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64) - pad
    n_neurons = len(truth["unit_ids"])
    bank = np.empty((n_neurons, height, width), np.float32)
    for start in range(0, n_neurons, 16):  # blocks of neurons bound the temporaries' memory
        part = {k: np.asarray(truth[k])[start : start + 16, None, None] for k in _FILTER_KEYS}
        bank[start : start + 16] = _filters(part, rows, cols)
    return bank


_FILTER_KEYS = (
    "rf_center_px",
    "filter_type",
    "sigma_px",
    "aspect",
    "orientation_rad",
    "wavelength_px",
    "phase_rad",
    "surround_ratio",
    "polarity",
)


def _filters(p: Mapping[str, np.ndarray], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Filters of a block of neurons (parameters shaped (b, 1, 1)) on the pixel grid given."""
    dx, dy = cols - p["rf_center_px"][:, :, :, 0], rows - p["rf_center_px"][:, :, :, 1]
    sigma, theta, is_dog = p["sigma_px"], p["orientation_rad"], p["filter_type"] == "dog"
    along = dx * np.cos(theta) + dy * np.sin(theta)
    across = -dx * np.sin(theta) + dy * np.cos(theta)
    aspect = np.where(is_dog, 1.0, p["aspect"])
    envelope = np.exp(-(along**2) / (2 * sigma**2) - across**2 / (2 * (aspect * sigma) ** 2))
    wavelength = np.where(is_dog, 1.0, p["wavelength_px"])
    gabor = envelope * np.cos(2 * np.pi * along / wavelength + np.where(is_dog, 0, p["phase_rad"]))
    gabor -= envelope * gabor.sum((1, 2), keepdims=True) / envelope.sum((1, 2), keepdims=True)
    radius2 = dx**2 + dy**2
    ratio = np.where(is_dog, p["surround_ratio"], 2.0)
    center = np.exp(-radius2 / (2 * sigma**2))
    surround = np.exp(-radius2 / (2 * (ratio * sigma) ** 2))
    dog = center / center.sum((1, 2), keepdims=True) - surround / surround.sum(
        (1, 2), keepdims=True
    )
    bank = np.where(is_dog, dog * p["polarity"], gabor)
    return bank / np.sqrt((bank**2).sum((1, 2), keepdims=True))


def filter_drives(
    images: np.ndarray, filters: np.ndarray, shifts_px: np.ndarray | None = None
) -> np.ndarray:
    """Raw drives ``<f_n(· - shift_t), image_t / 255 - 0.5>`` (T, n), float64.

    Args:
        images: (T, H, W) or (T, 1, H, W) in 0..255.
        filters: (n, canvas H, canvas W) from :func:`filter_bank`.
        shifts_px: (T, 2) RF translation (x, y) in pixels per image; None for no shift.

    The shift is a phase ramp on the filters' spectra (exact for these smooth filters, sub-pixel
    included), so all trials share one matrix product instead of a filter bank per trial; only
    the frequencies where some filter has power (|F| > 1e-7 of the largest) enter it.
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    n_images, height, width = images.shape
    pad, canvas_h, canvas_w = canvas((height, width))
    if filters.shape[1:] != (canvas_h, canvas_w):
        raise TopoDataError(
            "filters do not match the images' canvas",
            field="filters",
            expected=(len(filters), canvas_h, canvas_w),
            found=filters.shape,
        )
    spectra = torch.fft.rfft2(torch.from_numpy(filters)).flatten(1)  # (n, K)
    magnitude = spectra.abs().amax(0)
    keep = torch.nonzero(magnitude > 1e-7 * magnitude.max()).squeeze(1)
    weights = torch.full((canvas_h, canvas_w // 2 + 1), 2.0)
    weights[:, 0] = 1.0
    weights[:, -1] = 1.0  # canvas_w is even: the Nyquist column appears once
    kernel = (spectra.conj() * weights.flatten())[:, keep].T / (canvas_h * canvas_w)
    freq_x = torch.fft.rfftfreq(canvas_w)[None, :].expand(canvas_h, -1).flatten()[keep]
    freq_y = torch.fft.fftfreq(canvas_h)[:, None].expand(-1, canvas_w // 2 + 1).flatten()[keep]
    shifts = np.zeros((n_images, 2)) if shifts_px is None else np.asarray(shifts_px, np.float64)
    out = np.empty((n_images, len(filters)))
    for start in range(0, n_images, _CHUNK):
        block = images[start : start + _CHUNK]
        contrast = torch.zeros(len(block), canvas_h, canvas_w)
        contrast[:, pad : pad + height, pad : pad + width] = torch.from_numpy(
            block.astype(np.float32) / 255.0 - 0.5
        )
        spectrum = torch.fft.rfft2(contrast).flatten(1)[:, keep]
        sx, sy = torch.from_numpy(shifts[start : start + _CHUNK]).float().T[:, :, None]
        ramp = torch.exp(2j * math.pi * (freq_x * sx + freq_y * sy))
        out[start : start + _CHUNK] = ((spectrum * ramp) @ kernel).real.double().numpy()
    return out


def model_rates(
    truth: Mapping[str, np.ndarray],
    images: np.ndarray,
    pupil_center: np.ndarray | None = None,
    behavior: np.ndarray | None = None,
) -> np.ndarray:
    """Noise-free rates (T, n) of the ground-truth population for any images of its size.

    ``pupil_center`` (T, 2) in camera pixels (None: the reference, no shift); ``behavior``
    (T, 3) (None: the session mean, gain 1).
    """
    size = tuple(int(s) for s in truth["image_size"])
    images = np.asarray(images)
    if images.shape[-2:] != size or images.ndim not in (3, 4):
        raise TopoDataError(
            "images do not match the simulated population",
            field="images",
            expected=f"(T, H, W) or (T, 1, H, W) with (H, W) = {size}",
            found=images.shape,
        )
    shifts = None
    if pupil_center is not None:
        offset = np.asarray(pupil_center, np.float64) - truth["pupil_reference"]
        shifts = offset @ np.asarray(truth["pupil_to_shift_px"]).T
    drive = filter_drives(images, filter_bank(truth), shifts)
    return _rates_from_drive(truth, drive, behavior)


def _rates_from_drive(
    truth: Mapping[str, np.ndarray], drive: np.ndarray, behavior: np.ndarray | None
) -> np.ndarray:
    z = (drive - truth["drive_mean"]) / truth["drive_std"]
    log_gain = 0.0
    if behavior is not None:
        offset = np.asarray(behavior, np.float64) - truth["behavior_mean"]
        log_gain = (offset / truth["behavior_std"]) @ np.asarray(truth["behavior_weights"]).T
    softplus = np.logaddexp(0.0, truth["slope"] * (z - truth["threshold"]))
    return truth["amplitude"] * np.exp(log_gain) * softplus
