"""The ground-truth simulator: the files it writes, and that the truth it saves is the truth.

Every check recomputes what it asserts from the written files or from the model's formulas
written out again here (one neuron at a time), never from the simulator's own arrays alone.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from topo_data.errors import TopoDataError
from topo_data.sensorium import SensoriumSession, static_loaders
from topo_data.sensorium.response_model import (
    canvas,
    grid_units_per_pixel,
    model_rates,
    pixels_to_grid,
)
from topo_data.sensorium.simulate import (
    GROUND_TRUTH_KEYS,
    ground_truth_path,
    load_ground_truth,
    simulate,
)

SIZE = (40, 80)
SMALL = dict(
    n_neurons=40,
    n_train=240,
    n_validation=40,
    n_test_images=8,
    repeats=4,
    n_final_test_images=3,
    image_size=SIZE,
    seed=3,
)
N_TRIALS = 240 + 40 + 8 * 4 + 3 * 4


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    """Every data field stacked by file index, and the trial meta, read with plain numpy."""
    tiers = np.load(folder / "meta" / "trials" / "tiers.npy")
    out = {
        key: np.stack([np.load(folder / "data" / key / f"{i}.npy") for i in range(len(tiers))])
        for key in ("images", "responses", "behavior", "pupil_center")
    }
    for key in ("tiers", "frame_image_id", "trial_idx"):
        out[key] = np.load(folder / "meta" / "trials" / f"{key}.npy")
    out["coordinates"] = np.load(folder / "meta" / "neurons" / "cell_motor_coordinates.npy")
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("sim"), zip=False, **SMALL)


@pytest.fixture(scope="module")
def files(folder: Path) -> dict[str, np.ndarray]:
    return _read_folder(folder)


@pytest.fixture(scope="module")
def truth(folder: Path) -> dict[str, np.ndarray]:
    return load_ground_truth(folder)


def test_files_have_the_sensorium_shapes_and_types(files, truth) -> None:
    assert files["images"].shape == (N_TRIALS, 1, *SIZE)
    assert files["images"].dtype == np.uint8  # whole gray levels 0..255, a quarter of float32
    assert files["responses"].shape == (N_TRIALS, 40)
    responses = files["responses"]
    assert np.isfinite(responses).all() and (responses >= 0).all()
    assert np.array_equal(responses, np.round(responses))  # Poisson counts, stored as floats
    assert files["behavior"].shape == (N_TRIALS, 3) and files["pupil_center"].shape == (N_TRIALS, 2)
    assert (files["behavior"][:, 2] >= 0).all()  # running speed
    np.testing.assert_allclose(files["coordinates"], truth["cortex_um"], rtol=1e-6)
    tiers, counts = np.unique(files["tiers"], return_counts=True)
    assert dict(zip(tiers.tolist(), counts.tolist(), strict=True)) == {
        "train": 240,
        "validation": 40,
        "test": 32,
        "final_test": 12,
    }


def test_test_tiers_repeat_each_image_with_one_id(files) -> None:
    for tier, n_images in (("test", 8), ("final_test", 3)):
        rows = np.flatnonzero(files["tiers"] == tier)
        ids, counts = np.unique(files["frame_image_id"][rows], return_counts=True)
        assert len(ids) == n_images and (counts == 4).all()
        for image_id in ids:
            same = rows[files["frame_image_id"][rows] == image_id]
            assert (files["images"][same] == files["images"][same[0]]).all()
    once = np.isin(files["tiers"], ["train", "validation"])
    assert len(np.unique(files["frame_image_id"][once])) == once.sum()
    repeated = files["frame_image_id"][~once]
    assert not np.isin(repeated, files["frame_image_id"][once]).any()


def test_trial_order_is_shuffled_and_trial_idx_is_chronological(files) -> None:
    trial_idx = files["trial_idx"]
    assert np.array_equal(np.sort(trial_idx), np.arange(N_TRIALS))
    assert not np.array_equal(trial_idx, np.arange(N_TRIALS))
    # Behaviour drifts slowly in time: neighbours in trial_idx are alike, neighbours in file
    # order are not.
    dilation = files["behavior"][:, 0].astype(np.float64)
    chrono = dilation[np.argsort(trial_idx)]
    assert np.corrcoef(chrono[:-1], chrono[1:])[0, 1] > 0.8
    assert abs(np.corrcoef(dilation[:-1], dilation[1:])[0, 1]) < 0.3
    assert len(np.unique(files["tiers"][:40])) > 1  # tiers are interleaved, not in blocks


def test_zip_holds_the_same_session(tmp_path: Path, files) -> None:
    path = simulate(tmp_path, **SMALL)
    assert path.suffix == ".zip" and path.name.startswith("static99999-1-1-GrayImageNet-")
    with zipfile.ZipFile(path) as archive:
        top = path.stem
        for i in (0, 17, N_TRIALS - 1):
            raw = archive.read(f"{top}/data/responses/{i}.npy")
            assert np.array_equal(np.load(io.BytesIO(raw)), files["responses"][i])
    assert ground_truth_path(path).is_file()
    session = SensoriumSession(path)
    assert session.data_key == "99999-1-1"
    assert session.n_trials == N_TRIALS and session.n_neurons == 40
    assert session.image_shape == (1, *SIZE)
    test_ids = session.tier_trials("test")
    assert np.array_equal(session.read_stack("responses", test_ids), files["responses"][test_ids])


def test_static_loaders_serve_the_simulated_session(tmp_path: Path, folder: Path, files) -> None:
    loaders = static_loaders(
        [folder],
        batch_size=16,
        normalize=False,
        include_behavior=True,
        include_eye_position=True,
        add_behavior_as_channels=False,
        cache_dir=tmp_path / "cache",
    )
    assert set(loaders) == {"train", "validation", "test", "final_test"}
    test = loaders["test"]["99999-1-1"]
    assert len(test.dataset) == 32
    batch = next(iter(test))
    ids = batch.trial_id.numpy()
    np.testing.assert_allclose(batch.responses.numpy(), files["responses"][ids])
    np.testing.assert_allclose(batch.behavior.numpy(), files["behavior"][ids], rtol=1e-6)
    np.testing.assert_allclose(batch.images.numpy(), files["images"][ids], rtol=1e-6)
    assert (files["tiers"][ids] == "test").all()


def test_rf_centres_are_a_smooth_function_of_cortex(truth) -> None:
    xy = truth["cortex_um"][:, :2]
    design = np.column_stack([xy, np.ones(len(xy))])
    centres = truth["rf_center_grid"]
    coef, *_ = np.linalg.lstsq(design, centres, rcond=None)
    fitted = design @ coef
    for axis in (0, 1):
        assert np.corrcoef(fitted[:, axis], centres[:, axis])[0, 1] > 0.9
    height, width = SIZE
    expected_grid = 2 * truth["rf_center_px"] / (np.array([width, height]) - 1) - 1
    np.testing.assert_allclose(centres, expected_grid, atol=1e-12)
    assert np.abs(centres).max() < 0.85  # clear of the borders (and the core's crop)


def test_pixels_to_grid_follows_rescale_and_crop() -> None:
    size = (144, 256)
    corners = np.array([[0.0, 0.0], [255.0, 143.0]])
    np.testing.assert_allclose(pixels_to_grid(corners, size), [[-1, -1], [1, 1]])
    # scale 0.25: small pixel j is centred on full pixel 4 j + 1.5; crop 4 keeps small 4..59.
    edges = np.array([[4 * 4 + 1.5, 4 * 4 + 1.5], [4 * 59 + 1.5, 4 * 31 + 1.5]])
    np.testing.assert_allclose(pixels_to_grid(edges, size, scale=0.25, crop=4), [[-1, -1], [1, 1]])
    # a displacement: the difference of two positions, per full-image pixel
    step = pixels_to_grid(edges + [1.0, 1.0], size, 0.25, 4) - pixels_to_grid(edges, size, 0.25, 4)
    np.testing.assert_allclose(step[0], grid_units_per_pixel(size, 0.25, 4))
    np.testing.assert_allclose(grid_units_per_pixel(size, 0.25, 4), [0.5 / 55, 0.5 / 27])


def _filter(truth: dict[str, np.ndarray], n: int, centre: np.ndarray) -> np.ndarray:
    """One neuron's filter written out from the documented formulas, on the padded canvas."""
    pad, height, width = canvas(SIZE)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64) - pad
    dx, dy = cols - centre[0], rows - centre[1]
    sigma = truth["sigma_px"][n]
    if truth["filter_type"][n] == "dog":
        k = truth["surround_ratio"][n]
        inner = np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
        outer = np.exp(-(dx**2 + dy**2) / (2 * (k * sigma) ** 2))
        f = truth["polarity"][n] * (inner / inner.sum() - outer / outer.sum())
    else:
        theta = truth["orientation_rad"][n]
        along = np.cos(theta) * dx + np.sin(theta) * dy
        across = -np.sin(theta) * dx + np.cos(theta) * dy
        env = np.exp(
            -0.5 * (along / sigma) ** 2 - 0.5 * (across / (truth["aspect"][n] * sigma)) ** 2
        )
        f = env * np.cos(2 * np.pi * along / truth["wavelength_px"][n] + truth["phase_rad"][n])
        f = f - env * f.sum() / env.sum()
    return f / np.linalg.norm(f)


