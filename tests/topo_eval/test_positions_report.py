"""``task=positions``: per-layer statistics of a position set, recovered exactly from position
sets built by hand, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.topo_eval.conftest import compose_eval
from topo_eval.__main__ import run_task, task_summary
from topo_eval.tdann import positions_report as report
from topo_eval.tdann.positions_report import positions_table, window_counts
from topo_models import TopoError, create_model
from topo_models.positions import LayerPositions, NetworkPositions, RetinotopicLayout

STATISTICS = 19


def grid_layer(name: str = "layer2.0", width_mm: float = 1.5) -> LayerPositions:
    """(2, 4, 5) units exactly on their map positions: x = column (mm), y = 2 * row (mm), so the
    sheet is 4 x 6 mm. Neighbourhoods: the 20 channel pairs of one position (span 0) and 5 rows
    joining column 0 to column 4 (span 4 mm, wider than a window)."""
    channels, height, width = 2, 4, 5
    flat = np.arange(channels * height * width)
    coords = np.stack([flat % width, 2.0 * ((flat // width) % height)], axis=1)
    pairs = np.stack([np.arange(20), np.arange(20) + 20], axis=1)
    wide = np.stack([np.arange(0, 25, 5), np.arange(4, 29, 5)], axis=1)  # column 0 to column 4
    indices = np.concatenate([pairs, wide])
    return LayerPositions(name, (channels, height, width), coords, indices, width_mm, "training")


def margin_layer(name: str = "layer1.0") -> LayerPositions:
    """A 4 x 4 mm sheet (corner units at its four corners) whose 50 x 50 grid of units fills only
    [1, 3]^2: an empty margin of a quarter of the side on every edge."""
    ticks = 1.02 + 0.04 * np.arange(50)
    grid = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    coords = np.concatenate([grid, [[0, 0], [4, 0], [0, 4], [4, 4]]])
    indices = np.arange(10 * 7).reshape(10, 7)
    return LayerPositions(name, (len(coords),), coords, indices, 0.5, "training")


def stats_of(table: pd.DataFrame, layer: str) -> pd.Series:
    return table[table.layer == layer].set_index("statistic").value


def test_a_perfect_retinotopic_grid_gives_its_extent_table_and_full_retinotopy():
    positions = NetworkPositions({"layer2.0": grid_layer()}, scale="training")
    table, counts = positions_table(positions, n_windows=50)
    stats = stats_of(table, "layer2.0")
    assert len(stats) == STATISTICS and set(table.scale) == {"training"}
    assert stats.units == 40 and stats.extent_x == 4 and stats.extent_y == 6
    assert stats.neighborhoods == 25 and stats.neighborhood_units == 2
    assert stats.neighborhoods_in_width == 20 / 25
    assert stats.retinotopy_x == pytest.approx(1, abs=1e-12)
    assert stats.retinotopy_y == pytest.approx(1, abs=1e-12)
    assert stats.neighborhood_width == 1.5 and stats.windows == 50
    assert counts["layer2.0"].shape == (50,)


def test_a_window_as_wide_as_the_sheet_holds_every_unit():
    layer = grid_layer(width_mm=100.0)
    table, counts = positions_table(NetworkPositions({layer.name: layer}, scale="training"), 30)
    stats = stats_of(table, layer.name)
    assert (counts[layer.name] == 40).all()
    for key in ("window_units_min", "window_units_p5", "window_units_median"):
        assert stats[key] == 40
    assert stats.window_units_max == 40 and stats.window_units_uniform == 40
    assert stats.windows_empty == 0 and stats.windows_kept == 1


def test_a_known_empty_margin_is_measured_exactly():
    layer = margin_layer()
    table, _ = positions_table(NetworkPositions({layer.name: layer}, scale="training"), 10)
    stats = stats_of(table, layer.name)
    assert stats.extent_x == 4 and stats.extent_y == 4 and stats.units == 2504
    assert stats.sparse_margin == 0.25
    # the band within 0.4 mm of an edge holds only the 4 corner units, on 36 % of the sheet
    assert stats.edge_density == pytest.approx((4 / 2504) / 0.36, rel=1e-12)
    assert stats.neighborhoods == 10 and stats.neighborhood_units == 7
    assert np.isnan(stats.retinotopy_x) and np.isnan(stats.retinotopy_y)  # a 1-D layer


def test_a_uniform_grid_has_no_margin_and_edge_density_one():
    ticks = 0.02 + 0.04 * np.arange(100)  # at the centres of the margin profile's 100 bins
    coords = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    coords = np.concatenate([coords, [[0, 0], [4, 4]]])  # the sheet's corners
    layer = LayerPositions("layer1.0", (len(coords),), coords, np.arange(4).reshape(2, 2), 0.5)
    stats = stats_of(positions_table(NetworkPositions({"layer1.0": layer}), 10)[0], "layer1.0")
    assert stats.sparse_margin == 0
    # 20 of 100 columns (and rows) lie within 0.4 mm of an edge: 100^2 - 80^2 units + 2 corners
    assert stats.edge_density == pytest.approx(((10000 - 6400 + 2) / 10002) / 0.36, rel=1e-12)


def test_window_counts_match_a_brute_force_count_of_units_inside_each_square():
    rng = np.random.default_rng(3)
    coords = rng.uniform(0, [5, 3], size=(700, 2))
    counts, centres, half = window_counts(coords, 0.8, 200, np.random.default_rng(4))
    inside = (np.abs(coords[None] - centres[:, None]) <= half).all(axis=2)
    assert (counts == inside.sum(axis=1)).all() and (half == 0.4).all()
    low, high = coords.min(axis=0) + half, coords.max(axis=0) - half
    assert ((centres >= low) & (centres <= high)).all()


def test_the_report_reads_a_directory_and_writes_the_table_and_one_figure_per_layer(tmp_path):
    layers = {"layer1.0": margin_layer(), "layer2.0": grid_layer()}
    NetworkPositions(layers, scale="training").save(tmp_path / "positions")
    cfg = compose_eval(
        "task=positions",
        f"positions={tmp_path / 'positions'}",
        f"output_dir={tmp_path / 'out'}",
        "task.windows=100",
    )
    table_path, metrics = run_task(cfg, tmp_path / "out")
    table = pd.read_csv(table_path)
    assert list(table.columns) == ["layer", "statistic", "value", "unit", "scale"]
    assert len(table) == 2 * STATISTICS and list(table.layer.unique()) == ["layer1.0", "layer2.0"]
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir()) == [
        "layer1.0.png",
        "layer2.0.png",
    ]
    assert set(metrics) == {"layer1.0/windows_empty", "layer2.0/windows_empty"}
    summary = task_summary(cfg, tmp_path / "out", table_path, metrics, None)
    assert "next:" in summary and str(table_path) in summary


def tiny_run(run_dir: Path, size: int = 32) -> Path:
    """model.pt of an untrained ResNet-18 trained at ``size`` px, positions/ beside it."""
    torch.manual_seed(0)
    model = create_model("resnet18_spatial").eval()
    run_dir.mkdir(parents=True)
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": {
                "_target_": "topo_models.ResNet18Spatial",
                "head": "none",
                "num_classes": None,
                "projection_dim": 128,
            },
            "config_yaml": f"data:\n  image_size: {size}\n",
        },
        run_dir / "model.pt",
    )
    layout = RetinotopicLayout(scale="training", jitter_mm=0.3, n_neighborhoods=20, seed=0)
    layout.build(model, size).save(run_dir / "positions")
    return run_dir / "model.pt"


def test_a_checkpoint_reports_the_positions_beside_it(tmp_path, monkeypatch):
    checkpoint = tiny_run(tmp_path / "run")
    drawn = []  # the figures are tested above; here only the layers they are drawn for
    monkeypatch.setattr(report, "plot_layer_positions", lambda layer, *args: layer.name)
    monkeypatch.setattr(report, "write_figure", lambda figure, path: drawn.append(figure))
    cfg = compose_eval("task=positions", f"checkpoint={checkpoint}", "task.windows=20")
    table_path, _ = run_task(cfg, tmp_path / "out")
    table = pd.read_csv(table_path)
    assert table.layer.nunique() == 8 and len(table) == 8 * STATISTICS
    assert set(table.scale) == {"training"} and drawn == list(table.layer.unique())


def test_a_missing_directory_is_named(tmp_path):
    cfg = compose_eval("task=positions", f"positions={tmp_path / 'nowhere'}")
    with pytest.raises(TopoError, match="not found") as error:
        run_task(cfg, tmp_path / "out")
    assert error.value.file == str(tmp_path / "nowhere")
    assert not (tmp_path / "out").exists()


def test_neither_positions_nor_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(TopoError, match="nothing to report") as error:
        run_task(compose_eval("task=positions"), tmp_path / "out")
    assert error.value.field == "positions"


def test_a_checkpoint_without_positions_beside_it_names_the_folder(tmp_path):
    checkpoint = tiny_run(tmp_path / "run")
    (tmp_path / "run" / "positions").rename(tmp_path / "elsewhere")
    cfg = compose_eval("task=positions", f"checkpoint={checkpoint}")
    with pytest.raises(TopoError, match="no positions beside it") as error:
        run_task(cfg, tmp_path / "out")
    assert error.value.file == str(tmp_path / "run" / "positions")


def test_a_layer_missing_against_the_model_is_named(tmp_path):
    checkpoint = tiny_run(tmp_path / "run")
    (tmp_path / "run" / "positions" / "layer4.1.npz").unlink()
    cfg = compose_eval("task=positions", f"checkpoint={checkpoint}")
    with pytest.raises(TopoError, match="lack layer 'layer4.1'") as error:
        run_task(cfg, tmp_path / "out")
    assert error.value.field == "layer4.1"
    assert error.value.file == str(tmp_path / "run" / "positions")


def test_positions_of_other_dims_than_the_model_are_refused_naming_the_layer(tmp_path):
    checkpoint = tiny_run(tmp_path / "run")
    grid_layer("layer3.0").save(tmp_path / "run" / "positions")  # (2, 4, 5), not (256, 2, 2)
    cfg = compose_eval("task=positions", f"checkpoint={checkpoint}")
    with pytest.raises(TopoError, match="other dims") as error:
        run_task(cfg, tmp_path / "out")
    assert error.value.field == "layer3.0"


def test_a_file_whose_unit_count_differs_from_its_dims_is_named(tmp_path):
    grid_layer().save(tmp_path / "positions")
    path = tmp_path / "positions" / "layer2.0.npz"
    arrays = dict(np.load(path))
    arrays["coordinates"] = arrays["coordinates"][:-1]
    np.savez(path, **arrays)
    cfg = compose_eval("task=positions", f"positions={tmp_path / 'positions'}")
    with pytest.raises(TopoError, match="coordinates do not match dims") as error:
        run_task(cfg, tmp_path / "out")
    assert error.value.file == str(path) and error.value.field == "coordinates"


def test_bad_settings_are_refused():
    positions = NetworkPositions({"layer2.0": grid_layer()}, scale="training")
    with pytest.raises(TopoError) as error:
        positions_table(positions, n_windows=0)
    assert error.value.field == "windows"
    with pytest.raises(TopoError) as error:
        positions_table(positions, edge_fraction=0.5)
    assert error.value.field == "edge_fraction"
