"""positions=swapped: an alpha = 0 network's grating responses permute the initial layout."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

import topo_train.swapped_positions as swapped_module
from tests.conftest import tiny_overrides
from topo_models.positions import NetworkPositions
from topo_train import train
from topo_train.train import make_positions


@pytest.mark.slow
def test_swapped_positions_permute_the_initial_layout_and_resume_per_layer(
    tmp_path, compose_train, monkeypatch
):
    train(compose_train([*tiny_overrides(tmp_path, "lw0"), "tracking=none", "loss=simclr"]))
    overrides = [o for o in tiny_overrides(tmp_path, "pos") if not o.startswith("positions.")]
    swap = [
        *overrides,
        "task=positions",
        "positions=swapped",
        f"positions.network={tmp_path / 'lw0' / 'model.pt'}",
        "positions.initial.n_neighborhoods=300",
        "positions.n_windows=30",
        "positions.proposals_per_window=40",
        f"positions.cache_dir={tmp_path / 'cache'}",
        "positions.progress=false",
    ]
    cfg = compose_train(swap)
    make_positions(cfg)
    result = NetworkPositions.load(tmp_path / "pos")
    data = instantiate(cfg.data)
    from topo_models import create_model

    initial = instantiate(cfg.positions.initial).build(
        create_model("resnet18_spatial"), data.image_size
    )
    moved = 0
    for name in initial:
        assert sorted(map(tuple, result[name].coordinates)) == sorted(
            map(tuple, initial[name].coordinates)
        )  # a permutation of the same sheet
        moved += int(not np.array_equal(result[name].coordinates, initial[name].coordinates))
    assert moved >= 4
    assert sorted(p.stem for p in (tmp_path / "cache").glob("*.npz")) == sorted(initial)

    def no_more_swaps(*args, **kwargs):
        raise AssertionError("a cached layer was swapped again")

    monkeypatch.setattr(swapped_module, "swap_optimize", no_more_swaps)
    again = instantiate(cfg.positions).build(create_model("resnet18_spatial"), data.image_size)
    for name in initial:
        np.testing.assert_array_equal(again[name].coordinates, result[name].coordinates)


@pytest.mark.slow
def test_swapped_without_a_network_trains_the_alpha_zero_control_first(tmp_path, compose_train):
    overrides = [o for o in tiny_overrides(tmp_path, "pos") if not o.startswith("positions.")]
    cfg = compose_train(
        [
            *overrides,
            "task=positions",
            "positions=swapped",
            "positions.initial.n_neighborhoods=300",
            "positions.n_windows=10",
            "positions.proposals_per_window=20",
            "positions.progress=false",
            "loss.layer_weights.layer4_1=2.5",
        ]
    )
    make_positions(cfg)
    import torch

    control = torch.load(tmp_path / "pos_lw0" / "last.pt", weights_only=True)
    assert "alpha: 0.0" in control["config_yaml"] and "layer4_1: 2.5" not in control["config_yaml"]
    assert (tmp_path / "pos_lw0" / "model.pt").is_file()
    assert len(NetworkPositions.load(tmp_path / "pos")) == 8
