"""The spatial correlation loss against an independent numpy computation of TDANN's formulas."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from topo_models import TopoError, create_model
from topo_models.losses import (
    SpatialCorrelationLoss,
    batched_spatial_correlation_loss,
    spatial_correlation_loss,
)
from topo_models.losses.spatial_loss import width_groups
from topo_models.positions import UniformLayout


def numpy_reference(responses: np.ndarray, coordinates: np.ndarray, version: str) -> float:
    """TDANN's loss written out plainly: corrcoef with dead units → 0, strict lower triangles."""
    x = responses.astype(np.float64)
    centred = x - x.mean(axis=0)
    std = np.sqrt((centred**2).sum(axis=0) / (x.shape[0] - 1))
    std[std == 0] = 1.0
    corr = np.clip((centred.T @ centred) / (x.shape[0] - 1) / np.outer(std, std), -1, 1)
    dist = np.sqrt(((coordinates[:, None, :] - coordinates[None, :, :]) ** 2).sum(-1))
    inv = 1.0 / (dist + 1.0)
    rows, cols = np.tril_indices(x.shape[1], k=-1)
    r, s = corr[rows, cols], inv[rows, cols]
    if version == "absolute":
        return float(np.abs(r - s).mean())
    return float((1.0 - np.corrcoef(r, s)[0, 1]) / 2.0)


