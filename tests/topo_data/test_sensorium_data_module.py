"""``data=sensorium`` with no paths: the simulated mouse is written once, small, and says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from topo_data.sensorium import static_loaders
from topo_data.sensorium.data_module import SensoriumData
from topo_data.sensorium.simulate import simulate

SMALL = {
    "n_neurons": 12,
    "n_train": 48,
    "n_validation": 16,
    "n_test_images": 4,
    "repeats": 2,
    "image_size": [36, 64],
}


def _messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_the_simulated_mouse_is_one_folder_written_once_with_progress_lines(tmp_path, caplog):
    caplog.set_level("INFO", logger="topo_data")
    data = SensoriumData(root=str(tmp_path), simulation=SMALL, batch_size=8, scale=1.0)
    (session,) = map(Path, data.paths)
    assert session.is_dir() and not list(tmp_path.rglob("*.zip"))  # no second copy as a zip
    lines = _messages(caplog)
    assert any("simulating a Sensorium mouse into" in line for line in lines)
    assert any("12 neurons, 72 trials of 36×64" in line for line in lines)
    assert any(line.startswith("simulated mouse written") and " MB" in line for line in lines)
    assert sum(line.startswith("caching the") for line in lines) == 3  # train, validation, test
    caplog.clear()
    again = SensoriumData(root=str(tmp_path), simulation=SMALL, batch_size=8, scale=1.0)
    assert again.paths == data.paths
    assert not [line for line in _messages(caplog) if "simulating" in line or "caching" in line]


def test_images_stored_as_uint8_give_a_model_the_numbers_of_float32_files(tmp_path):
    """The simulator stores whole gray levels as uint8 (a quarter of the disk): what the
    loaders serve is equal, bit for bit, to the same session written with float32 images."""
    small = simulate(tmp_path / "small", zip=False, **{**SMALL, "image_size": (36, 64)})
    wide = tmp_path / "wide" / small.name
    shutil.copytree(small, wide, ignore=shutil.ignore_patterns(".topo_cache"))
    for file in (wide / "data" / "images").glob("*.npy"):
        np.save(file, np.load(file).astype(np.float32))
    assert np.load(small / "data" / "images" / "0.npy").dtype == np.uint8
    served = []
    for folder in (small, wide):
        loaders = static_loaders(
            [folder], 8, scale=0.5, include_behavior=True, cache_dir=folder.parent / "cache"
        )
        dataset = loaders["train"]["99999-1-1"].dataset
        served.append(dataset[np.arange(len(dataset))])
    assert np.array_equal(served[0].images.numpy(), served[1].images.numpy())
    assert np.array_equal(served[0].responses.numpy(), served[1].responses.numpy())
