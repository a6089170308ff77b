"""Training ↔ human scale: explicit, per-area factors, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from topo_models import TopoError, create_model
from topo_models.positions import NetworkPositions, RetinotopicLayout
from topo_models.positions.scale_conversion import convert_scale
from topo_models.trunks import RESNET18_AREAS


@pytest.fixture(scope="module")
def training_positions() -> NetworkPositions:
    return RetinotopicLayout(n_neighborhoods=200, seed=0).build(
        create_model("resnet18_spatial"), 32
    )


def test_round_trip_and_per_area_factors(training_positions):
    human = convert_scale(training_positions, "human", RESNET18_AREAS)
    assert human.scale == "human" and human["layer2.0"].scale == "human"
    for name, factor in (
        ("layer1.0", 0.6),
        ("layer2.0", 1.5),
        ("layer3.0", 1.75),
        ("layer3.1", 1.4),
        ("layer4.1", 7.0),
    ):
        np.testing.assert_allclose(
            human[name].coordinates, training_positions[name].coordinates * factor, rtol=1e-6
        )
        assert human[name].neighborhood_width == pytest.approx(
            training_positions[name].neighborhood_width * factor
        )
        np.testing.assert_array_equal(
            human[name].neighborhood_indices, training_positions[name].neighborhood_indices
        )
    back = convert_scale(human, "training", RESNET18_AREAS)
    for name in training_positions:
        np.testing.assert_allclose(
            back[name].coordinates, training_positions[name].coordinates, rtol=1e-6
        )
    assert back.scale == "training"
    assert float(human["layer4.1"].coordinates.max()) <= 70.0 + 1e-4  # the 70 mm human VTC


def test_unlabelled_positions_need_an_explicit_source_scale(training_positions, tmp_path):
    layer = training_positions["layer2.0"]
    from dataclasses import replace

    unlabelled = NetworkPositions({"layer2.0": replace(layer, scale=None)})
    with pytest.raises(TopoError, match="no scale label"):
        convert_scale(unlabelled, "human", RESNET18_AREAS)
    converted = convert_scale(unlabelled, "human", RESNET18_AREAS, from_scale="training")
    assert converted.scale == "human"
    with pytest.raises(TopoError, match="contradicts"):
        convert_scale(training_positions, "human", RESNET18_AREAS, from_scale="human")
    with pytest.raises(TopoError, match="unknown sheet scale"):
        convert_scale(training_positions, "monkey", RESNET18_AREAS)
