"""LayerPositions / NetworkPositions: TDANN's npz format, the scale sidecar, validation."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from topo_models.errors import TopoError
from topo_models.positions import SCALES, LayerPositions, NetworkPositions, get_scale

FIVE_KEYS = {"name", "dims", "coordinates", "neighborhood_indices", "neighborhood_width"}


def make_layer(name: str = "layer2.0", dims=(2, 3, 3), scale: str | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(np.prod(dims))
    return LayerPositions(
        name=name,
        dims=dims,
        coordinates=rng.uniform(0, 5, (n, 2)).astype(np.float32),
        neighborhood_indices=rng.integers(0, n, (4, 5)),
        neighborhood_width=1.5,
        scale=scale,
    )


def write_plain_tdann_npz(path, name="layer2.0", shape=(2, 3, 3), **override):
    """A file as spacetorch's save_np writes it: plain np.savez of the five fields."""
    n = int(np.prod(shape))
    arrays = {
        "name": np.array(name),
        "dims": np.array(shape),
        "coordinates": np.linspace(0, 1, 2 * n).reshape(n, 2),
        "neighborhood_indices": np.arange(2 * n).reshape(-1, 2) % n,
        "neighborhood_width": np.array(1.5),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


def test_save_then_load_round_trips_every_field_and_the_sidecar_scale(tmp_path):
    layer = make_layer(scale="training")
    path = layer.save(tmp_path / "pos")
    assert path == tmp_path / "pos" / "layer2.0.npz"
    assert json.loads((tmp_path / "pos" / "positions.json").read_text()) == {"scale": "training"}
    loaded = LayerPositions.load(path)
    assert loaded.name == "layer2.0" and type(loaded.name) is str
    assert loaded.dims == (2, 3, 3)
    np.testing.assert_array_equal(loaded.coordinates, layer.coordinates)
    np.testing.assert_array_equal(loaded.neighborhood_indices, layer.neighborhood_indices)
    assert loaded.neighborhood_width == 1.5
    assert loaded.scale == "training"
    assert len(loaded) == 18


def test_save_writes_exactly_the_five_tdann_keys_with_tdann_dtypes(tmp_path):
    path = make_layer().save(tmp_path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == FIVE_KEYS
        assert data["name"].shape == () and data["name"].dtype.kind == "U"
        assert data["dims"].dtype == np.int64 and data["dims"].tolist() == [2, 3, 3]
        assert data["coordinates"].dtype == np.float32
        assert data["neighborhood_indices"].dtype == np.int64
        assert (
            data["neighborhood_width"].shape == () and data["neighborhood_width"].dtype.kind == "f"
        )
    assert not (tmp_path / "positions.json").exists()  # scale None writes no sidecar


def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    old = make_layer(seed=1)
    path = old.save(tmp_path)

    def broken_savez(fh, **arrays):
        fh.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        make_layer(seed=2).save(tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer2.0.npz"]
    np.testing.assert_array_equal(LayerPositions.load(path).coordinates, old.coordinates)


def test_file_written_by_plain_numpy_in_tdann_layout_loads_unchanged(tmp_path):
    arrays = write_plain_tdann_npz(tmp_path / "layer2.0.npz")
    layer = LayerPositions.load(tmp_path / "layer2.0.npz")
    assert layer.name == "layer2.0"
    assert layer.dims == (2, 3, 3)
    np.testing.assert_allclose(layer.coordinates, arrays["coordinates"], rtol=1e-6)
    assert layer.coordinates.dtype == np.float32
    np.testing.assert_array_equal(layer.neighborhood_indices, arrays["neighborhood_indices"])
    assert layer.neighborhood_width == 1.5
    assert layer.scale is None  # TDANN files carry no scale and none is inferred


def test_network_load_is_a_mapping_in_natural_layer_order(tmp_path):
    names = ["layer4.1", "layer10.0", "layer1.1", "layer2.0", "layer1.0", "layer3.0"]
    for name in names:
        write_plain_tdann_npz(tmp_path / f"{name}.npz", name=name)
    net = NetworkPositions.load(tmp_path)
    assert isinstance(net, Mapping)
    assert list(net) == ["layer1.0", "layer1.1", "layer2.0", "layer3.0", "layer4.1", "layer10.0"]
    assert net["layer3.0"].name == "layer3.0" and len(net) == 6
    assert net.scale is None
    with pytest.raises(TypeError):
        net["layer3.0"] = net["layer2.0"]  # read-only


def test_network_save_then_load_keeps_scale_order_and_arrays(tmp_path):
    layers = {n: make_layer(n, scale="human", seed=i) for i, n in enumerate(["layer1.0", "x.2"])}
    NetworkPositions(layers, scale="human").save(tmp_path / "d")
    net = NetworkPositions.load(tmp_path / "d")
    assert net.scale == "human" and all(layer.scale == "human" for layer in net.values())
    np.testing.assert_array_equal(net["x.2"].coordinates, layers["x.2"].coordinates)
    assert net.dims == {"layer1.0": (2, 3, 3), "x.2": (2, 3, 3)}


def test_missing_key_error_names_the_file_the_key_and_the_expected_keys(tmp_path):
    path = tmp_path / "layer2.0.npz"
    write_plain_tdann_npz(path, coordinates=None)
    with pytest.raises(TopoError, match="coordinates") as info:
        LayerPositions.load(path)
    assert info.value.file == str(path) and info.value.field == "coordinates"
    assert "neighborhood_indices" in str(info.value)  # lists what was expected


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("coordinates", np.zeros((18, 2), dtype=np.int64)),
        ("neighborhood_indices", np.zeros((3, 2), dtype=np.float64)),
        ("dims", np.array([2.0, 3.0, 3.0])),
        ("name", np.array(3)),
    ],
)
def test_wrong_dtype_error_names_the_file_and_field(tmp_path, field, bad):
    path = tmp_path / "layer2.0.npz"
    write_plain_tdann_npz(path, **{field: bad})
    with pytest.raises(TopoError) as info:
        LayerPositions.load(path)
    assert info.value.file == str(path) and info.value.field == field
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.95, 10])
def test_truncated_file_error_names_the_file(tmp_path, keep):
    path = make_layer().save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(TopoError) as info:
        LayerPositions.load(path)
    assert info.value.file == str(path)