def test_rates_equal_the_model_written_out_per_neuron(files, truth) -> None:
    """Filter at the eye-shifted centre, drive, softplus and gain: the saved Poisson means."""
    trials = [0, 5, 111, N_TRIALS - 1]
    neurons = np.arange(0, 40, 3)
    assert (np.array(sorted(set(truth["filter_type"][neurons]))) == ["dog", "gabor"]).all()
    shift = (files["pupil_center"] - truth["pupil_reference"]) @ truth["pupil_to_shift_px"].T
    np.testing.assert_allclose(truth["shift_px"], shift, atol=1e-4)
    standard = (files["behavior"] - truth["behavior_mean"]) / truth["behavior_std"]
    pad, height, width = canvas(SIZE)
    for t in trials:
        contrast = np.zeros((height, width))
        contrast[pad : pad + SIZE[0], pad : pad + SIZE[1]] = files["images"][t, 0] / 255.0 - 0.5
        for n in neurons:
            drive = (_filter(truth, n, truth["rf_center_px"][n] + shift[t]) * contrast).sum()
            z = (drive - truth["drive_mean"][n]) / truth["drive_std"][n]
            gain = np.exp(standard[t] @ truth["behavior_weights"][n])
            softplus = np.log1p(np.exp(truth["slope"][n] * (z - truth["threshold"][n])))
            expected = truth["amplitude"][n] * gain * softplus
            np.testing.assert_allclose(truth["rates"][t, n], expected, rtol=1e-4, atol=1e-6)


