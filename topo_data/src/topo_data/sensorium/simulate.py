"""A ground-truth mouse V1 population written in the Sensorium 2022 static layout.

Fitting a Sensorium model to real data says how well it predicts, not whether what it learned is
right. This simulator writes a session whose answer is known: every neuron has a cortical position
(µm), a receptive field (RF) whose centre is a smooth map of that position (retinotopy) plus
scatter, a Gabor or difference-of-Gaussians (DoG) filter, a softplus nonlinearity, a behavioural
gain and Poisson noise; the eye position moves every RF by one global translation per trial. The
session goes through :func:`topo_data.sensorium.layout.write_static_session`, so it is read by the
same loader as the published zips, and the truth is saved beside it (``<name>.ground_truth.npz``).

Model of trial t, neuron n (units: image pixels of the full image, x = column, y = row):

* contrast ``c_t = image_t / 255 - 0.5``; the filter ``f_n`` is centred at ``rf_center_px[n] +
  shift_px[t]`` with ``shift_px[t] = pupil_to_shift_px @ (pupil_center[t] - pupil_reference)``;
  filters are zero-mean and unit-L2 on the pixel grid.
* drive ``d = <f_n, c_t>``, standardised ``z = (d - drive_mean) / drive_std``;
* rate ``r = amplitude * gain * log(1 + exp(slope * (z - threshold)))`` with the gain
  ``exp(behavior_weights[n] @ (behavior[t] - behavior_mean) / behavior_std)``;
* response ``~ Poisson(r)`` (stored as float32 counts).

RF positions are also given in grid units of the full image (``grid = 2 * px / (size - 1) - 1``,
the ``align_corners=True`` convention of the readout; x = width, y = height).
:func:`pixels_to_grid` converts to the grid of a rescaled and cropped feature map (e.g. the 28 x 56
output of the baseline core at scale 0.25: ``scale=0.25, crop=4``).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.signal import lfilter

from topo_data.embedded import EMBEDDED_PHOTOS, photo_path
from topo_data.errors import TopoDataError
from topo_data.sensorium.layout import write_static_session

FORMAT_VERSION = 1
GROUND_TRUTH_SUFFIX = ".ground_truth.npz"
STIMULI = ("photos", "pink_noise")

# Retinotopy: normalised cortex (u, v) in [-1, 1]^2 -> full-image grid units. A rotated, mildly
# anisotropic affine map plus a small quadratic bend keeps every centre within |grid| < 0.75, so
# RFs (and their eye-movement shifts) stay clear of the baseline core's 4-pixel crop.
RETINOTOPY_LINEAR = np.array([[0.55, 0.10], [-0.08, 0.50]])
RETINOTOPY_QUADRATIC = np.array([[0.06, 0.0, -0.04], [0.0, 0.05, 0.0]])  # columns u², uv, v²
# Eye movements of head-fixed mice are mostly horizontal: full-image pixels per camera pixel of
# pupil displacement at 144 x 256 (rows scale with the image height and width).
PUPIL_TO_SHIFT_PX_AT_DEFAULT = np.array([[1.0, 0.2], [0.15, 0.7]])
DEFAULT_IMAGE_SIZE = (144, 256)
_PUPIL_MEAN = np.array([300.0, 250.0])  # camera pixels (x, y)
_PUPIL_STD = np.array([4.0, 2.0])
_BEHAVIOR_WEIGHT_MEAN = np.array([0.15, 0.03, 0.20])  # log-gain per std of each behaviour
_BEHAVIOR_WEIGHT_STD = np.array([0.05, 0.02, 0.07])
_CHUNK = 128


def ground_truth_path(path: str | Path) -> Path:
    """``<name>.ground_truth.npz`` beside a session zip or folder (or the npz path itself)."""
    path = Path(path)
    if path.name.endswith(GROUND_TRUTH_SUFFIX):
        return path
    stem = path.name[: -len(".zip")] if path.suffix == ".zip" else path.name
    return path.with_name(stem + GROUND_TRUTH_SUFFIX)


def pixels_to_grid(
    xy_px: np.ndarray, image_size: tuple[int, int], scale: float = 1.0, crop: int = 0
) -> np.ndarray:
    """Full-image pixel positions (..., 2) as (x, y) grid units of a rescaled, cropped map.

    ``scale`` maps pixel centres as ``skimage.transform.rescale`` does (``(p + 0.5) * scale -
    0.5``); ``crop`` pixels are then removed from every border (a valid 9x9 convolution crops 4);
    the result uses the ``align_corners=True`` convention: -1 and 1 are the first and last pixel.
    """
    height, width = image_size
    sizes = np.array([round(width * scale) - 2 * crop, round(height * scale) - 2 * crop], float)
    scaled = (np.asarray(xy_px, dtype=np.float64) + 0.5) * scale - 0.5 - crop
    return 2.0 * scaled / (sizes - 1.0) - 1.0


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


def _gray_photos() -> list[torch.Tensor]:
    """The embedded scikit-image photos as (1, 1, h, w) float32 gray levels 0..255."""
    photos = []
    for name in EMBEDDED_PHOTOS:
        with Image.open(photo_path(name)) as photo:
            gray = np.asarray(photo.convert("L"), dtype=np.float32)
        photos.append(torch.from_numpy(gray)[None, None])
    return photos


def photo_crops(rng: np.random.Generator, count: int, image_size: tuple[int, int]) -> np.ndarray:
    """(count, H, W) gray crops (0..255, float32) of the embedded photos.

    Each crop has the image's aspect ratio, a random width between 35 % and 100 % of the widest
    that fits, a random position and a random left-right flip; it is resampled bilinearly. All
    crops of one photo are one ``grid_sample`` call (their grids stacked along the height).
    """
    height, width = image_size
    photos = _gray_photos()
    which = rng.integers(0, len(photos), count)
    out = np.empty((count, height, width), np.float32)
    for index, photo in enumerate(photos):
        rows = np.flatnonzero(which == index)
        if not len(rows):
            continue
        photo_h, photo_w = photo.shape[-2:]
        widest = min(photo_w, photo_h * width / height)
        crop_w = widest * rng.uniform(0.35, 1.0, len(rows))
        crop_h = crop_w * height / width
        left = rng.uniform(0.0, photo_w - crop_w)
        top = rng.uniform(0.0, photo_h - crop_h)
        flip = np.where(rng.random(len(rows)) < 0.5, -1.0, 1.0)
        # affine_grid's normalised coordinates (align_corners=False): [-1, 1] spans the photo.
        theta = np.zeros((len(rows), 2, 3))
        theta[:, 0, 0] = flip * crop_w / photo_w
        theta[:, 0, 2] = (left + crop_w / 2) / photo_w * 2 - 1
        theta[:, 1, 1] = crop_h / photo_h
        theta[:, 1, 2] = (top + crop_h / 2) / photo_h * 2 - 1
        grid = F.affine_grid(
            torch.from_numpy(theta).float(), [len(rows), 1, height, width], align_corners=False
        )
        sampled = F.grid_sample(
            photo, grid.reshape(1, -1, width, 2), mode="bilinear", align_corners=False
        )
        out[rows] = sampled.reshape(len(rows), height, width).numpy()
    return np.clip(np.round(out), 0, 255)


def pink_noise(rng: np.random.Generator, count: int, image_size: tuple[int, int]) -> np.ndarray:
    """(count, H, W) 1/f-amplitude noise images, mean 128 and std 45 gray levels, clipped 0..255."""
    height, width = image_size
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    radius[0, 0] = np.inf  # no DC: every image is centred before its gray level is set
    out = np.empty((count, height, width), np.float32)
    for start in range(0, count, _CHUNK):
        white = rng.standard_normal((min(_CHUNK, count - start), height, width))
        noise = np.fft.irfft2(np.fft.rfft2(white) / radius, s=(height, width))
        noise /= noise.std(axis=(1, 2), keepdims=True)
        out[start : start + _CHUNK] = noise * 45.0 + 128.0
    return np.clip(np.round(out), 0, 255)


def _ar1(rng: np.random.Generator, n_series: int, length: int, tau: float) -> np.ndarray:
    """(n_series, length) stationary unit-variance AR(1) series with time constant ``tau``."""
    a = math.exp(-1.0 / tau)
    noise = rng.standard_normal((n_series, length))
    start = a * rng.standard_normal((n_series, 1))
    return lfilter([math.sqrt(1 - a * a)], [1.0, -a], noise, axis=-1, zi=start)[0]


def behavior_series(rng: np.random.Generator, n_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Chronological behaviour (T, 3) and pupil centre (T, 2).

    Behaviour columns: pupil dilation (camera pixels; dilates with running), its per-trial
    derivative, running speed (cm/s, mostly near zero with running bouts). Pupil centre: camera
    pixels (x, y), a fast AR(1) around ``(300, 250)`` with std (4, 2).
    """
    arousal = _ar1(rng, 1, n_trials, 40.0)[0]
    running = _ar1(rng, 1, n_trials, 25.0)[0]
    eye_x, eye_y = _ar1(rng, 2, n_trials, 3.0)
    speed = 8.0 * np.logaddexp(0.0, 3.0 * (running - 0.6)) / 3.0
    dilation = np.maximum(18.0 + 4.0 * (0.6 * arousal + 0.8 * running), 3.0)
    derivative = np.gradient(dilation) if n_trials > 1 else np.zeros(n_trials)
    behavior = np.column_stack([dilation, derivative, speed])
    pupil = _PUPIL_MEAN + _PUPIL_STD * np.column_stack([eye_x, eye_y])
    return behavior, pupil


