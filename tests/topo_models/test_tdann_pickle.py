"""spacetorch's .pkl position files: read without spacetorch, and never run foreign code."""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import types

import numpy as np
import pytest

from topo_models import TopoError
from topo_models.positions import LayerPositions, NetworkPositions


@pytest.fixture
def spacetorch_class(monkeypatch):
    """A stand-in for spacetorch.models.positions.LayerPositions, as spacetorch defined it."""

    @dataclasses.dataclass
    class LayerPositions:  # noqa: N801 - the pickled name must match spacetorch's
        name: str
        dims: tuple
        coordinates: np.ndarray
        neighborhood_indices: np.ndarray
        neighborhood_width: float

    module = types.ModuleType("spacetorch.models.positions")
    module.LayerPositions = LayerPositions
    LayerPositions.__module__ = "spacetorch.models.positions"
    LayerPositions.__qualname__ = "LayerPositions"
    for name in ("spacetorch", "spacetorch.models"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "spacetorch.models.positions", module)
    return LayerPositions


def write_spacetorch_pickle(cls, directory, name="layer2.0", protocol=pickle.DEFAULT_PROTOCOL):
    rng = np.random.default_rng(0)
    layer = cls(
        name=name,
        dims=(2, 3, 3),
        coordinates=rng.uniform(0, 5, (18, 2)),
        neighborhood_indices=np.stack([rng.permutation(18)[:6] for _ in range(4)]),
        neighborhood_width=np.float64(1.5),
    )
    path = directory / f"{name}.pkl"
    path.write_bytes(pickle.dumps(layer, protocol=protocol))
    return layer, path


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_spacetorch_pickles_load_without_spacetorch(
    tmp_path, spacetorch_class, monkeypatch, protocol
):
    original, path = write_spacetorch_pickle(spacetorch_class, tmp_path, protocol=protocol)
    for name in ("spacetorch", "spacetorch.models", "spacetorch.models.positions"):
        monkeypatch.delitem(sys.modules, name)  # loading must not need (or import) spacetorch
    layer = LayerPositions.load(path)
    assert layer.name == "layer2.0" and layer.dims == (2, 3, 3)
    np.testing.assert_allclose(layer.coordinates, original.coordinates.astype(np.float32))
    np.testing.assert_array_equal(layer.neighborhood_indices, original.neighborhood_indices)
    assert layer.neighborhood_width == 1.5
    assert "spacetorch.models.positions" not in sys.modules


def test_a_pickle_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "layer2.0.pkl"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(TopoError, match="refusing") as error:
        LayerPositions.load(path)
    assert str(path) in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


def test_directory_prefers_npz_reads_version_and_names_the_file_used(
    tmp_path, spacetorch_class, caplog
):
    write_spacetorch_pickle(spacetorch_class, tmp_path, "layer2.0")
    write_spacetorch_pickle(spacetorch_class, tmp_path, "layer1.0")
    npz_layer = LayerPositions.load(tmp_path / "layer2.0.pkl")
    npz_layer.save(tmp_path)
    (tmp_path / "version.txt").write_text("2\n")
    with caplog.at_level("INFO"):
        positions = NetworkPositions.load(tmp_path)
    assert list(positions) == ["layer1.0", "layer2.0"]
    assert positions.source_files["layer2.0"].name == "layer2.0.npz"
    assert positions.source_files["layer1.0"].name == "layer1.0.pkl"
    assert "using layer2.0.npz" in caplog.text
    assert positions.scale == "human" and positions["layer1.0"].scale == "human"


def test_truncated_pickle_and_unknown_version_are_reported(tmp_path, spacetorch_class):
    _, path = write_spacetorch_pickle(spacetorch_class, tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(TopoError, match="truncated or corrupt") as error:
        LayerPositions.load(path)
    assert str(path) in str(error.value)
    _, path = write_spacetorch_pickle(spacetorch_class, tmp_path)
    (tmp_path / "version.txt").write_text("7")
    with pytest.raises(TopoError, match="version"):
        NetworkPositions.load(tmp_path)
