"""Laplace penalties and group sparsity against explicit-loop numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_models import TopoError
from topo_models.predictive.regularizers import (
    GaussianLaplaceL2,
    Laplace,
    LaplaceL1,
    LaplaceL2,
    LaplaceL2norm,
    build_input_regularizer,
    group_sparsity,
    laplace_filter,
)

LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=np.float64)


def correlate_loops(image: np.ndarray, stencil: np.ndarray, pad: int) -> np.ndarray:
    """Zero-padded 2-D cross-correlation written out pixel by pixel."""
    padded = np.zeros((image.shape[0] + 2 * pad, image.shape[1] + 2 * pad))
    padded[pad : pad + image.shape[0], pad : pad + image.shape[1]] = image
    s = stencil.shape[0]
    out = np.zeros((padded.shape[0] - s + 1, padded.shape[1] - s + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            total = 0.0
            for a in range(s):
                for b in range(s):
                    total += stencil[a, b] * padded[i + a, j + b]
            out[i, j] = total
    return out


def responses(weight: torch.Tensor, stencil: np.ndarray, pad: int) -> np.ndarray:
    w = weight.double().numpy()
    return np.stack(
        [
            correlate_loops(w[o, i], stencil, pad)
            for o in range(w.shape[0])
            for i in range(w.shape[1])
        ]
    )


@pytest.fixture
def weight() -> torch.Tensor:
    return torch.randn(3, 2, 7, 7, generator=torch.Generator().manual_seed(0))


def test_laplace_filter_is_the_five_point_stencil_and_log_stencils_annihilate_constants():
    np.testing.assert_array_equal(laplace_filter(3)[0, 0].numpy(), LAPLACIAN)
    for size in (3, 5, 7):
        stencil = laplace_filter(size)
        assert stencil.shape == (1, 1, size, size)
        assert stencil.sum() == 0  # a constant kernel has zero Laplacian
        torch.testing.assert_close(stencil, stencil.flip(-1).transpose(-1, -2))  # isotropic
    assert laplace_filter(5)[0, 0, 2, 2] == -16 and laplace_filter(7)[0, 0, 3, 3] == -24
    with pytest.raises(TopoError, match="filter_size"):
        laplace_filter(4)


def test_laplace_of_a_paraboloid_is_minus_four_in_the_interior():
    rows, cols = np.meshgrid(np.arange(9.0), np.arange(9.0), indexing="ij")
    bowl = torch.tensor(rows**2 + cols**2, dtype=torch.float32)[None, None]
    out = Laplace(padding=0)(bowl)
    assert out.shape == (1, 1, 7, 7)
    torch.testing.assert_close(out, torch.full_like(out, -4.0))


@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("avg", [True, False])
def test_laplace_l2_is_half_the_aggregated_squared_response(weight, pad, avg):
    r = responses(weight, LAPLACIAN, pad)
    expected = (r**2).mean() / 2 if avg else (r**2).sum() / 2
    got = LaplaceL2(padding=pad)(weight, avg=avg)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)


@pytest.mark.parametrize("pad", [None, 0, 2])
@pytest.mark.parametrize("avg", [True, False])
def test_laplace_l2norm_divides_by_the_aggregated_weight_energy(weight, pad, avg):
    r = responses(weight, LAPLACIAN, 1 if pad is None else pad)
    w = weight.double().numpy()
    expected = (r**2).mean() / (w**2).mean() if avg else (r**2).sum() / (w**2).sum()
    penalty = LaplaceL2norm(padding=pad)
    np.testing.assert_allclose(penalty(weight, avg=avg).item(), expected, rtol=1e-5)
    # scale-free: only the shape of the kernels counts
    np.testing.assert_allclose(
        penalty(7.5 * weight, avg=avg).item(), penalty(weight, avg=avg).item(), rtol=1e-5
    )


def test_laplace_l2norm_default_padding_keeps_size_so_mean_and_sum_agree(weight):
    penalty = LaplaceL2norm()
    assert penalty.laplace.padding_size == 1
    torch.testing.assert_close(penalty(weight, avg=True), penalty(weight, avg=False))


@pytest.mark.parametrize("pad", [0, 1])
def test_laplace_l1_aggregates_absolute_responses(weight, pad):
    r = responses(weight, LAPLACIAN, pad)
    np.testing.assert_allclose(LaplaceL1(padding=pad)(weight).item(), np.abs(r).mean(), rtol=1e-5)
    np.testing.assert_allclose(
        LaplaceL1(padding=pad)(weight, avg=False).item(), np.abs(r).sum(), rtol=1e-5
    )


@pytest.mark.parametrize("size", [5, 7])
def test_log_stencils_enter_laplace_l2(weight, size):
    stencil = laplace_filter(size)[0, 0].double().numpy()
    r = responses(weight, stencil, size // 2)
    got = LaplaceL2(padding=None, filter_size=size)(weight, avg=False)
    np.testing.assert_allclose(got.item(), (r**2).sum() / 2, rtol=1e-5)


@pytest.mark.parametrize("avg", [True, False])
def test_gaussian_laplace_l2_masks_the_response_by_one_minus_a_gaussian(weight, avg):
    k = weight.shape[-1]
    sigma = k / 4
    centre = (k - 1) / 2
    gauss = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            gauss[i, j] = np.exp(-((i - centre) ** 2 + (j - centre) ** 2) / (2 * sigma**2))
    gauss = (gauss - gauss.min()) / (gauss - gauss.min()).max()
    masked = responses(weight, LAPLACIAN, 1) * (1 - gauss)
    w = weight.double().numpy()
    expected = (masked**2).mean() / (w**2).mean() if avg else (masked**2).sum() / (w**2).sum()
    got = GaussianLaplaceL2(kernel=k)(weight, avg=avg)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    # the centre tap is forgiven entirely
    assert gauss[k // 2, k // 2] == 1.0


def test_gaussian_laplace_l2_refuses_a_shrinking_padding_and_a_different_kernel(weight):
    with pytest.raises(TopoError, match="laplace_padding"):
        GaussianLaplaceL2(kernel=7, padding=0)
    with pytest.raises(TopoError, match="kernel size"):
        GaussianLaplaceL2(kernel=5)(weight)


def test_the_laplace_filter_is_the_only_saved_buffer():
    for penalty in (LaplaceL2(), LaplaceL2norm(), LaplaceL1(), GaussianLaplaceL2(kernel=9)):
        state = penalty.state_dict()
        assert list(state) == ["laplace.filter"]
        assert state["laplace.filter"].shape == (1, 1, 3, 3)


def test_penalties_follow_the_weight_dtype_and_refuse_non_conv_weights():
    w64 = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    assert LaplaceL2norm()(w64).dtype == torch.float64
    with pytest.raises(TopoError, match="weight"):
        LaplaceL2norm()(torch.randn(4, 5))
    with pytest.raises(TopoError, match="input_regularizer"):
        build_input_regularizer("LaplaceL3", padding=None, kernel=3)


def test_group_sparsity_is_the_mean_kernel_norm_averaged_over_layers():
    generator = torch.Generator().manual_seed(1)
    weights = [
        torch.randn(4, 3, 3, 3, generator=generator),
        torch.randn(4, 4, 5, 5, generator=generator),
    ]
    per_layer = []
    for w in weights:
        norms = [
            np.sqrt((w[o, i].double().numpy() ** 2).sum())
            for o in range(w.shape[0])
            for i in range(w.shape[1])
        ]
        per_layer.append(np.mean(norms))
    np.testing.assert_allclose(group_sparsity(weights).item(), np.mean(per_layer), rtol=1e-6)
    assert group_sparsity([]).item() == 0.0