def test_file_with_inconsistent_dims_error_names_the_file(tmp_path):
    path = tmp_path / "layer2.0.npz"
    write_plain_tdann_npz(path, dims=np.array([2, 3, 4]))
    with pytest.raises(TopoError, match="coordinates") as info:
        LayerPositions.load(path)
    assert info.value.file == str(path)


def test_missing_or_empty_directory_error_names_the_directory(tmp_path):
    with pytest.raises(TopoError) as info:
        NetworkPositions.load(tmp_path / "nope")
    assert info.value.file == str(tmp_path / "nope")
    with pytest.raises(TopoError, match="no position files") as info:
        NetworkPositions.load(tmp_path)
    assert info.value.file == str(tmp_path)
    with pytest.raises(TopoError) as info:
        LayerPositions.load(tmp_path / "layer1.0.npz")
    assert info.value.file == str(tmp_path / "layer1.0.npz")


def test_network_load_rejects_a_file_whose_name_differs_from_its_stem(tmp_path):
    write_plain_tdann_npz(tmp_path / "layer2.0.npz", name="layer3.0")
    with pytest.raises(TopoError, match="layer3.0") as info:
        NetworkPositions.load(tmp_path)
    assert info.value.field == "name"


def test_check_dims_names_layer_and_both_dims_on_mismatch():
    net = NetworkPositions({"layer2.0": make_layer()})
    net.check_dims({"layer2.0": (2, 3, 3)})  # matching dims pass
    with pytest.raises(TopoError) as info:
        net.check_dims({"layer2.0": (2, 4, 4)}, source="/runs/pos")
    message = str(info.value)
    assert "layer2.0" in message and "(2, 4, 4)" in message and "(2, 3, 3)" in message
    assert "/runs/pos" in message