def population(
    rng: np.random.Generator,
    n_neurons: int,
    image_size: tuple[int, int],
    patch_um: float = 1000.0,
    rf_scatter: float = 0.04,
    dog_fraction: float = 0.25,
) -> dict[str, np.ndarray]:
    """Neurons, RFs and tuning of the ground truth (the keys of the npz but the session ones).

    Cortex: x, y uniform over a ``patch_um`` square, z on four imaging planes 200-380 µm deep.
    RF sizes scale with the image width: Gabor σ 2.3-3.9 % of it (1.5-2.5 px at 64 px wide), DoG
    centre σ 1.6-2.6 %; Gabor wavelength 3-5 σ.
    """
    height, width = image_size
    n = n_neurons
    xy = rng.uniform(0.0, patch_um, (n, 2))
    depth = rng.choice(np.linspace(200.0, 380.0, 4), n) + rng.normal(0.0, 3.0, n)
    u = xy / (patch_um / 2) - 1.0
    quadratic = np.column_stack([u[:, 0] ** 2, u[:, 0] * u[:, 1], u[:, 1] ** 2])
    smooth = u @ RETINOTOPY_LINEAR.T + quadratic @ RETINOTOPY_QUADRATIC.T
    scatter = rng.normal(0.0, rf_scatter, (n, 2))
    grid = smooth + scatter
    is_dog = rng.random(n) < dog_fraction
    sigma = width * np.where(is_dog, rng.uniform(0.025, 0.04, n), rng.uniform(0.034, 0.055, n))
    weights = rng.normal(_BEHAVIOR_WEIGHT_MEAN, _BEHAVIOR_WEIGHT_STD, (n, 3))
    return {
        "image_size": np.array([height, width]),
        "unit_ids": np.sort(rng.choice(np.arange(1, 20 * n + 1), n, replace=False)),
        "cortex_um": np.column_stack([xy, depth]),
        "cortex_patch_um": np.array(patch_um),
        "retinotopy_linear": RETINOTOPY_LINEAR.copy(),
        "retinotopy_quadratic": RETINOTOPY_QUADRATIC.copy(),
        "rf_scatter_grid": scatter,
        "rf_center_grid": grid,
        "rf_center_px": _grid_to_pixels(grid, image_size),
        "filter_type": np.where(is_dog, "dog", "gabor"),
        "sigma_px": sigma,
        "aspect": np.where(is_dog, 1.0, rng.uniform(1.0, 1.5, n)),
        "orientation_rad": rng.uniform(0.0, np.pi, n),
        "wavelength_px": np.where(is_dog, np.nan, sigma * rng.uniform(3.0, 5.0, n)),
        "phase_rad": np.where(is_dog, np.nan, rng.uniform(0.0, 2 * np.pi, n)),
        "surround_ratio": np.where(is_dog, rng.uniform(1.8, 2.6, n), np.nan),
        "polarity": np.where(is_dog, rng.choice([-1.0, 1.0], n), 1.0),
        "amplitude": rng.lognormal(np.log(1.5), 0.3, n),
        "slope": rng.uniform(1.5, 2.5, n),
        "threshold": rng.uniform(0.0, 1.0, n),
        "behavior_weights": weights,
    }