def test_pupil_shift_moves_rfs_like_moving_the_image(files, truth) -> None:
    """Moving the image by d pixels gives the rates of RFs moved by -d (the eye's effect).

    The images get a gray frame (contrast 0, like the screen's surround) wider than d, so
    ``np.roll`` is a true translation on the gray plane.
    """
    images = np.full(files["images"][:6].shape, 127.5, np.float32)  # gray: contrast 0
    images[:, :, 4:-4, 4:-4] = files["images"][:6, :, 4:-4, 4:-4]
    step = np.array([3.0, -2.0])
    rolled = np.roll(images, (int(step[1]), int(step[0])), axis=(2, 3))
    pupil = truth["pupil_reference"] + np.linalg.solve(truth["pupil_to_shift_px"], -step)
    moved_eye = model_rates(truth, images, np.tile(pupil, (6, 1)))
    moved_image = model_rates(truth, rolled)
    np.testing.assert_allclose(moved_eye, moved_image, rtol=1e-5, atol=1e-7)
    assert np.abs(moved_image - model_rates(truth, images)).max() > 0.1  # the shift matters
    height, width = SIZE
    np.testing.assert_allclose(
        truth["pupil_to_shift_grid"],
        truth["pupil_to_shift_px"] * (2 / (np.array([width, height]) - 1))[:, None],
    )
    assert abs(truth["pupil_to_shift_px"][0, 0]) > abs(truth["pupil_to_shift_px"][1, 1])


def test_saved_rates_are_the_rates_of_the_written_files(files, truth) -> None:
    recomputed = model_rates(truth, files["images"], files["pupil_center"], files["behavior"])
    np.testing.assert_allclose(truth["rates"], recomputed, rtol=1e-4, atol=1e-6)
    ids = truth["test_image_ids"]
    first = [np.flatnonzero(files["frame_image_id"] == i)[0] for i in ids]
    assert np.isin(files["tiers"][first], "test").all()
    np.testing.assert_allclose(
        truth["test_image_rates"], model_rates(truth, files["images"][first]), rtol=1e-6
    )


def test_responses_are_poisson_draws_of_the_rates(files, truth) -> None:
    rates = truth["rates"]
    residual = files["responses"] - rates
    assert abs(residual.sum()) < 4 * np.sqrt(rates.sum())  # mean = rate
    # variance = rate: E[(x - λ)²] = λ, whose sum has variance Σ(λ + 2λ²) for Poisson draws
    excess = (residual**2).sum() - rates.sum()
    assert abs(excess) < 4 * np.sqrt((rates + 2 * rates**2).sum())


