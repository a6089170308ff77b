"""Stimuli and behaviour of the simulated sessions: photo crops, pink noise, behaviour and pupil."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.signal import lfilter

from topo_data.images.embedded import EMBEDDED_PHOTOS, photo_path
from topo_data.sensorium.response_model import _CHUNK

_PUPIL_MEAN = np.array([300.0, 250.0])  # camera pixels (x, y)
_PUPIL_STD = np.array([4.0, 2.0])


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
