"""positions=swapped: an alpha = 0 network's grating responses permute the initial layout."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

import topo_train.sheet.swapped as swapped_module
from tests.conftest import tiny_overrides
from topo_models import TopoError
from topo_models.positions import NetworkPositions
from topo_train import train
from topo_train.train import make_positions, with_objective_requirements


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
    cfg = with_objective_requirements(compose_train(swap))
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


def test_swapped_without_a_network_says_which_stages_to_run_first(tmp_path, compose_train):
    """The alpha = 0 control is a stage of its own (a run, or the DVC pipeline's), never a
    training started inside the positions stage."""
    overrides = [o for o in tiny_overrides(tmp_path, "pos") if not o.startswith("positions.")]
    cfg = compose_train([*overrides, "task=positions", "positions=swapped"])
    with pytest.raises(TopoError, match="loss.alpha=0") as error:
        make_positions(cfg)
    assert "task=positions positions=swapped positions.network=" in str(error.value)
    assert not (tmp_path / "pos").exists() and not (tmp_path / "pos_lw0").exists()