def test_behaviour_gain_modulates_responses(tmp_path: Path, files, truth) -> None:
    standard = (files["behavior"] - truth["behavior_mean"]) / truth["behavior_std"]
    ratio = model_rates(truth, files["images"][:20], files["pupil_center"][:20])
    ratio = truth["rates"][:20] / ratio
    np.testing.assert_allclose(
        np.log(ratio), standard[:20] @ truth["behavior_weights"].T, atol=1e-4
    )
    population = files["responses"].sum(1)
    assert np.corrcoef(population, files["behavior"][:, 2])[0, 1] > 0.3

    flat = simulate(tmp_path, behavior_gain=False, pupil_shift=False, zip=False, **SMALL)
    flat_files, flat_truth = _read_folder(flat), load_ground_truth(flat)
    assert not flat_truth["behavior_weights"].any() and not flat_truth["pupil_to_shift_px"].any()
    np.testing.assert_allclose(flat_truth["rates"], model_rates(flat_truth, flat_files["images"]))
    np.testing.assert_array_equal(flat_files["behavior"], files["behavior"])
    flat_population = flat_files["responses"].sum(1)
    assert abs(np.corrcoef(flat_population, flat_files["behavior"][:, 2])[0, 1]) < 0.2


def test_same_seed_gives_identical_files(tmp_path: Path, folder: Path, files, truth) -> None:
    again = simulate(tmp_path / "again", zip=False, **SMALL)
    for file in sorted(folder.rglob("*.npy")):
        assert file.read_bytes() == (again / file.relative_to(folder)).read_bytes(), file
    again_truth = load_ground_truth(again)
    assert sorted(again_truth) == sorted(truth)
    for key, value in truth.items():
        np.testing.assert_array_equal(again_truth[key], value, err_msg=key)
    other = _read_folder(simulate(tmp_path / "other", zip=False, **{**SMALL, "seed": 4}))
    assert not np.array_equal(other["responses"], files["responses"])


def test_ground_truth_round_trip(folder: Path, truth) -> None:
    assert set(truth) == set(GROUND_TRUTH_KEYS)
    npz = ground_truth_path(folder)
    assert npz.name == folder.name + ".ground_truth.npz"
    direct = load_ground_truth(npz)
    for key in GROUND_TRUTH_KEYS:
        np.testing.assert_array_equal(direct[key], truth[key])
    assert tuple(truth["image_size"]) == SIZE and int(truth["format_version"]) == 1
    assert truth["rf_center_px"].shape == (40, 2) and truth["rates"].shape == (N_TRIALS, 40)
    assert truth["test_image_rates"].shape == (8, 40)


def test_pink_noise_has_a_one_over_f_spectrum(tmp_path: Path) -> None:
    path = simulate(tmp_path, stimulus="pink_noise", zip=False, **{**SMALL, "n_neurons": 4})
    images = _read_folder(path)["images"][:, 0].astype(np.float64)
    power = (np.abs(np.fft.rfft2(images - images.mean((1, 2), keepdims=True))) ** 2).mean(0)
    radius = np.hypot(np.fft.fftfreq(SIZE[0])[:, None], np.fft.rfftfreq(SIZE[1])[None, :])
    keep = (radius > 0.05) & (radius < 0.3)
    slope = np.polyfit(np.log(radius[keep]), np.log(power[keep]), 1)[0]
    assert -2.3 < slope < -1.7  # power ∝ 1/f²: amplitude ∝ 1/f
    assert 110 < images.mean() < 146


@pytest.mark.parametrize(
    ("argument", "value"),
    [("n_neurons", 0), ("repeats", 0), ("n_test_images", 0), ("image_size", (8, 80))],
)
def test_bad_arguments_are_refused(tmp_path: Path, argument: str, value: object) -> None:
    with pytest.raises(TopoDataError, match=argument):
        simulate(tmp_path, **{**SMALL, argument: value})


def test_unknown_stimulus_and_missing_truth_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TopoDataError, match="stimulus"):
        simulate(tmp_path, **{**SMALL, "stimulus": "gratings"})
    with pytest.raises(TopoDataError, match="no ground truth"):
        load_ground_truth(tmp_path / "static1-2-3-GrayImageNet-x.zip")