GROUND_TRUTH_KEYS: dict[str, str] = {
    "format_version": "() int, this file's format (1)",
    "image_size": "(2,) int, (H, W) of the full image in pixels",
    "unit_ids": "(n,) int, the neurons' unit_ids in meta/neurons order",
    "cortex_um": "(n, 3) µm, x, y, depth (= meta/neurons/cell_motor_coordinates)",
    "cortex_patch_um": "() µm, side of the square patch holding x and y",
    "retinotopy_linear": "(2, 2) grid units per normalised cortex unit u = xy / (patch / 2) - 1",
    "retinotopy_quadratic": "(2, 3) grid units per u_x², u_x u_y, u_y²",
    "rf_scatter_grid": "(n, 2) grid units, each RF's departure from the smooth retinotopy",
    "rf_center_grid": "(n, 2) full-image grid units (x, y), align_corners=True, at the reference",
    "rf_center_px": "(n, 2) full-image pixels (x = column, y = row), at the reference pupil",
    "filter_type": "(n,) str, 'gabor' or 'dog'",
    "sigma_px": "(n,) pixels, Gabor envelope σ across the carrier / DoG centre σ",
    "aspect": "(n,) Gabor envelope σ along the stripes / σ across (1 for DoG)",
    "orientation_rad": "(n,) rad, carrier direction from +x towards +y (image down)",
    "wavelength_px": "(n,) pixels, Gabor carrier wavelength (nan for DoG)",
    "phase_rad": "(n,) rad, Gabor carrier phase at the centre (nan for DoG)",
    "surround_ratio": "(n,) DoG surround σ / centre σ (nan for Gabor)",
    "polarity": "(n,) +1 ON-centre / -1 OFF-centre DoG (1 for Gabor)",
    "drive_mean": "(n,) mean raw drive over the session's trials",
    "drive_std": "(n,) std of the raw drive over the session's trials",
    "amplitude": "(n,) response counts per unit softplus",
    "slope": "(n,) softplus slope per std of drive",
    "threshold": "(n,) std of drive",
    "behavior_weights": "(n, 3) log-gain per std of pupil dilation, its derivative, running",
    "behavior_mean": "(3,) session mean of the behaviour (gain 1 there)",
    "behavior_std": "(3,) session std of the behaviour",
    "pupil_reference": "(2,) camera pixels, session mean pupil centre (no RF shift there)",
    "pupil_to_shift_px": "(2, 2) full-image pixels of RF shift per camera pixel of pupil",
    "pupil_to_shift_grid": "(2, 2) full-image grid units of RF shift per camera pixel of pupil",
    "shift_px": "(N, 2) full-image pixels, RF translation (x, y) of trial file i",
    "rates": "(N, n) Poisson mean of trial file i (responses[i] ~ Poisson(rates[i]))",
    "test_image_ids": "(K,) frame_image_id of the test tier's images, sorted",
    "test_image_rates": "(K, n) rates of those images at the reference pupil and gain 1",
}
"""Every array of ``<name>.ground_truth.npz``, with its shape and units."""


