"""Measures of a retina's responses over time, for ``task=retina_report``: the peak, sustained
level and half-decay of step responses, a PSTH's moving average, and the Fourier amplitude at a
stimulus frequency. Plain numpy on (rows, time) arrays: one row per stimulus condition."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d


def step_measures(delta: np.ndarray, sustained_frames: int, dt: float) -> dict[str, np.ndarray]:
    """Peak, sustained level and half-decay time of step responses above baseline.

    Args:
        delta: (rows, time) response minus baseline from the spot's onset to its end.
        sustained_frames: the last frames averaged as the sustained level.
        dt: frame length (s).

    Returns:
        ``peak`` (the maximum), ``sustained``, ``half_decay_s`` (from the peak to the first
        crossing of half-way between peak and sustained, linearly interpolated; NaN if none).
    """
    rows, steps = delta.shape
    at_peak = delta.argmax(axis=1)
    peak = delta[np.arange(rows), at_peak]
    sustained = delta[:, -sustained_frames:].mean(axis=1)
    half = (peak + sustained) / 2
    after = np.arange(steps)[None] > at_peak[:, None]
    below = after & (delta <= half[:, None])
    k = below.argmax(axis=1)
    above, under = delta[np.arange(rows), k - 1], delta[np.arange(rows), k]
    fraction = (above - half) / np.where(above > under, above - under, 1.0)
    decay = (k - 1 + fraction - at_peak) * dt
    half_decay = np.where(below.any(1), decay, np.nan)
    return {"peak": peak, "sustained": sustained, "half_decay_s": half_decay}


def smooth(rates: np.ndarray, frames: int) -> np.ndarray:
    """Centred moving average of (rows, time) over ``frames`` (edges: nearest value)."""
    return uniform_filter1d(rates, max(1, frames), axis=1, mode="nearest")


def f1_amplitude(
    traces: np.ndarray, frequencies_hz: np.ndarray, steps_per_second: float, window: int
) -> np.ndarray:
    """Fourier amplitude of each (rows, time) trace at its frequency over whole cycles.

    The window is the largest whole number of cycles within the last ``window`` frames (at
    least one); the trace's mean over it is removed first, so a DC level does not leak in.
    """
    rows, steps = traces.shape
    cycles = np.floor(window * frequencies_hz / steps_per_second)
    length = np.maximum(np.round(cycles * steps_per_second / frequencies_hz), 1)
    t = np.arange(steps)
    used = t[None] >= steps - length[:, None]
    mean = np.where(used, traces, 0.0).sum(1) / length
    phase = np.exp(-2j * np.pi * frequencies_hz[:, None] * t[None] / steps_per_second)
    projection = np.where(used, (traces - mean[:, None]) * phase, 0.0).sum(1)
    return 2 * np.abs(projection) / length
