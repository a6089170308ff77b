"""Standard stimuli of retinal physiology, generated in code in physical units.

Every generator returns a float32 numpy array ``(time, height, width)`` of luminance in
``[0, 1]`` (1 = the brightest value the display or the retina model's ``input_luminance_range``
can show). Durations are in seconds, sizes in degrees of visual angle, frequencies in Hz or
cycles/degree; ``steps_per_second`` (frames/s of the movie, one frame per model time step) and
``pixels_per_degree`` are always explicit, so nothing assumes the 1 kHz of the convis original
(see docs/retina.md). A duration becomes ``round(duration_s · steps_per_second)`` frames.

Directions are in degrees, counter-clockwise from +x (increasing column) with y pointing *up*
the screen (decreasing row): 0 moves right, 90 moves up. ``as_video`` adds the batch and channel
axes the retina models take.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from topo_data.errors import TopoDataError

__all__ = [
    "CHIRP_SEGMENTS",
    "as_video",
    "chirp",
    "chirp_segments",
    "drifting_grating",
    "full_field_flash",
    "moving_bar",
    "white_noise",
]

CHIRP_SEGMENTS = (
    "dark",
    "on_step",
    "off_step",
    "mean_1",
    "frequency_sweep",
    "mean_2",
    "amplitude_sweep",
    "mean_3",
)
"""Segment names of ``chirp`` in temporal order (durations: ``chirp_segments``)."""


# --------------------------------------------------------------------------- validation


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TopoDataError("Bad stimulus argument.", field=field, expected="a number", found=value)
    value = float(value)
    if not math.isfinite(value):
        raise TopoDataError("Bad stimulus argument.", field=field, expected="finite", found=value)
    return value


def _positive(value: object, field: str) -> float:
    value = _number(value, field)
    if value <= 0:
        raise TopoDataError("Bad stimulus argument.", field=field, expected="> 0", found=value)
    return value


def _non_negative(value: object, field: str) -> float:
    value = _number(value, field)
    if value < 0:
        raise TopoDataError("Bad stimulus argument.", field=field, expected=">= 0", found=value)
    return value


def _size(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TopoDataError(
            "Bad stimulus argument.", field=field, expected="an integer >= 1", found=value
        )
    return int(value)


def _luminance(value: float, field: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise TopoDataError(
            "The stimulus leaves the luminance range.",
            field=field,
            expected="luminance in [0, 1]",
            found=value,
        )
    return value


def _steps(duration_s: object, steps_per_second: object, field: str) -> int:
    """A duration (s) as a whole number of frames; negative durations are errors."""
    return int(
        round(_non_negative(duration_s, field) * _positive(steps_per_second, "steps_per_second"))
    )


def _frames(n_steps: int, height: int, width: int, value: float) -> np.ndarray:
    return np.full((n_steps, _size(height, "height"), _size(width, "width")), value, np.float32)


def _projection_px(height: int, width: int, direction_deg: float) -> np.ndarray:
    """(height, width) signed distance (px) of each pixel centre from the image centre along
    ``direction_deg`` (counter-clockwise from +x, y up)."""
    theta = math.radians(_number(direction_deg, "direction_deg"))
    x = np.arange(width) - (width - 1) / 2.0
    y_up = (height - 1) / 2.0 - np.arange(height)
    return x[None, :] * math.cos(theta) + y_up[:, None] * math.sin(theta)


# --------------------------------------------------------------------------- generators


def full_field_flash(
    duration_s: float,
    on_s: float,
    off_s: float,
    height: int,
    width: int,
    background: float = 0.0,
    intensity: float = 1.0,
    steps_per_second: float = 1000.0,
) -> np.ndarray:
    """A spatially uniform flash: ``intensity`` on frames ``[round(on_s·sps), round(off_s·sps))``.

    Args:
        duration_s: movie length (s).
        on_s, off_s: flash onset and offset times (s), ``0 <= on_s <= off_s <= duration_s``.
        background, intensity: luminance before/after and during the flash, in [0, 1].

    Returns:
        (time, height, width) float32 luminance.
    """
    n = _steps(duration_s, steps_per_second, "duration_s")
    on = _steps(on_s, steps_per_second, "on_s")
    off = _steps(off_s, steps_per_second, "off_s")
    if not on <= off <= n:
        raise TopoDataError(
            "The flash must lie inside the movie.",
            field="on_s, off_s",
            expected="0 <= on_s <= off_s <= duration_s",
            found=(on_s, off_s, duration_s),
        )
    video = _frames(n, height, width, _luminance(_number(background, "background"), "background"))
    video[on:off] = _luminance(_number(intensity, "intensity"), "intensity")
    return video


def moving_bar(
    duration_s: float,
    width_deg: float,
    speed_deg_per_s: float,
    direction_deg: float,
    height: int,
    width: int,
    pixels_per_degree: float = 10.0,
    steps_per_second: float = 1000.0,
    contrast: float = 1.0,
    background: float = 0.5,
) -> np.ndarray:
    """An infinitely long bar moving across a uniform background.

    The bar's centre, in px from the image centre along ``direction_deg``, is at step ``t``
    ``−(extent + w/2) + t · speed·ppd/sps`` with ``w = width_deg·ppd`` and ``extent`` half the
    image's length along the direction: the leading edge enters at ``t = 0``. Each pixel shows
    ``background + (bar − background)·coverage``, ``coverage`` the overlap of its 1-px footprint
    (along the direction) with the bar, so sub-pixel motion is smooth and the bar moves exactly
    ``speed·ppd/sps`` px per step (exact pixel areas for 0/90/180/270 deg).

    Args:
        contrast: Weber contrast of the bar, ``bar = background·(1 + contrast)``; negative for a
            dark bar.
        background: luminance of the background, in [0, 1].

    Returns:
        (time, height, width) float32 luminance.
    """
    n = _steps(duration_s, steps_per_second, "duration_s")
    ppd = _positive(pixels_per_degree, "pixels_per_degree")
    sps = _positive(steps_per_second, "steps_per_second")
    bar_px = _positive(width_deg, "width_deg") * ppd
    step_px = _positive(speed_deg_per_s, "speed_deg_per_s") * ppd / sps
    background = _luminance(_number(background, "background"), "background")
    bar = _luminance(background * (1.0 + _number(contrast, "contrast")), "background·(1+contrast)")
    theta = math.radians(_number(direction_deg, "direction_deg"))
    h, w = _size(height, "height"), _size(width, "width")
    extent = (abs(math.cos(theta)) * w + abs(math.sin(theta)) * h) / 2.0
    centre = -(extent + bar_px / 2.0) + step_px * np.arange(n)  # (time,)
    p = _projection_px(h, w, direction_deg)[None]  # (1, h, w)
    lo = np.maximum(p - 0.5, centre[:, None, None] - bar_px / 2.0)
    hi = np.minimum(p + 0.5, centre[:, None, None] + bar_px / 2.0)
    coverage = np.clip(hi - lo, 0.0, 1.0)
    return (background + (bar - background) * coverage).astype(np.float32)


def drifting_grating(
    duration_s: float,
    spatial_frequency_cpd: float,
    temporal_frequency_hz: float,
    direction_deg: float,
    height: int,
    width: int,
    pixels_per_degree: float = 10.0,
    steps_per_second: float = 1000.0,
    contrast: float = 1.0,
    mean: float = 0.5,
) -> np.ndarray:
    """A sinusoidal grating drifting along ``direction_deg`` at ``tf/sf`` deg/s.

    ``L = mean·(1 + contrast·cos(2π(sf·p/ppd − tf·t/sps)))`` with ``p`` the pixel's position (px)
    along the direction and ``t`` the step: the period is ``ppd/sf`` px and ``sps/tf`` steps.

    Args:
        contrast: Michelson contrast in [0, 1].
        mean: mean luminance; ``mean·(1 ± contrast)`` must lie in [0, 1].

    Returns:
        (time, height, width) float32 luminance.
    """
    n = _steps(duration_s, steps_per_second, "duration_s")
    ppd = _positive(pixels_per_degree, "pixels_per_degree")
    sps = _positive(steps_per_second, "steps_per_second")
    sf = _positive(spatial_frequency_cpd, "spatial_frequency_cpd")
    tf = _non_negative(temporal_frequency_hz, "temporal_frequency_hz")
    mean, contrast = _mean_contrast(mean, contrast)
    p = _projection_px(_size(height, "height"), _size(width, "width"), direction_deg)
    phase = 2 * np.pi * (sf * p[None] / ppd - tf * np.arange(n)[:, None, None] / sps)
    return (mean * (1.0 + contrast * np.cos(phase))).astype(np.float32)


def _mean_contrast(mean: object, contrast: object) -> tuple[float, float]:
    mean = _luminance(_number(mean, "mean"), "mean")
    contrast = _non_negative(contrast, "contrast")
    _luminance(mean * (1.0 + contrast), "mean·(1+contrast)")
    _luminance(mean * (1.0 - contrast), "mean·(1-contrast)")
    return mean, contrast


def chirp_segments(
    steps_per_second: float,
    dark_s: float = 2.0,
    step_s: float = 3.0,
    mean_s: float = 2.0,
    sweep_s: float = 8.0,
) -> dict[str, tuple[int, int]]:
    """``[start, stop)`` frame of every ``chirp`` segment, in ``CHIRP_SEGMENTS`` order.

    Durations (s): ``dark`` = dark_s, ``on_step`` = ``off_step`` = step_s, the three ``mean_*``
    = mean_s, each sweep = sweep_s. Boundaries are rounded from cumulative seconds, so they do
    not drift when a duration is not a whole number of frames.
    """
    durations = {
        "dark": _non_negative(dark_s, "dark_s"),
        "on_step": _non_negative(step_s, "step_s"),
        "off_step": step_s,
        "mean_1": _non_negative(mean_s, "mean_s"),
        "frequency_sweep": _non_negative(sweep_s, "sweep_s"),
        "mean_2": mean_s,
        "amplitude_sweep": sweep_s,
        "mean_3": mean_s,
    }
    sps = _positive(steps_per_second, "steps_per_second")
    edges = np.round(np.cumsum([0.0, *durations.values()]) * sps).astype(int)
    return {name: (int(edges[i]), int(edges[i + 1])) for i, name in enumerate(durations)}


def chirp(
    height: int,
    width: int,
    steps_per_second: float = 1000.0,
    mean: float = 0.5,
    contrast: float = 1.0,
    dark_s: float = 2.0,
    step_s: float = 3.0,
    mean_s: float = 2.0,
    sweep_s: float = 8.0,
    frequency_start_hz: float = 0.5,
    frequency_stop_hz: float = 8.0,
    amplitude_frequency_hz: float = 2.0,
) -> np.ndarray:
    """The full-field "chirp" of retinal physiology (Baden et al. 2016, Nature 529:345).

    Segments (defaults, 30 s in all; exact frames from ``chirp_segments``): 2 s dark
    (``mean·(1−contrast)``), 3 s bright step (``mean·(1+contrast)``), 3 s dark, 2 s at ``mean``,
    8 s frequency sweep ``mean·(1 + contrast·sin(2π(f0·s + (f1−f0)·s²/(2·sweep_s))))`` (frequency
    rising linearly from f0 = 0.5 to f1 = 8 Hz; ``s`` seconds into the segment), 2 s at mean,
    8 s amplitude sweep ``mean·(1 + contrast·(s/sweep_s)·sin(2π·2 Hz·s))`` (contrast rising
    linearly from 0 to ``contrast``), 2 s at mean. Both sweeps start at ``mean`` (sin 0 = 0).

    Returns:
        (time, height, width) float32 luminance.
    """
    sps = _positive(steps_per_second, "steps_per_second")
    mean, contrast = _mean_contrast(mean, contrast)
    f0 = _non_negative(frequency_start_hz, "frequency_start_hz")
    f1 = _non_negative(frequency_stop_hz, "frequency_stop_hz")
    fa = _non_negative(amplitude_frequency_hz, "amplitude_frequency_hz")
    bounds = chirp_segments(sps, dark_s=dark_s, step_s=step_s, mean_s=mean_s, sweep_s=sweep_s)
    trace = np.full(bounds["mean_3"][1], mean, np.float64)
    low, high = mean * (1.0 - contrast), mean * (1.0 + contrast)
    for name, level in (("dark", low), ("on_step", high), ("off_step", low)):
        trace[slice(*bounds[name])] = level
    sweep = float(sweep_s)
    for name in ("frequency_sweep", "amplitude_sweep"):
        start, stop = bounds[name]
        s = np.arange(stop - start) / sps
        if name == "frequency_sweep":
            chirp_rate = (f1 - f0) / sweep if sweep > 0 else 0.0
            modulation = np.sin(2 * np.pi * (f0 * s + chirp_rate * s**2 / 2))
        else:
            ramp = s / sweep if sweep > 0 else s
            modulation = ramp * np.sin(2 * np.pi * fa * s)
        trace[start:stop] = mean * (1.0 + contrast * modulation)
    video = np.broadcast_to(
        trace[:, None, None], (trace.size, _size(height, "height"), _size(width, "width"))
    )
    return np.ascontiguousarray(np.clip(video, 0.0, 1.0), dtype=np.float32)


def white_noise(
    duration_s: float,
    height: int,
    width: int,
    steps_per_second: float = 1000.0,
    frame_rate_hz: float = 100.0,
    seed: int = 0,
    contrast: float = 1.0,
    mean: float = 0.5,
    binary: bool = True,
) -> np.ndarray:
    """Spatio-temporal white noise; each noise frame is held ``sps/frame_rate_hz`` steps.

    Binary noise takes ``mean·(1 ± contrast)`` with probability 1/2 per pixel and frame (so the
    mean is ``mean`` and the RMS contrast std/mean is ``contrast``); Gaussian noise
    (``binary=False``) is ``mean·(1 + contrast·z)``, ``z ~ N(0, 1)``, clipped to [0, 1]. Values
    come from ``numpy.random.default_rng(seed)``, so a seed gives the same movie on any machine.

    Args:
        frame_rate_hz: noise refresh rate; ``steps_per_second / frame_rate_hz`` must be a whole
            number of steps (>= 1).

    Returns:
        (time, height, width) float32 luminance.
    """
    n = _steps(duration_s, steps_per_second, "duration_s")
    sps = _positive(steps_per_second, "steps_per_second")
    rate = _positive(frame_rate_hz, "frame_rate_hz")
    hold = sps / rate
    if rate > sps or abs(hold - round(hold)) > 1e-9 * hold:
        raise TopoDataError(
            "Each noise frame must last a whole number of steps.",
            field="frame_rate_hz",
            expected=f"steps_per_second / frame_rate_hz a whole number >= 1 (sps = {sps})",
            found=rate,
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TopoDataError("Bad stimulus argument.", field="seed", expected="int >= 0", found=seed)
    hold = int(round(hold))
    h, w = _size(height, "height"), _size(width, "width")
    n_frames = -(-n // hold)
    rng = np.random.default_rng(int(seed))
    if binary:
        mean, contrast = _mean_contrast(mean, contrast)
        z = 2.0 * rng.integers(0, 2, size=(n_frames, h, w)) - 1.0
    else:
        mean = _luminance(_number(mean, "mean"), "mean")
        contrast = _non_negative(contrast, "contrast")
        z = rng.standard_normal((n_frames, h, w))
    frames = np.clip(mean * (1.0 + contrast * z), 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(np.repeat(frames, hold, axis=0)[:n])


def as_video(array: np.ndarray) -> torch.Tensor:
    """(time, height, width) stimulus → float32 tensor (1, 1, time, height, width)."""
    values = np.asarray(array)
    if values.ndim != 3 or not np.issubdtype(values.dtype, np.number):
        raise TopoDataError(
            "A stimulus is a numeric (time, height, width) array.",
            field="array",
            expected="3-D numeric array",
            found=f"{values.ndim}-D {values.dtype}",
        )
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
