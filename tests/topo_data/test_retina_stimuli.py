"""Retina stimuli: exact frames, periods, speeds and seeds in physical units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_data.errors import TopoDataError
from topo_data.retina.stimuli import (
    CHIRP_SEGMENTS,
    as_video,
    chirp,
    chirp_segments,
    drifting_grating,
    full_field_flash,
    moving_bar,
    white_noise,
)


def _in_unit_range(video: np.ndarray) -> bool:
    return video.dtype == np.float32 and video.min() >= 0 and video.max() <= 1


@pytest.mark.parametrize("sps", [100.0, 1000.0])
def test_flash_is_on_exactly_between_onset_and_offset_frames(sps):
    video = full_field_flash(
        1.0,
        on_s=0.2,
        off_s=0.5,
        height=3,
        width=4,
        background=0.25,
        intensity=0.75,
        steps_per_second=sps,
    )
    on, off = int(0.2 * sps), int(0.5 * sps)
    assert video.shape == (int(sps), 3, 4) and _in_unit_range(video)
    assert np.all(video[on:off] == 0.75)
    assert np.all(video[:on] == 0.25) and np.all(video[off:] == 0.25)


@pytest.mark.parametrize("direction_deg", [0.0, 90.0])
def test_grating_period_is_ppd_over_sf_pixels_and_sps_over_tf_steps(direction_deg):
    ppd, sps, sf, tf = 20.0, 200.0, 2.0, 5.0  # period 10 px, 40 steps
    video = drifting_grating(
        0.5,
        sf,
        tf,
        direction_deg,
        height=30,
        width=30,
        pixels_per_degree=ppd,
        steps_per_second=sps,
        contrast=0.8,
        mean=0.5,
    )
    assert video.shape == (100, 30, 30) and _in_unit_range(video)
    px, steps = int(ppd / sf), int(sps / tf)
    axis = 2 if direction_deg == 0 else 1
    shifted = np.take(video, np.arange(px, 30), axis=axis)
    np.testing.assert_allclose(np.take(video, np.arange(30 - px), axis=axis), shifted, atol=1e-6)
    half = np.take(video, np.arange(px // 2, 30), axis=axis)
    assert not np.allclose(np.take(video, np.arange(30 - px // 2), axis=axis), half, atol=1e-3)
    np.testing.assert_allclose(video[steps:], video[:-steps], atol=1e-6)
    # constant along the bars, mean·(1 ± contrast) at the extremes
    assert np.ptp(video, axis=1 if axis == 2 else 2).max() < 1e-6
    np.testing.assert_allclose([video.min(), video.max()], [0.1, 0.9], atol=1e-6)


def test_grating_drifts_along_its_direction():
    # direction 0: the pattern moves to +x, so frame t+1 at column j equals frame t at j − shift
    video = drifting_grating(0.1, 1.0, 10.0, 0.0, 4, 40, pixels_per_degree=20, steps_per_second=100)
    # speed tf/sf = 10 deg/s; 10 deg/s · 20 px/deg / 100 steps/s = 2 px per step
    np.testing.assert_allclose(video[1][:, 2:], video[0][:, :-2], atol=1e-6)


def _bar_centre(frame: np.ndarray, background: float) -> float:
    profile = np.abs(frame - background).sum(0)
    return float((profile * np.arange(frame.shape[1])).sum() / profile.sum())


@pytest.mark.parametrize("speed, ppd, sps", [(10.0, 10.0, 100.0), (3.0, 10.0, 100.0)])
def test_bar_moves_speed_times_ppd_over_sps_pixels_per_step(speed, ppd, sps):
    video = moving_bar(
        2.0,
        width_deg=0.4,
        speed_deg_per_s=speed,
        direction_deg=0.0,
        height=5,
        width=60,
        pixels_per_degree=ppd,
        steps_per_second=sps,
        contrast=1.0,
        background=0.5,
    )
    assert _in_unit_range(video)
    step_px = speed * ppd / sps
    # bar (4 px) fully inside between its entry and exit
    inside = [t for t in range(video.shape[0]) if np.isclose(np.abs(video[t] - 0.5).sum(), 5 * 2)]
    assert len(inside) > 10
    centres = np.array([_bar_centre(video[t], 0.5) for t in inside])
    np.testing.assert_allclose(np.diff(centres), step_px, atol=1e-4)
    # centre at step t is −(extent + w/2) + t·step from the image centre
    expected = -(30 + 2) + step_px * np.array(inside) + (60 - 1) / 2
    np.testing.assert_allclose(centres, expected, atol=1e-4)
    if step_px == 1:
        np.testing.assert_array_equal(video[inside[1]][:, 1:], video[inside[0]][:, :-1])


def test_bar_enters_at_the_start_and_direction_90_moves_up():
    video = moving_bar(1.0, 0.3, 10.0, 90.0, 40, 5, pixels_per_degree=10, steps_per_second=100)
    assert np.all(video[0] == 0.5)  # leading edge on the boundary at t = 0
    assert np.all(video[1][-1] == 1.0) and np.all(video[1][:-1] == 0.5)  # bottom row first
    dark = moving_bar(1.0, 0.3, 10.0, 0.0, 5, 40, 10, 100, contrast=-1.0, background=0.5)
    assert dark.min() == 0.0 and dark.max() == 0.5


@pytest.mark.parametrize("sps, rate", [(100.0, 25.0), (60.0, 60.0)])
def test_white_noise_frames_are_held_and_reproducible_with_the_right_mean_and_contrast(sps, rate):
    video = white_noise(
        20.0, 8, 8, steps_per_second=sps, frame_rate_hz=rate, seed=3, contrast=0.4, mean=0.5
    )
    hold = int(sps / rate)
    assert video.shape == (int(20 * sps), 8, 8) and _in_unit_range(video)
    blocks = video.reshape(-1, hold, 8, 8)
    assert np.all(blocks == blocks[:, :1])
    frames = blocks[:, 0]
    assert set(np.unique(video).tolist()) == {np.float32(0.3), np.float32(0.7)}
    assert abs(frames.mean() - 0.5) < 0.01
    assert abs(frames.std() / frames.mean() - 0.4) < 0.01
    again = white_noise(20.0, 8, 8, sps, rate, seed=3, contrast=0.4, mean=0.5)
    other = white_noise(20.0, 8, 8, sps, rate, seed=4, contrast=0.4, mean=0.5)
    np.testing.assert_array_equal(video, again)
    assert not np.array_equal(video, other)


def test_gaussian_white_noise_has_the_requested_mean_and_rms_contrast():
    video = white_noise(10.0, 10, 10, 100.0, 100.0, seed=0, contrast=0.2, mean=0.5, binary=False)
    assert _in_unit_range(video)
    assert abs(video.mean() - 0.5) < 0.005 and abs(video.std() / 0.5 - 0.2) < 0.005


def test_chirp_segments_have_the_documented_boundaries_and_levels():
    sps = 50.0
    bounds = chirp_segments(sps)
    assert tuple(bounds) == CHIRP_SEGMENTS
    seconds = [0, 2, 5, 8, 10, 18, 20, 28, 30]
    assert [b[0] for b in bounds.values()] == [int(s * sps) for s in seconds[:-1]]
    assert [b[1] for b in bounds.values()] == [int(s * sps) for s in seconds[1:]]
    video = chirp(2, 3, steps_per_second=sps, mean=0.5, contrast=1.0)
    assert video.shape == (int(30 * sps), 2, 3) and _in_unit_range(video)
    trace = video[:, 0, 0]
    assert np.all(trace[slice(*bounds["dark"])] == 0.0)
    assert np.all(trace[slice(*bounds["on_step"])] == 1.0)
    assert np.all(trace[slice(*bounds["off_step"])] == 0.0)
    for name in ("mean_1", "mean_2", "mean_3"):
        assert np.all(trace[slice(*bounds[name])] == 0.5)
    for name in ("frequency_sweep", "amplitude_sweep"):
        assert trace[bounds[name][0]] == 0.5  # sweeps start at the mean
    assert np.all(video == video[:, :1, :1])  # full field


def test_chirp_frequency_rises_and_amplitude_grows():
    sps = 1000.0
    bounds = chirp_segments(sps)
    trace = chirp(1, 1, steps_per_second=sps)[:, 0, 0].astype(np.float64) - 0.5
    freq = trace[slice(*bounds["frequency_sweep"])]
    crossings = np.flatnonzero(np.diff(np.sign(freq)) != 0) / sps
    first, last = crossings[crossings < 1.0].size, crossings[crossings > 7.0].size
    assert first < last  # more zero crossings at the end: frequency rises from 0.5 to 8 Hz
    amp = np.abs(trace[slice(*bounds["amplitude_sweep"])])
    assert amp[:1000].max() < 0.1 and amp[-1000:].max() > 0.45


def test_as_video_adds_batch_and_channel_axes():
    video = as_video(full_field_flash(0.1, 0.0, 0.05, 2, 3, steps_per_second=100))
    assert video.shape == (1, 1, 10, 2, 3) and video.dtype == torch.float32
    with pytest.raises(TopoDataError, match="time, height, width"):
        as_video(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda: full_field_flash(-1.0, 0.0, 0.0, 2, 2), "duration_s"),
        (lambda: full_field_flash(1.0, 0.5, 0.2, 2, 2), "on_s"),
        (lambda: full_field_flash(1.0, 0.0, 0.5, 2, 2, intensity=1.5), "intensity"),
        (lambda: white_noise(1.0, 2, 2, steps_per_second=100, frame_rate_hz=200), "frame_rate"),
        (lambda: white_noise(1.0, 2, 2, steps_per_second=100, frame_rate_hz=30), "frame_rate"),
        (lambda: white_noise(1.0, 2, 2, contrast=1.5, mean=0.5), "contrast"),
        (lambda: drifting_grating(1.0, -1.0, 1.0, 0.0, 2, 2), "spatial_frequency"),
        (lambda: drifting_grating(1.0, 1.0, 1.0, 0.0, 0, 2), "height"),
        (lambda: moving_bar(1.0, 0.5, 0.0, 0.0, 2, 2), "speed"),
        (lambda: chirp(2, 2, steps_per_second=-1.0), "steps_per_second"),
        (lambda: chirp(2, 2, mean=0.8, contrast=1.0), "contrast"),
    ],
)
def test_bad_arguments_raise_topo_data_error_naming_the_field(call, field):
    with pytest.raises(TopoDataError, match=field):
        call()
