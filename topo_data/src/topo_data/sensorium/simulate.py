"""A ground-truth mouse V1 population written in the Sensorium 2022 static layout.

Fitting a Sensorium model to real data says how well it predicts, not whether what it learned is
right. This simulator writes a session whose answer is known: every neuron has a cortical position
(µm), a receptive field (RF) whose centre is a smooth map of that position (retinotopy) plus
scatter, a Gabor or difference-of-Gaussians (DoG) filter, a softplus nonlinearity, a behavioural
gain and Poisson noise; the eye position moves every RF by one global translation per trial. The
session goes through :func:`topo_data.sensorium.writer.write_static_session`, so it is read by the
same loader as the published zips, and the truth is saved beside it (``<name>.ground_truth.npz``).

Model of trial t, neuron n (units: image pixels of the full image, x = column, y = row):

* contrast ``c_t = image_t / 255 - 0.5``; the filter ``f_n`` is centred at ``rf_center_px[n] +
  shift_px[t]`` with ``shift_px[t] = pupil_to_shift_px @ (pupil_center[t] - pupil_reference)``;
  filters are zero-mean and unit-L2 on a padded canvas around the screen (:func:`canvas`), which
  is gray (contrast 0) beyond the image, so RFs near a border are cut, never wrapped.
* drive ``d = <f_n, c_t>``, standardised ``z = (d - drive_mean) / drive_std``;
* rate ``r = amplitude * gain * log(1 + exp(slope * (z - threshold)))`` with the gain
  ``exp(behavior_weights[n] @ (behavior[t] - behavior_mean) / behavior_std)``;
* response ``~ Poisson(r)`` (stored as float32 counts).

RF positions are also given in grid units of the full image (``grid = 2 * px / (size - 1) - 1``,
the ``align_corners=True`` convention of the readout; x = width, y = height).
:func:`pixels_to_grid` and :func:`grid_units_per_pixel` convert to the grid of a rescaled and
cropped feature map (e.g. the 28 x 56 output of the baseline core at scale 0.25: ``scale=0.25,
crop=4``).

The defaults are sized for a recovery check: the 2022 CNN baseline (scale 0.25, behaviour channels
and shifter, Adam 0.009, batch 128) fitted to 1,500 training trials reached RF-centre correlations
of 0.98 with the truth, and the shifter the true map, after 7 epochs. With 1.5x smaller RFs and
150-200 neurons, 7 epochs were not enough (readout positions still mirrored or wandering).

The response model (filters, drives, rates and the pixel/grid conversions) lives in
:mod:`topo_data.sensorium.response_model`, the images and behaviour in
:mod:`topo_data.sensorium.simulated_stimuli`; their public names are re-exported here.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from topo_data.errors import TopoDataError
from topo_data.sensorium.response_model import (
    _grid_to_pixels,
    _rates_from_drive,
    canvas,
    filter_bank,
    filter_drives,
    grid_units_per_pixel,
    model_rates,
    pixels_to_grid,
)
from topo_data.sensorium.simulated_stimuli import behavior_series, photo_crops, pink_noise
from topo_data.sensorium.writer import write_static_session

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "FORMAT_VERSION",
    "GROUND_TRUTH_KEYS",
    "GROUND_TRUTH_SUFFIX",
    "PUPIL_TO_SHIFT_PX_AT_DEFAULT",
    "RETINOTOPY_LINEAR",
    "RETINOTOPY_QUADRATIC",
    "STIMULI",
    "behavior_series",
    "canvas",
    "filter_bank",
    "filter_drives",
    "grid_units_per_pixel",
    "ground_truth_path",
    "load_ground_truth",
    "model_rates",
    "photo_crops",
    "pink_noise",
    "pixels_to_grid",
    "population",
    "simulate",
]

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
log = logging.getLogger(__name__)
_BEHAVIOR_WEIGHT_MEAN = np.array([0.15, 0.03, 0.20])  # log-gain per std of each behaviour
_BEHAVIOR_WEIGHT_STD = np.array([0.05, 0.02, 0.07])


def ground_truth_path(path: str | Path) -> Path:
    """``<name>.ground_truth.npz`` beside a session zip or folder (or the npz path itself)."""
    path = Path(path)
    if path.name.endswith(GROUND_TRUTH_SUFFIX):
        return path
    stem = path.name[: -len(".zip")] if path.suffix == ".zip" else path.name
    return path.with_name(stem + GROUND_TRUTH_SUFFIX)


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
    RF sizes scale with the image width: Gabor σ 3.4-5.5 % of it (2.2-3.5 px at 64 px wide), DoG
    centre σ 2.5-4 % (1.6-2.6 px); Gabor wavelength 3-5 σ. Smaller RFs are realistic too, but a
    baseline CNN fitted for minutes on a CPU then rarely finds them (see the module notes).
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
    n_neurons: int = 300,
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
    which behaviour and eye position drift); images are whole gray levels 0..255, (1, H, W),
    stored as uint8 (the readers cast them to float64 before normalising, so the numbers a
    model sees are those of float32 files, at a quarter of the disk).
    """
    counts = {
        "train": _check_int(n_train, "n_train", 0),
        "validation": _check_int(n_validation, "n_validation", 0),
        "test": _check_int(n_test_images, "n_test_images", 1),
        "final_test": _check_int(n_final_test_images, "n_final_test_images", 0),
    }
    repeats = _check_int(repeats, "repeats", 1)
    n_neurons = _check_int(n_neurons, "n_neurons", 1)
    if len(tuple(image_size)) != 2:
        raise TopoDataError(
            "bad image size", field="image_size", expected="(H, W)", found=image_size
        )
    size = tuple(_check_int(s, "image_size", 16) for s in image_size)
    if stimulus not in STIMULI:
        raise TopoDataError("unknown stimulus", field="stimulus", expected=STIMULI, found=stimulus)
    tiers, image_of_slot = _tier_slots(counts, repeats)
    log.info(
        "simulating %d neurons, %d trials of %d×%d %s (%.0f MB of images)",
        n_neurons,
        len(tiers),
        *size,
        stimulus,
        len(tiers) * size[0] * size[1] / 1e6,
    )
    rng_neurons, rng_images, rng_trials, rng_behavior, rng_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    truth = population(rng_neurons, n_neurons, size, rf_scatter=rf_scatter)
    truth["behavior_weights"] *= float(behavior_gain)
    n_images = sum(counts.values())
    make = photo_crops if stimulus == "photos" else pink_noise
    images = make(rng_images, n_images, size)
    image_ids = rng_trials.choice(np.arange(1, 20 * n_images + 1), n_images, replace=False)

    order = rng_trials.permutation(len(tiers))  # file index i holds slot order[i]
    tiers, image_of_file = tiers[order], image_of_slot[order]
    trial_idx = rng_trials.permutation(len(tiers))  # chronological position of file i
    behavior, pupil = behavior_series(rng_behavior, len(tiers))
    behavior, pupil = behavior[trial_idx], pupil[trial_idx]

    height, width = size
    to_shift = PUPIL_TO_SHIFT_PX_AT_DEFAULT * np.array([[width / 256], [height / 144]])
    truth["pupil_to_shift_px"] = to_shift * float(pupil_shift)
    truth["pupil_to_shift_grid"] = grid_units_per_pixel(size)[:, None] * truth["pupil_to_shift_px"]
    truth["pupil_reference"] = pupil.mean(0)
    truth["shift_px"] = (pupil - truth["pupil_reference"]) @ truth["pupil_to_shift_px"].T
    truth["behavior_mean"], truth["behavior_std"] = behavior.mean(0), behavior.std(0)

    bank = filter_bank(truth)
    trial_images = images[image_of_file][:, None]  # (N, 1, H, W), as written
    drive = filter_drives(trial_images, bank, truth["shift_px"])
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
        trial_images.astype(np.uint8),  # whole gray levels 0..255: a quarter of float32's bytes
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
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the truth from other users
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
