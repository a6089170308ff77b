"""Video sources for the retina: files and arrays read back exactly, in any chunking."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from topo_data.errors import TopoDataError
from topo_data.retina.stimuli import full_field_flash, white_noise
from topo_data.retina.video import (
    BT601_WEIGHTS,
    ArraySource,
    ImageFileSource,
    ImageSequenceSource,
    IterableSource,
    NpySource,
    StimulusSource,
    frame_luminance,
    open_video,
    stimulus_source,
)


def _grey_movie(frames: int = 7, height: int = 6, width: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width), np.uint8)


def _read_all(source, chunk: int = 3, start: int = 0) -> np.ndarray:
    parts = list(source.chunks(chunk, start=start))
    assert all(p.dtype == torch.float32 and p.dim() == 5 for p in parts)
    assert all(p.shape[2] == chunk for p in parts[:-1]) and 0 < parts[-1].shape[2] <= chunk
    return torch.cat(parts, dim=2).numpy()


def _uint8_luminance(values: np.ndarray, luminance_range: float) -> np.ndarray:
    return (values.astype(np.float64) * (luminance_range / 255.0)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_grey_gif_and_tiff_stacks_read_back_exactly_frame_by_frame(tmp_path, suffix):
    movie = _grey_movie()
    path = tmp_path / f"movie{suffix}"
    extra = {"photometric": "minisblack"} if suffix == ".tif" else {"loop": 0}
    iio.imwrite(path, movie, **extra)
    source = open_video(path, luminance_range=255.0)
    assert isinstance(source, ImageFileSource) and source.n_frames == 7
    read = _read_all(source)
    assert source.frame_shape == (1, 1, 6, 5)
    assert np.array_equal(read[0, 0], movie.astype(np.float32))  # range 255: the pixel values
    assert np.array_equal(
        _read_all(open_video(path), 4, start=2)[0, 0], _uint8_luminance(movie[2:], 1.0)
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_tiff_keeps_16_bit_and_float_pixels(tmp_path, dtype):
    rng = np.random.default_rng(1)
    movie = (rng.random((4, 5, 6)) * (65535 if dtype == np.uint16 else 0.9)).astype(dtype)
    iio.imwrite(tmp_path / "m.tif", movie, photometric="minisblack")
    read = _read_all(open_video(tmp_path / "m.tif", luminance_range=2.0))[0, 0]
    expected = movie
    if dtype == np.uint16:
        expected = (movie.astype(np.float64) * (2.0 / 65535)).astype(np.float32)
    assert np.array_equal(read, expected)


def test_colour_frames_become_bt601_luminance(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (3, 4, 5, 3), np.uint8)
    iio.imwrite(tmp_path / "colour.tif", rgb, photometric="rgb")
    read = _read_all(open_video(tmp_path / "colour.tif", luminance_range=10.0))[0, 0]
    expected = (rgb.astype(np.float64) @ np.asarray(BT601_WEIGHTS)) * (10.0 / 255)
    assert np.array_equal(read, expected.astype(np.float32))
    # alpha is dropped; equal channels keep the grey value exactly
    rgba = np.concatenate([rgb[0], np.full((4, 5, 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(frame_luminance(rgba, 10.0), read[0])
    grey = np.repeat(rgb[0, ..., :1], 3, axis=-1)
    assert np.array_equal(frame_luminance(grey, 255.0), rgb[0, ..., 0].astype(np.float32))


def test_png_folder_is_a_movie_in_file_name_order(tmp_path):
    movie = _grey_movie(5)
    for index in (3, 0, 4, 1, 2):  # written out of order
        iio.imwrite(tmp_path / f"frame_{index:03d}.png", movie[index])
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_video(tmp_path, luminance_range=255.0)
    assert isinstance(source, ImageSequenceSource) and source.n_frames == 5
    assert np.array_equal(_read_all(source, 2)[0, 0], movie.astype(np.float32))


@pytest.mark.parametrize("shape", [(9, 4, 3), (2, 3, 9, 4, 3)])
def test_npy_files_are_memory_mapped_and_read_back_exactly(tmp_path, shape):
    values = np.random.default_rng(3).random(shape).astype(np.float32)
    np.save(tmp_path / "movie.npy", values)
    source = open_video(tmp_path / "movie.npy")
    assert isinstance(source, NpySource) and isinstance(source.array, np.memmap)
    expected = values if values.ndim == 5 else values[None, None]
    assert source.n_frames == 9 and source.frame_shape == (*expected.shape[:2], *expected.shape[3:])
    assert np.array_equal(_read_all(source, 4), expected)
    assert np.array_equal(_read_all(source, 2, start=5), expected[:, :, 5:])


def test_uint8_arrays_scale_to_the_luminance_range_and_floats_stay_as_they_are():
    movie = _grey_movie()
    assert np.array_equal(_read_all(ArraySource(movie, 255.0))[0, 0], movie.astype(np.float32))
    assert _read_all(ArraySource(np.full((2, 3, 3), 255, np.uint8), 4.0)).max() == 4.0
    floats = np.random.default_rng(4).random((5, 3, 3)).astype(np.float32) * 7
    assert np.array_equal(_read_all(ArraySource(torch.from_numpy(floats), 1.0))[0, 0], floats)


def test_any_chunking_gives_the_same_frames():
    movie = white_noise(0.05, 4, 4, seed=5)
    source = ArraySource(movie)
    whole = _read_all(source, 50)
    for chunk, start in ((1, 0), (7, 0), (7, 13), (49, 1), (100, 0)):
        assert np.array_equal(_read_all(source, chunk, start), whole[:, :, start:])
    assert list(source.chunks(5, start=50)) == []


def test_iterables_are_rechunked_and_restartable_when_given_as_a_function():
    movie = white_noise(0.03, 3, 4, seed=6)

    def pieces():  # frames, a chunk, a 5-D chunk, of uneven lengths
        yield movie[0]
        yield movie[1:12]
        yield torch.from_numpy(movie[12:])[None, None]

    source = IterableSource(pieces, n_frames=30, name="noise")
    assert np.array_equal(_read_all(source, 8)[0, 0], movie)
    assert np.array_equal(_read_all(source, 5, start=11)[0, 0], movie[11:])
    assert source.describe()["name"] == "noise"
    assert np.array_equal(_read_all(IterableSource([movie[:4], movie[4:]]), 3)[0, 0], movie)


def test_a_one_shot_iterator_can_be_read_once_only():
    movie = white_noise(0.01, 2, 2)
    source = IterableSource(iter([movie]))
    assert np.array_equal(_read_all(source, 4)[0, 0], movie)
    with pytest.raises(TopoDataError, match="one-shot iterator"):
        list(source.chunks(4))


def test_stimulus_source_is_the_generator_times_the_luminance_range():
    args = {"duration_s": 0.1, "on_s": 0.02, "off_s": 0.06, "height": 3, "width": 2}
    source = stimulus_source("full_field_flash", luminance_range=200.0, **args)
    assert isinstance(source, StimulusSource)
    assert np.array_equal(_read_all(source, 30)[0, 0], full_field_flash(**args) * np.float32(200))
    assert source.describe() == {
        "kind": "stimulus",
        "name": "full_field_flash",
        "arguments": args,
        "luminance_range": 200.0,
    }


def test_the_file_fingerprint_changes_with_the_content(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2, 2), np.float32))
    before = NpySource(tmp_path / "a.npy").describe()
    np.save(tmp_path / "a.npy", np.ones((3, 2, 2), np.float32))
    assert NpySource(tmp_path / "a.npy").describe() != before


# --------------------------------------------------------------------------- errors


def test_missing_files_name_the_path(tmp_path):
    for path in (tmp_path / "none.npy", tmp_path / "none.gif", tmp_path / "no_folder"):
        with pytest.raises(TopoDataError, match="does not exist") as error:
            open_video(path)
        assert error.value.file == str(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio probing its DICOM plugin
def test_an_unreadable_movie_names_the_file_and_the_backends_to_install(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not a movie" * 20)
    with pytest.raises(TopoDataError, match="pip install av") as error:
        open_video(path)
    assert error.value.file == str(path)


@pytest.mark.parametrize("name", ["movie.npy", "movie.gif"])
def test_an_empty_movie_file_is_named_as_empty_not_as_a_missing_backend(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    for make in (open_video, NpySource if name.endswith(".npy") else ImageFileSource):
        with pytest.raises(TopoDataError, match="empty") as error:
            make(path)
        assert error.value.file == str(path) and "pip install" not in str(error.value)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio probing its DICOM plugin
def test_a_damaged_gif_or_an_empty_frame_file_asks_for_no_backend(tmp_path):
    (tmp_path / "clip.gif").write_bytes(b"GIF89a" + b"\x00" * 40)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "000.png").write_bytes(b"")
    for video, bad in ((tmp_path / "clip.gif", "clip.gif"), (tmp_path / "frames", "000.png")):
        with pytest.raises(TopoDataError) as error:
            list(open_video(video).chunks(2))
        assert bad in str(error.value) and "pip install" not in str(error.value)


@pytest.mark.parametrize("shape", [(5, 4), (2, 5, 4, 3)])
def test_npy_of_the_wrong_rank_names_the_file_and_the_shape(tmp_path, shape):
    np.save(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(TopoDataError, match="dimensions") as error:
        open_video(tmp_path / "bad.npy")
    assert error.value.file == str(tmp_path / "bad.npy") and error.value.field == "shape"
    assert error.value.found == shape


def test_non_finite_values_name_the_file_and_the_frame(tmp_path):
    values = np.zeros((10, 3, 3), np.float32)
    values[7, 1, 2] = np.nan
    np.save(tmp_path / "nan.npy", values)
    source = open_video(tmp_path / "nan.npy")
    with pytest.raises(TopoDataError, match="NaN") as error:
        list(source.chunks(4))
    assert error.value.file == str(tmp_path / "nan.npy") and error.value.field == "frame 7"
    frames = [np.zeros((3, 3)), np.full((3, 3), np.inf)]
    with pytest.raises(TopoDataError, match="NaN") as error:
        list(IterableSource(frames, name="gen").chunks(4))
    assert error.value.file == "gen" and error.value.field == "frame 1"


def test_frames_of_changing_shape_and_unsupported_dtypes_are_errors():
    with pytest.raises(TopoDataError, match="same shape"):
        list(IterableSource([np.zeros((3, 3)), np.zeros((3, 4))]).chunks(5))
    with pytest.raises(TopoDataError, match="unsigned integers") as error:
        ArraySource(np.zeros((2, 3, 3), np.int8))
    assert error.value.field == "dtype"
    with pytest.raises(TopoDataError, match="grey or colour"):
        frame_luminance(np.zeros((3, 3, 5), np.uint8))
    with pytest.raises(TopoDataError, match="chunk argument"):
        list(ArraySource(np.zeros((2, 3, 3), np.float32)).chunks(0))


def test_unknown_stimuli_and_arguments_are_named():
    with pytest.raises(TopoDataError, match="Unknown stimulus") as error:
        stimulus_source("checkerboard")
    assert error.value.field == "name"
    with pytest.raises(TopoDataError, match="Bad arguments") as error:
        stimulus_source("white_noise", duration_s=0.1, height=2, width=2, colour=True)
    assert error.value.field == "colour"
    with pytest.raises(TopoDataError, match="Bad arguments") as error:
        stimulus_source("white_noise", height=2, width=2)
    assert error.value.field == "duration_s"