def make_case(seed: int, batch: int, units: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    responses = rng.normal(size=(batch, units))
    responses[:, 0] = 0.0  # a dead unit
    responses[:, 1] = 0.5  # a constant unit
    responses[:, 2] += 2 * responses[:, 3]  # a correlated pair
    coordinates = rng.uniform(0, 6, size=(units, 2))
    return responses, coordinates


@pytest.mark.parametrize("version", ["relative", "absolute"])
@pytest.mark.parametrize(("batch", "units"), [(8, 5), (32, 60), (16, 257)])
def test_loss_matches_numpy_formula_including_zero_variance_units(version, batch, units):
    responses, coordinates = make_case(batch * units, batch, units)
    got = spatial_correlation_loss(
        torch.tensor(responses, dtype=torch.float32),
        torch.tensor(coordinates, dtype=torch.float32),
        version=version,
    )
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(numpy_reference(responses, coordinates, version), abs=2e-6)


def test_relative_loss_stays_accurate_when_correlations_cluster():
    rng = np.random.default_rng(3)
    shared = rng.normal(size=(64, 1))
    responses = shared + 0.2 * rng.normal(size=(64, 150))  # all r ≈ 0.96 ± small
    coordinates = rng.uniform(0, 4, size=(150, 2))
    got = spatial_correlation_loss(
        torch.tensor(responses, dtype=torch.float32), torch.tensor(coordinates, dtype=torch.float32)
    )
    assert got.item() == pytest.approx(
        numpy_reference(responses, coordinates, "relative"), abs=1e-5
    )


def test_smooth_map_scores_lower_than_shuffled_positions():
    """Units whose tuning varies smoothly with position beat the same units shuffled."""
    rng = np.random.default_rng(0)
    coordinates = rng.uniform(0, 5, size=(120, 2))
    stimuli = rng.normal(size=(40, 2))
    responses = np.tanh(stimuli @ coordinates.T / 3) + 0.05 * rng.normal(size=(40, 120))
    x = torch.tensor(responses, dtype=torch.float32)
    smooth = spatial_correlation_loss(x, torch.tensor(coordinates, dtype=torch.float32))
    shuffled = spatial_correlation_loss(
        x, torch.tensor(coordinates[rng.permutation(120)], dtype=torch.float32)
    )
    assert smooth.item() < shuffled.item() - 0.1


def test_padding_mask_gives_the_unpadded_values():
    a, ca = make_case(1, 16, 30)
    b, cb = make_case(2, 16, 12)
    responses = torch.zeros(2, 16, 30)
    coords = torch.zeros(2, 30, 2)
    responses[0], coords[0] = torch.tensor(a), torch.tensor(ca)
    responses[1, :, :12], coords[1, :12] = torch.tensor(b), torch.tensor(cb)
    valid = torch.zeros(2, 30, dtype=torch.bool)
    valid[0] = True
    valid[1, :12] = True
    for version in ("relative", "absolute"):
        got = batched_spatial_correlation_loss(responses, coords, valid, version)
        assert got[0].item() == pytest.approx(numpy_reference(a, ca, version), abs=2e-6)
        assert got[1].item() == pytest.approx(numpy_reference(b, cb, version), abs=2e-6)


def test_batched_gradient_matches_autograd_of_the_plain_formula_with_padding():
    """The relative loss's hand-written backward against float64 autograd of the plain formula,
    neighbourhood by neighbourhood: two widths (one padded), weighted differently; padding,
    dead and constant units get no gradient."""
    torch.manual_seed(1)
    widths, weights = (9, 6), (0.7, 1.3)
    responses = torch.zeros(2, 10, 9, dtype=torch.float64)
    coords = torch.zeros(2, 9, 2, dtype=torch.float64)
    valid = torch.zeros(2, 9, dtype=torch.bool)
    for g, width in enumerate(widths):
        responses[g, :, :width] = torch.randn(10, width, dtype=torch.float64)
        coords[g, :width] = torch.rand(width, 2, dtype=torch.float64) * 3
        valid[g, :width] = True
    ours = responses.float().requires_grad_(True)
    values = batched_spatial_correlation_loss(ours, coords.float(), valid)
    (values * torch.tensor(weights)).sum().backward()
    for g, (width, weight) in enumerate(zip(widths, weights, strict=True)):
        plain = responses[g, :, :width].clone().requires_grad_(True)
        (weight * plain_torch_loss(plain, coords[g, :width])).backward()
        torch.testing.assert_close(
            ours.grad[g, :, :width].double(), plain.grad, rtol=1e-3, atol=1e-6
        )
    assert not ours.grad[1, :, 6:].any()  # padding
    dead = torch.randn(10, 5)
    dead[:, 0], dead[:, 1] = 0.0, 0.5  # a dead and a constant unit
    dead.requires_grad_(True)
    spatial_correlation_loss(dead, torch.rand(5, 2)).backward()
    assert not dead.grad[:, :2].any() and dead.grad[:, 2:].abs().sum() > 0


def test_all_dead_units_give_finite_loss_not_nan():
    got = spatial_correlation_loss(torch.zeros(8, 10), torch.rand(10, 2))
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(0.5)  # Pearson undefined → counted as 0


def test_bad_inputs_raise_topo_error():
    with pytest.raises(TopoError, match="version"):
        spatial_correlation_loss(torch.rand(4, 3), torch.rand(3, 2), version="cosine")
    with pytest.raises(TopoError, match="two samples"):
        spatial_correlation_loss(torch.rand(1, 3), torch.rand(3, 2))
    with pytest.raises(TopoError, match="one neighbourhood"):
        spatial_correlation_loss(torch.rand(2, 4, 3), torch.rand(3, 2))


class FakePositions:
    def __init__(self, dims, coordinates, neighborhoods):
        self.dims = dims
        self.coordinates = coordinates
        self.neighborhood_indices = neighborhoods


def two_layer_positions(seed: int = 0):
    rng = np.random.default_rng(seed)
    first = FakePositions(
        (2, 3, 3),
        rng.uniform(0, 2, size=(18, 2)).astype(np.float32),
        np.stack([rng.permutation(18)[:6] for _ in range(5)]),
    )
    second = FakePositions(
        (4, 2, 2),
        rng.uniform(0, 3, size=(16, 2)).astype(np.float32),
        np.stack([rng.permutation(16)[:9] for _ in range(7)]),
    )
    return {"a": first, "b": second}


def test_module_equals_loop_over_layers_and_neighbourhoods():
    positions = two_layer_positions()
    loss = SpatialCorrelationLoss(positions, {"a": 0.5, "b": 2.0}, neighborhoods_per_step=3, seed=7)
    features = {"a": torch.randn(10, 2, 3, 3), "b": torch.randn(10, 4, 2, 2)}
    # Replay the same draws with an identical generator, then loop plainly.
    replay = torch.Generator().manual_seed(7)
    uniforms = torch.rand((2, 3), generator=replay)
    total, per_layer = loss(features)
    expected_total = 0.0
    for index, (name, weight) in enumerate((("a", 0.5), ("b", 2.0))):
        table = positions[name].neighborhood_indices
        picks = (uniforms[index] * table.shape[0]).long()
        values = [
            numpy_reference(
                features[name].flatten(1)[:, table[p]].numpy(),
                positions[name].coordinates[table[p]],
                "relative",
            )
            for p in picks.tolist()
        ]
        assert per_layer[name].item() == pytest.approx(np.mean(values), abs=2e-6)
        expected_total += weight * np.mean(values)
    assert total.item() == pytest.approx(expected_total, abs=1e-5)


def test_no_gradient_reaches_positions_but_features_get_one():
    positions = two_layer_positions()
    loss = SpatialCorrelationLoss(positions, {"a": 1.0, "b": 1.0})
    features = {
        "a": torch.randn(6, 2, 3, 3, requires_grad=True),
        "b": torch.randn(6, 4, 2, 2, requires_grad=True),
    }
    total, _ = loss(features)
    total.backward()
    assert features["a"].grad is not None and features["a"].grad.abs().sum() > 0
    buffers = dict(loss.named_buffers())
    assert all(not b.requires_grad and b.grad is None for b in buffers.values())
    assert not any(True for _ in loss.parameters())
    assert "coordinates_0" in buffers and "neighborhoods_1" in buffers


def test_generator_state_round_trips_through_state_dict():
    positions = two_layer_positions()
    features = {"a": torch.randn(6, 2, 3, 3), "b": torch.randn(6, 4, 2, 2)}
    first = SpatialCorrelationLoss(positions, {"a": 1.0, "b": 1.0}, seed=3)
    first(features)
    saved = first.state_dict()
    expected = first(features)[0]
    second = SpatialCorrelationLoss(positions, {"a": 1.0, "b": 1.0}, seed=99)
    second.load_state_dict(saved)
    assert second(features)[0].item() == expected.item()


def test_shape_mismatch_and_bad_weights_are_reported():
    positions = two_layer_positions()
    loss = SpatialCorrelationLoss(positions, {"a": 1.0})
    with pytest.raises(TopoError, match=r"dims \(2, 3, 3\)"):
        loss({"a": torch.randn(4, 2, 4, 4)})
    with pytest.raises(TopoError, match="no positions"):
        SpatialCorrelationLoss(positions, {"c": 1.0})
    with pytest.raises(TopoError, match=">= 0"):
        SpatialCorrelationLoss(positions, {"a": -1.0})


def plain_torch_loss(responses: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """The relative loss written the straightforward way, for autograd to differentiate."""
    centred = responses - responses.mean(dim=0)
    std = centred.pow(2).sum(dim=0).div(responses.shape[0] - 1).sqrt()
    corr = centred.T @ centred / (responses.shape[0] - 1) / torch.outer(std, std)
    inv = 1 / (torch.cdist(coordinates, coordinates) + 1)
    rows, cols = torch.tril_indices(len(coordinates), len(coordinates), offset=-1)
    r, s = corr[rows, cols], inv[rows, cols]
    r, s = r - r.mean(), s - s.mean()
    return (1 - (r @ s) / (r.norm() * s.norm())) / 2


def test_gradient_matches_autograd_of_the_plain_formula():
    torch.manual_seed(0)
    responses = torch.randn(12, 40, dtype=torch.float64)
    coordinates = torch.rand(40, 2, dtype=torch.float64) * 3
    ours = responses.clone().float().requires_grad_(True)
    spatial_correlation_loss(ours, coordinates.float()).backward()
    plain = responses.clone().requires_grad_(True)
    plain_torch_loss(plain, coordinates).backward()
    torch.testing.assert_close(ours.grad.double(), plain.grad, rtol=1e-3, atol=1e-6)


def test_layers_with_the_same_neighbourhood_width_share_one_batched_call():
    assert width_groups([67, 67, 172, 171, 500, 500]) == [
        ([0, 1], 67),
        ([2], 172),
        ([3], 171),
        ([4, 5], 500),
    ]
    positions = two_layer_positions()
    positions["c"] = positions["a"]  # as wide as "a" (6 units), unlike "b" (9)
    loss = SpatialCorrelationLoss(positions, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert loss.groups == [([0, 2], 6), ([1], 9)]


def test_module_gradient_equals_autograd_of_a_loop_over_layers_and_neighbourhoods():
    positions = two_layer_positions()
    loss = SpatialCorrelationLoss(positions, {"a": 0.5, "b": 2.0}, neighborhoods_per_step=3, seed=7)
    torch.manual_seed(0)
    features = {
        "a": torch.randn(10, 2, 3, 3, dtype=torch.float64, requires_grad=True),
        "b": torch.randn(10, 4, 2, 2, dtype=torch.float64, requires_grad=True),
    }
    loss(features)[0].backward()
    grads = {name: f.grad.clone() for name, f in features.items()}
    replay = torch.Generator().manual_seed(7)
    uniforms = torch.rand((2, 3), generator=replay)
    expected = 0.0
    for index, (name, weight) in enumerate((("a", 0.5), ("b", 2.0))):
        table = torch.as_tensor(positions[name].neighborhood_indices)
        coords = torch.as_tensor(positions[name].coordinates, dtype=torch.float64)
        picks = (uniforms[index] * table.shape[0]).long().tolist()
        values = [
            plain_torch_loss(features[name].flatten(1)[:, table[p]], coords[table[p]])
            for p in picks
        ]
        expected = expected + weight * torch.stack(values).mean()
    plain = torch.autograd.grad(expected, list(features.values()))
    for (name, grad), reference in zip(grads.items(), plain, strict=True):
        torch.testing.assert_close(grad, reference, rtol=1e-4, atol=1e-7, msg=name)


def test_a_steps_activations_are_freed_after_backward():
    """Nothing the loss keeps holds a step's features: a run would otherwise grow by every
    step's activations (benchmarks/RESULTS.md, 2026-12-06, memory growth)."""
    torch.manual_seed(0)
    model = create_model("resnet18_spatial")
    positions = UniformLayout(n_neighborhoods=30, seed=1).build(model, 32)
    loss = SpatialCorrelationLoss(positions, {name: 0.5 for name in positions})
    output, features = model(torch.randn(4, 3, 32, 32))
    spatial, _ = loss(features)
    alive = [weakref.ref(tensor) for tensor in features.values()]
    (output.square().mean() + spatial).backward()
    del output, features, spatial
    gc.collect()
    assert [ref() for ref in alive] == [None] * len(alive)
