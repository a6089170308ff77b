"""Figures of the predictive report plot the table's numbers and are written as PNGs."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from topo_eval.figure_files import write_figure
from topo_eval.predictive.figures import (
    plot_correlation_histograms,
    plot_rf_positions,
    retinotopy_r,
)


def neuron_rows(rng, key: str, n: int) -> pd.DataFrame:
    cortex = rng.uniform(-500, 500, size=(n, 2))
    angle = 0.7  # RF axes rotated against the cortical axes, as in a real field of view
    rotated = cortex @ np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pd.DataFrame(
        {
            "data_key": key,
            "cortex_x_um": cortex[:, 0],
            "cortex_y_um": cortex[:, 1],
            "rf_x": rotated[:, 0] / 800,
            "rf_y": rotated[:, 1] / 800 + rng.normal(0, 0.3, n),
            "correlation": rng.uniform(0, 0.6, n),
        }
    )


def test_retinotopy_r_is_one_for_an_affine_map_and_small_for_noise():
    rng = np.random.default_rng(0)
    cortex = rng.normal(size=(500, 2))
    assert retinotopy_r(cortex, 0.3 * cortex[:, 0] - 0.8 * cortex[:, 1] + 2) == pytest.approx(1)
    assert abs(retinotopy_r(cortex, rng.normal(size=500))) < 0.15
    assert np.isnan(retinotopy_r(cortex[:3], cortex[:3, 0]))


def test_rf_figure_plots_the_table_and_is_written(tmp_path):
    rng = np.random.default_rng(1)
    table = pd.concat([neuron_rows(rng, "a", 60), neuron_rows(rng, "b", 30)], ignore_index=True)
    figure = plot_rf_positions(table, "b")
    rows = table[table.data_key == "b"]
    left, right = figure.axes[0], figure.axes[1]
    for axis, column in ((left, "rf_x"), (right, "rf_y")):
        dots = axis.collections[0]
        np.testing.assert_allclose(dots.get_offsets(), rows[["cortex_x_um", "cortex_y_um"]])
        np.testing.assert_allclose(dots.get_array(), rows[column])
        assert dots.get_clim() == pytest.approx((rows[column].min(), rows[column].max()))
        assert axis.get_xlabel() == "cortical x (µm)"
    assert left.get_ylabel() == "cortical y (µm)"
    # the title names what is correlated; rf_x is an exact rotation of the cortex
    assert "R(RF x ~ cortical x, y) = 1.00" in left.get_title()
    r_y = retinotopy_r(rows[["cortex_x_um", "cortex_y_um"]].to_numpy(), rows.rf_y.to_numpy())
    assert f"R(RF y ~ cortical x, y) = {r_y:.2f}" in right.get_title() and r_y < 0.99
    path = tmp_path / "figures" / "rf.png"
    write_figure(figure, path)
    image = matplotlib.image.imread(path)
    assert image.shape == (round(4.6 * 110), round(11 * 110), 4)
    assert path.stat().st_size > 20_000 and image[..., :3].std() > 0.05


def test_correlation_histograms_count_every_neuron_and_mark_the_mean(tmp_path):
    rng = np.random.default_rng(2)
    table = pd.concat([neuron_rows(rng, "a", 70), neuron_rows(rng, "b", 40)], ignore_index=True)
    figure = plot_correlation_histograms(table)
    assert len(figure.axes) == 2
    for axis, key in zip(figure.axes, ("a", "b"), strict=True):
        values = table.correlation[table.data_key == key]
        heights = [patch.get_height() for patch in axis.patches]
        assert sum(heights) == len(values)
        (mean_line,) = axis.lines
        assert mean_line.get_xdata()[0] == pytest.approx(values.mean())
        assert key in axis.get_title()
    assert "single-trial correlation" in figure.axes[-1].get_xlabel()
    path = tmp_path / "hist.png"
    write_figure(figure, path)
    assert matplotlib.image.imread(path).shape == (round(2 * 2.6 * 110), 6 * 110, 4)
