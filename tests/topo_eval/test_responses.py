"""Responses registered on the sheet, from topo and TDANN checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from topo_eval import load_trained_model, registered_responses
from topo_eval.tdann.responses import plot_layer, sheet_map
from topo_models import TopoError, create_model
from topo_models.checkpoints import save_vissl_style_checkpoint
from topo_models.positions import UniformLayout


def test_table_rows_are_units_at_their_coordinates_for_a_vissl_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18_spatial", head="projector").eval()
    path = save_vissl_style_checkpoint(model, tmp_path / "model_final_checkpoint_phase199.torch")
    loaded = load_trained_model(path)
    positions = UniformLayout(n_neighborhoods=50, seed=0).build(model, 32)
    image = torch.randn(3, 32, 32)
    table = registered_responses(loaded, positions, image, ["layer2.0"])
    _, features = model(image[None])
    expected = features["layer2.0"][0].flatten().detach().numpy()
    assert list(table.columns) == ["layer", "unit", "x_mm", "y_mm", "response"]
    np.testing.assert_allclose(table.response.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        table[["x_mm", "y_mm"]].to_numpy(), positions["layer2.0"].coordinates
    )


def test_unreadable_model_file_is_reported(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TopoError) as error:
        load_trained_model(path)
    assert str(path) in str(error.value)


def test_the_sheet_map_is_the_local_mean_without_holes_inside_the_sheet():
    """Units scattered unevenly over a 10 mm sheet, each responding x + noise: the map follows
    x (the local mean removes the unit-to-unit noise), has a value wherever units are, and is
    blank far from any unit."""
    rng = np.random.default_rng(0)
    coords = np.column_stack([rng.uniform(0, 10, 3000) ** 1.2 / 10**0.2, rng.uniform(0, 10, 3000)])
    response = coords[:, 0] + rng.normal(0.0, 2.0, 3000)
    values, (left, right, bottom, top), sigma = sheet_map(coords, response)
    rows, cols = values.shape
    xs = left + (np.arange(cols) + 0.5) * (right - left) / cols
    ys = top + (np.arange(rows) + 0.5) * (bottom - top) / rows  # row 0 is y = top (smallest)
    inside = (xs[None, :] > 1) & (xs[None, :] < 9) & (ys[:, None] > 1) & (ys[:, None] < 9)
    assert not np.isnan(values[inside]).any()
    assert np.abs(values - xs[None, :])[inside].mean() < 0.3  # noise σ 2 → ~15× less
    assert np.isnan(values[0, 0]) and 0.1 < sigma < 0.5  # a corner 2σ off the sheet


def test_the_layer_figure_says_what_it_draws():
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "layer": "layer4.1",
            "unit": np.arange(500),
            "x_mm": rng.uniform(0, 5, 500),
            "y_mm": rng.uniform(0, 5, 500),
            "response": rng.gamma(1.0, size=500),
        }
    )
    figure = plot_layer(table, "layer4.1", "astronaut.png")
    titles = [axis.get_title() for axis in figure.axes]
    assert (
        figure._suptitle.get_text() == "layer4.1: responses to astronaut.png on the cortical sheet"
    )
    assert "every unit (500" in titles[0] and "local mean over σ =" in titles[1]
    assert "2–98 percentile" in figure.axes[2].get_ylabel()  # the first colour bar