def _check_int(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TopoDataError(
            "bad simulator argument", field=field, expected=f"an integer >= {minimum}", found=value
        )
    return int(value)


def _tier_slots(counts: dict[str, int], repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Tier and image index of each trial slot: train/validation once, test tiers ``repeats``."""
    tiers, image = [], []
    start = 0
    for tier, count in counts.items():
        times = repeats if tier in ("test", "final_test") else 1
        tiers += [tier] * (count * times)
        image.append(np.repeat(np.arange(start, start + count), times))
        start += count
    return np.array(tiers), np.concatenate(image)


def simulate(
    path: str | Path,
    *,
    n_neurons: int = 200,
    n_train: int = 1500,
    n_validation: int = 250,
    n_test_images: int = 50,
    repeats: int = 10,
    n_final_test_images: int = 0,
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
    stimulus: str = "photos",
    seed: int = 0,
    behavior_gain: bool = True,
    pupil_shift: bool = True,
    rf_scatter: float = 0.04,
    animal_id: int = 99999,
    session: int = 1,
    scan_idx: int = 1,
    zip: bool = True,
) -> Path:
    """Write a simulated session (zip or folder) and its ground truth; return the session path.

    Args:
        path: as for ``write_static_session``: a directory (the published name
            ``static<animal_id>-<session>-<scan_idx>-GrayImageNet-<hash>`` goes inside it), a
            ``.zip`` path or a folder path.
        n_neurons: neurons; n_train, n_validation: trials (one image each) of those tiers.
        n_test_images, repeats: the ``test`` tier shows each of its images ``repeats`` times
            (same ``frame_image_id``); n_final_test_images: the same for ``final_test``.
        image_size: (H, W) of the stored images (Sensorium: 144 x 256); RF sizes scale with W.
        stimulus: ``"photos"`` (crops of the embedded scikit-image photos) or ``"pink_noise"``.
        seed: everything is a function of it (same seed, same arrays).
        behavior_gain: False sets every behaviour weight to 0 (behaviour is still written).
        pupil_shift: False makes the pupil→shift map 0 (pupil is still written).
        rf_scatter: std (full-image grid units) of RF centres about the smooth retinotopy.
        animal_id, session, scan_idx: ``meta/neurons`` ids, hence the data_key.
        zip: write the zip (True) or only the folder.

    Trials are stored in a shuffled order (``trial_idx`` holds the chronological position, along
    which behaviour and eye position drift); images are float32 gray levels 0..255, (1, H, W).
    """
    counts = {
        "train": _check_int(n_train, "n_train", 0),
        "validation": _check_int(n_validation, "n_validation", 0),
        "test": _check_int(n_test_images, "n_test_images", 1),
        "final_test": _check_int(n_final_test_images, "n_final_test_images", 0),
    }
    repeats = _check_int(repeats, "repeats", 1)
    n_neurons = _check_int(n_neurons, "n_neurons", 1)
    size = tuple(image_size)
    if len(size) != 2 or min(_check_int(s, "image_size", 16) for s in size) < 16:
        raise TopoDataError(
            "bad image size", field="image_size", expected="(H, W) >= 16", found=size
        )
    if stimulus not in STIMULI:
        raise TopoDataError("unknown stimulus", field="stimulus", expected=STIMULI, found=stimulus)
    rng_neurons, rng_images, rng_trials, rng_behavior, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    truth = population(rng_neurons, n_neurons, size, rf_scatter=rf_scatter)
    truth["behavior_weights"] *= float(behavior_gain)
    n_images = sum(counts.values())
    make = photo_crops if stimulus == "photos" else pink_noise
    images = make(rng_images, n_images, size)
    image_ids = rng_trials.choice(np.arange(1, 20 * n_images + 1), n_images, replace=False)

    tiers, image_of_slot = _tier_slots(counts, repeats)
    order = rng_trials.permutation(len(tiers))  # file index i holds slot order[i]
    tiers, image_of_file = tiers[order], image_of_slot[order]
    trial_idx = rng_trials.permutation(len(tiers))  # chronological position of file i
    behavior, pupil = behavior_series(rng_behavior, len(tiers))
    behavior, pupil = behavior[trial_idx], pupil[trial_idx]

    height, width = size
    to_shift = PUPIL_TO_SHIFT_PX_AT_DEFAULT * np.array([[width / 256], [height / 144]])
    truth["pupil_to_shift_px"] = to_shift * float(pupil_shift)
    truth["pupil_to_shift_grid"] = (
        truth["pupil_to_shift_px"] * (2.0 / (np.array(size[::-1]) - 1))[:, None]
    )
    truth["pupil_reference"] = pupil.mean(0)
    truth["shift_px"] = (pupil - truth["pupil_reference"]) @ truth["pupil_to_shift_px"].T
    truth["behavior_mean"], truth["behavior_std"] = behavior.mean(0), behavior.std(0)

    bank = filter_bank(truth)
    drive = filter_drives(images[image_of_file], bank, truth["shift_px"])
    truth["drive_mean"], truth["drive_std"] = drive.mean(0), drive.std(0)
    truth["rates"] = _rates_from_drive(truth, drive, behavior)
    responses = rng_noise.poisson(truth["rates"]).astype(np.float32)
    test_images = np.unique(image_of_file[tiers == "test"])
    order_ids = np.argsort(image_ids[test_images])
    truth["test_image_ids"] = image_ids[test_images][order_ids]
    test_drive = filter_drives(images[test_images[order_ids]], bank)
    truth["test_image_rates"] = _rates_from_drive(truth, test_drive, None)
    truth["format_version"] = np.array(FORMAT_VERSION)

    neurons = {
        "unit_ids": truth["unit_ids"],
        "cell_motor_coordinates": truth["cortex_um"].astype(np.float32),
        "area": np.full(n_neurons, "V1"),
        "layer": np.full(n_neurons, "L2/3"),
        "animal_ids": np.full(n_neurons, animal_id),
        "sessions": np.full(n_neurons, session),
        "scan_idx": np.full(n_neurons, scan_idx),
    }
    written = write_static_session(
        path,
        images[image_of_file][:, None],
        responses,
        behavior.astype(np.float32),
        pupil.astype(np.float32),
        tiers,
        image_ids[image_of_file],
        neurons,
        trials={"trial_idx": trial_idx, "frame_image_class": np.full(len(tiers), "imagenet")},
        zip=zip,
    )
    _save_npz(ground_truth_path(written), truth)
    return written


def _save_npz(target: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` into a temporary file beside ``target``, then rename it into place."""
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".npz", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **{key: np.asarray(value) for key, value in arrays.items()})
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_ground_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The ground truth of a simulated session: its zip, folder or ``.ground_truth.npz`` path.

    Returns the arrays of :data:`GROUND_TRUTH_KEYS` (0-d arrays for scalars).
    """
    file = ground_truth_path(path)
    if not file.is_file():
        raise TopoDataError(
            "no ground truth beside this session", file=file, expected="a file written by simulate"
        )
    with np.load(file, allow_pickle=False) as data:
        truth = {key: data[key] for key in data.files}
    missing = sorted(set(GROUND_TRUTH_KEYS) - set(truth))
    if missing or int(truth.get("format_version", -1)) != FORMAT_VERSION:
        raise TopoDataError(
            "ground truth file is incomplete or of another format",
            file=file,
            field=", ".join(missing) or "format_version",
            expected=f"format {FORMAT_VERSION} with keys {sorted(GROUND_TRUTH_KEYS)}",
            found=f"format {truth.get('format_version')}",
        )
    return truth
