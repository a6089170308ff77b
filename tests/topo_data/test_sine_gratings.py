"""SineGrating2019 gratings: checked against an independent FFT, not against their own formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from topo_data import TopoDataError
from topo_data.images.sine_gratings import (
    parse_sine_grating_name,
    sine_grating_name,
    sine_gratings,
    write_sine_grating_folder,
)

SIZE = 224


@pytest.fixture(scope="module")
def gratings() -> tuple[torch.Tensor, pd.DataFrame]:
    return sine_gratings(SIZE)


def test_default_set_has_640_rgb_images_in_unit_range(gratings):
    images, metadata = gratings
    assert images.shape == (640, 3, SIZE, SIZE)
    assert images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.min() < 0.01 and images.max() > 0.99  # full contrast
    assert list(metadata.columns) == [
        "orientation_deg",
        "sf_cycles_per_image",
        "phase_rad",
        "color",
    ]
    assert len(metadata) == 640


def test_metadata_covers_every_tdann_combination_once(gratings):
    _, metadata = gratings
    assert not metadata.duplicated().any()
    np.testing.assert_allclose(
        sorted(metadata.orientation_deg.unique()), [0, 22.5, 45, 67.5, 90, 112.5, 135, 157.5]
    )
    np.testing.assert_allclose(
        sorted(metadata.sf_cycles_per_image.unique()),
        [5.5, 18.5625, 31.625, 44.6875, 57.75, 70.8125, 83.875, 96.9375],
    )
    np.testing.assert_allclose(
        sorted(metadata.phase_rad.unique()), [k * 2 * math.pi / 5 for k in range(5)]
    )
    assert sorted(metadata.color.unique()) == ["bw", "rc"]
    assert metadata.groupby(list(metadata.columns)).size().eq(1).all()
    # documented order: colour slowest, phase fastest
    assert list(metadata.color[:320].unique()) == ["bw"]
    assert metadata.phase_rad.iloc[1] > metadata.phase_rad.iloc[0]
    assert metadata.orientation_deg.iloc[:40].nunique() == 1


def test_fft_peak_recovers_orientation_and_spatial_frequency(gratings):
    images, metadata = gratings
    red = images[:, 0].double()
    red = red - red.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(red).abs().flatten(1)
    peak = power.argmax(dim=1).numpy()
    freqs = np.fft.fftfreq(SIZE, d=1.0 / SIZE)  # cycles/image for each bin
    row_freq, col_freq = freqs[peak // SIZE], freqs[peak % SIZE]
    # Independent of the generator: x = column (right), y = -row (up).
    fx, fy = col_freq, -row_freq
    sf = metadata.sf_cycles_per_image.to_numpy()
    theta = np.deg2rad(metadata.orientation_deg.to_numpy())
    expected = np.stack([sf * np.cos(theta), sf * np.sin(theta)], axis=1)
    found = np.stack([fx, fy], axis=1)
    # a real image has peaks at +k and -k: compare to whichever is nearer, per axis within a bin
    error = np.minimum(np.abs(found - expected).max(axis=1), np.abs(found + expected).max(axis=1))
    assert error.max() <= 1.0
    np.testing.assert_allclose(np.hypot(fx, fy), sf, atol=1.0)
    angle = np.rad2deg(np.arctan2(fy, fx)) % 180
    difference = np.abs((angle - metadata.orientation_deg.to_numpy() + 90) % 180 - 90)
    coarse = sf < 10  # 1-bin quantisation is atan(0.7 / 5.5) = 7 deg at the lowest frequency
    assert difference[~coarse].max() < 5.0
    assert difference[coarse].max() < 8.0


def test_orientation_convention_is_counter_clockwise_with_y_up():
    images, metadata = sine_gratings(64, frequencies_cycles_per_image=[4.0], phases=1)
    by_angle = dict(zip(metadata.orientation_deg, images[:, 0], strict=False))
    assert torch.allclose(by_angle[0.0][0], by_angle[0.0][-1])  # vertical stripes
    assert torch.allclose(by_angle[90.0][:, 0], by_angle[90.0][:, -1])  # horizontal stripes
    # 45 deg: wave vector up-right, so stripes run from top-left to bottom-right (col - row const)
    diagonal = by_angle[45.0]
    assert torch.allclose(diagonal[10, 20], diagonal[30, 40], atol=1e-6)
    assert not torch.allclose(diagonal[10, 20], diagonal[30, 0], atol=1e-2)
    # origin at the top-left pixel: value there is 0.5 + 0.5 cos(phase) = 1 at phase 0
    assert torch.allclose(images[:, 0, 0, 0], torch.ones(()))


def test_images_differing_only_in_phase_are_shifted_copies(gratings):
    images, metadata = gratings
    bw = torch.as_tensor(metadata.color.eq("bw").to_numpy().copy())
    grating = images[bw, 0].double().reshape(8, 8, 5, -1)
    phases = metadata.phase_rad.to_numpy()[:5]
    centred = grating - grating.mean(dim=-1, keepdim=True)
    centred = centred / centred.norm(dim=-1, keepdim=True)
    correlation = torch.einsum("abpn,abqn->abpq", centred, centred)  # (orient, sf, 5, 5)
    expected = torch.as_tensor(np.cos(phases[:, None] - phases[None, :]))
    # non-integer cycles per image leave a small edge effect; the lowest sf has the most
    assert (correlation[:, 1:] - expected).abs().max() < 0.02
    assert (correlation[:, :1] - expected).abs().max() < 0.1
    # shifted copy: for theta = 0 and phase 0, shifting columns by the phase's share of a period
    period = SIZE / metadata.sf_cycles_per_image.iloc[5]  # theta 0, sf 18.6, phase 0
    row = grating[0, 1, 0].reshape(SIZE, SIZE)[0]
    shift = phases[1] / (2 * math.pi) * period
    x = torch.arange(SIZE, dtype=torch.float64)
    shifted = 0.5 + 0.5 * torch.cos(2 * math.pi * (x + shift) / period)
    assert torch.allclose(grating[0, 1, 1].reshape(SIZE, SIZE)[0], shifted, atol=1e-5)
    assert torch.allclose(row, 0.5 + 0.5 * torch.cos(2 * math.pi * x / period), atol=1e-5)


def test_bw_channels_equal_and_red_cyan_channels_complement(gratings):
    images, metadata = gratings
    is_bw = torch.as_tensor(metadata.color.eq("bw").to_numpy().copy())
    bw, rc = images[is_bw], images[~is_bw]
    assert torch.equal(bw[:, 0], bw[:, 1]) and torch.equal(bw[:, 0], bw[:, 2])
    assert torch.allclose(rc[:, 0] + rc[:, 1], torch.ones(()), atol=1e-6)
    assert torch.equal(rc[:, 1], rc[:, 2])
    assert torch.equal(rc[:, 0], bw[:, 0])  # same grating, same order


def test_file_names_round_trip_through_tdanns_parsing_rule(gratings):
    _, metadata = gratings
    names = [
        sine_grating_name(r.orientation_deg, r.sf_cycles_per_image, r.phase_rad, r.color, "jpg")
        for r in metadata.itertuples()
    ]
    assert len(set(names)) == 640
    assert sine_grating_name(22.5, 18.5625, 2 * math.pi / 5, "bw", "png") == (
        "sine_22.5deg_18.6cy_1.3phase_bw.png"
    )
    parsed = pd.DataFrame([parse_sine_grating_name(n) for n in names])
    np.testing.assert_allclose(parsed.orientation_deg, metadata.orientation_deg)
    np.testing.assert_allclose(parsed.sf_cycles_per_image, metadata.sf_cycles_per_image, atol=0.05)
    np.testing.assert_allclose(parsed.phase_rad, metadata.phase_rad, atol=0.05)
    assert list(parsed.color) == list(metadata.color)
    assert sorted(parsed.phase_rad.unique()) == [0.0, 1.3, 2.5, 3.8, 5.0]


def test_bad_file_name_raises():
    with pytest.raises(TopoDataError):
        parse_sine_grating_name("cat_photo.jpg")
    with pytest.raises(TopoDataError):
        parse_sine_grating_name("sine_xdeg_18.6cy_1.3phase_bw.png")


def test_writes_640_images_and_metadata(tmp_path, gratings):
    images, _ = gratings
    root = write_sine_grating_folder(tmp_path / "sine", SIZE)
    files = sorted(p.name for p in root.glob("*.png"))
    assert len(files) == 640
    metadata = pd.read_csv(root / "metadata.csv")
    assert sorted(metadata.file) == files
    assert list(metadata.columns) == [
        "file",
        "orientation_deg",
        "sf_cycles_per_image",
        "phase_rad",
        "color",
    ]
    index = 333
    written = np.asarray(Image.open(root / metadata.file[index]))
    assert written.shape == (SIZE, SIZE, 3)
    expected = images[index].permute(1, 2, 0).numpy() * 255
    assert np.abs(written - expected).max() <= 0.5 + 1e-3  # lossless PNG, uint8 rounding only
    assert parse_sine_grating_name(metadata.file[index])["color"] == metadata.color[index]
    assert not [p for p in tmp_path.iterdir() if p.name != "sine"]  # no staging left behind


def test_writing_refuses_a_non_empty_directory(tmp_path):
    root = tmp_path / "sine"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(TopoDataError):
        write_sine_grating_folder(root)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 7},
        {"size": 224.0},
        {"size": True},
        {"orientations": 0},
        {"phases": -1},
        {"colors": ("bw", "green")},
        {"colors": ()},
        {"frequencies_cycles_per_image": [0.0]},
        {"size": 64},  # default frequencies above Nyquist (32 cycles/image)
    ],
)
def test_bad_arguments_raise_topo_data_error(kwargs):
    with pytest.raises(TopoDataError):
        sine_gratings(**kwargs)