def test_check_dims_names_missing_layer_and_lists_present_ones():
    net = NetworkPositions({"layer2.0": make_layer()})
    with pytest.raises(TopoError) as info:
        net.check_dims({"layer9.9": (1, 2, 2)})
    assert "layer9.9" in str(info.value) and "layer2.0" in str(info.value)


def test_save_into_directory_of_another_scale_fails_and_writes_no_npz(tmp_path):
    make_layer("layer1.0", scale="training").save(tmp_path)
    with pytest.raises(TopoError, match="scale"):
        make_layer("layer3.0", scale="human").save(tmp_path)
    with pytest.raises(TopoError, match="scale"):
        make_layer("layer3.0", scale=None).save(tmp_path)
    human = NetworkPositions({"layer3.0": make_layer("layer3.0", scale="human")}, scale="human")
    with pytest.raises(TopoError, match="scale"):
        human.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer1.0.npz", "positions.json"]
    assert json.loads((tmp_path / "positions.json").read_text()) == {"scale": "training"}


def test_sidecar_merge_keeps_other_keys(tmp_path):
    (tmp_path / "positions.json").write_text(json.dumps({"note": "swapped"}))
    make_layer(scale="human").save(tmp_path)
    assert json.loads((tmp_path / "positions.json").read_text()) == {
        "note": "swapped",
        "scale": "human",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"dims": (2, 3, 4)},
        {"coordinates": np.full((18, 2), np.nan)},
        {"coordinates": np.zeros((18, 3))},
        {"neighborhood_indices": np.array([[0, 18]])},
        {"neighborhood_indices": np.array([[-1, 2]])},
        {"neighborhood_indices": np.array([0, 1, 2])},
        {"neighborhood_indices": np.zeros((3, 1), dtype=int)},
        {"neighborhood_indices": np.zeros((0, 2), dtype=int)},
        {"neighborhood_indices": np.zeros((3, 2))},
        {"neighborhood_width": 0.0},
        {"neighborhood_width": float("inf")},
        {"scale": "macaque"},
        {"name": ""},
    ],
)
def test_constructor_rejects_inconsistent_fields(change):
    fields = dict(
        name="layer2.0",
        dims=(2, 3, 3),
        coordinates=np.zeros((18, 2)),
        neighborhood_indices=np.zeros((3, 2), dtype=int),
        neighborhood_width=1.0,
    )
    LayerPositions(**fields)  # the unchanged fields are valid
    with pytest.raises(TopoError):
        LayerPositions(**{**fields, **change})


def test_network_rejects_mixed_scales_and_key_name_mismatch():
    with pytest.raises(TopoError, match="scale"):
        NetworkPositions({"layer2.0": make_layer(scale="human")}, scale="training")
    with pytest.raises(TopoError, match="name"):
        NetworkPositions({"layer9.9": make_layer()})


def test_to_torch_gives_float32_coordinates_and_int64_indices():
    coords, indices = make_layer().to_torch()
    assert coords.dtype == torch.float32 and coords.shape == (18, 2)
    assert indices.dtype == torch.int64 and indices.shape == (4, 5)


def test_sheet_presets_are_consistent_with_the_human_over_training_factors():
    training, human = get_scale("training"), get_scale("human")
    factors = {"retina": 0.6, "V1": 1.5, "V2": 1.75, "V4": 1.4, "VTC": 7.0}
    for area, factor in factors.items():
        assert training.size_mm(area) * factor == pytest.approx(human.size_mm(area))
        assert training.width_mm(area) * factor == pytest.approx(human.width_mm(area))
    assert training.size_mm("V1") == 24.5 and human.width_mm("VTC") == 31.818
    assert set(SCALES) == {"training", "human"}


def test_unknown_scale_or_area_is_a_topo_error_listing_the_known_ones():
    with pytest.raises(TopoError, match="human") as info:
        get_scale("macaque")
    assert "training" in str(info.value)
    with pytest.raises(TopoError, match="VTC"):
        get_scale("training").size_mm("IT")
