"""Responses registered on the sheet, from topo and TDANN checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_eval import load_trained_model, registered_responses
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
