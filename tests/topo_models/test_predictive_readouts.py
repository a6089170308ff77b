"""FullGaussian2d / MultipleFullGaussian2d and the shifters, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from topo_models import TopoError
from topo_models.predictive.readouts import (
    FullGaussian2d,
    MultipleFullGaussian2d,
    normalize_source_grid,
)
from topo_models.predictive.shifters import (
    MLPShifter,
    StaticAffine2d,
    StaticAffine2dShifter,
)

PREDICTOR = {"hidden_layers": 1, "hidden_features": 30, "final_tanh": True}


def bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """grid_sample's bilinear read of image (C, H, W) at grid point (x, y), align_corners=True,
    zero padding: ±1 are the corner pixel centres."""
    _, height, width = image.shape
    px, py = (x + 1) / 2 * (width - 1), (y + 1) / 2 * (height - 1)
    x0, y0 = math.floor(px), math.floor(py)
    total = np.zeros(image.shape[0])
    for xi in (x0, x0 + 1):
        for yi in (y0, y0 + 1):
            weight = (1 - abs(px - xi)) * (1 - abs(py - yi))
            if 0 <= xi < width and 0 <= yi < height:
                total += weight * image[:, yi, xi]
    return total


def expected_responses(x, positions, features, bias, shift=None):
    """y[b, n] = Σ_c w[c, n] · bilinear(x[b], position[n] (+ shift[b])) + bias[n]."""
    x = x.detach().double().numpy()
    out = np.zeros((x.shape[0], positions.shape[0]))
    for b in range(x.shape[0]):
        for n, (px, py) in enumerate(positions):
            if shift is not None:
                px, py = px + shift[b, 0], py + shift[b, 1]
            out[b, n] = features[:, n] @ bilinear(x[b], px, py) + bias[n]
    return out


def randomise(readout: FullGaussian2d, seed: int = 0) -> None:
    """Random feature weights and bias, so the test sees every channel and neuron."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        readout._features.copy_(torch.randn(readout._features.shape, generator=generator))
        readout.bias.copy_(torch.randn(readout.bias.shape, generator=generator))


# ------------------------------------------------------------------ evaluation read-out


def test_eval_output_is_bilinear_read_at_mu():
    torch.manual_seed(0)
    readout = FullGaussian2d((3, 7, 11), 5, init_mu_range=0.9).eval()
    randomise(readout)
    x = torch.randn(2, 3, 7, 11)
    mu = readout._mu.detach().reshape(5, 2).double().numpy()
    features = readout._features.detach().reshape(3, 5).double().numpy()
    bias = readout.bias.detach().double().numpy()
    got = readout(x).detach().double().numpy()
    np.testing.assert_allclose(got, expected_responses(x, mu, features, bias), atol=1e-5)
    np.testing.assert_allclose(readout.positions().detach().numpy(), mu, atol=1e-7)


def test_other_spatial_sizes_work_because_positions_are_relative():
    torch.manual_seed(1)
    readout = FullGaussian2d((2, 28, 56), 4, init_mu_range=0.8).eval()
    randomise(readout)
    x = torch.randn(1, 2, 5, 9)  # not the in_shape's H, W: only C matters
    mu = readout._mu.detach().reshape(4, 2).double().numpy()
    features = readout._features.detach().reshape(2, 4).double().numpy()
    expected = expected_responses(x, mu, features, readout.bias.detach().double().numpy())
    np.testing.assert_allclose(readout(x).detach().numpy(), expected, atol=1e-5)


def test_predicted_grid_is_the_mlp_of_the_normalised_source_grid():
    rng = np.random.default_rng(2)
    coords = rng.uniform(0, 800, size=(6, 2))
    readout = FullGaussian2d((3, 8, 8), 6, grid_mean_predictor=PREDICTOR, source_grid=coords)
    readout.eval()
    randomise(readout)
    grid = (coords - coords.mean(0)) / np.abs(coords - coords.mean(0)).max()
    w1, b1, w2, b2 = (
        readout.state_dict()[k].double().numpy()
        for k in (
            "mu_transform.0.weight",
            "mu_transform.0.bias",
            "mu_transform.2.weight",
            "mu_transform.2.bias",
        )
    )
    hidden = grid @ w1.T + b1
    hidden = np.where(hidden > 0, hidden, np.expm1(hidden))  # ELU
    mu = np.tanh(hidden @ w2.T + b2)
    np.testing.assert_allclose(readout.positions().detach().numpy(), mu, atol=1e-6)
    x = torch.randn(2, 3, 8, 8)
    features = readout._features.detach().reshape(3, 6).double().numpy()
    expected = expected_responses(x, mu, features, readout.bias.detach().double().numpy())
    np.testing.assert_allclose(readout(x).detach().numpy(), expected, atol=1e-5)


def test_source_grid_buffer_is_centred_and_divided_by_global_max():
    coords = np.array([[0.0, 10.0], [300.0, 20.0], [600.0, 60.0], [100.0, 30.0]])
    readout = FullGaussian2d((1, 4, 4), 4, grid_mean_predictor=PREDICTOR, source_grid=coords)
    centred = coords - coords.mean(axis=0)
    expected = centred / np.abs(centred).max()  # one scale for both columns
    np.testing.assert_allclose(readout.source_grid.numpy(), expected, atol=1e-7)
    assert readout.source_grid.dtype == torch.float32
    again = normalize_source_grid(readout.source_grid)
    np.testing.assert_allclose(again.numpy(), readout.source_grid.numpy(), atol=1e-7)


def test_single_point_grid_stays_at_zero():
    np.testing.assert_array_equal(normalize_source_grid(np.array([[5.0, 7.0]])).numpy(), 0.0)


# ------------------------------------------------------------------ training sampling


@pytest.mark.parametrize("gauss_type", ["full", "uncorrelated", "isotropic"])
def test_training_samples_have_mean_mu_and_covariance_of_sigma(gauss_type):
    torch.manual_seed(3)
    readout = FullGaussian2d((1, 5, 5), 3, gauss_type=gauss_type).train()
    with torch.no_grad():
        readout._mu.copy_(torch.tensor([[0.1, -0.2], [0.0, 0.3], [-0.25, 0.05]]).view(1, 3, 1, 2))
        if gauss_type == "full":
            factors = torch.tensor([[[0.08, 0.03], [-0.05, 0.06]],
                                    [[0.02, -0.07], [0.04, 0.01]],
                                    [[0.05, 0.0], [0.09, 0.03]]])  # fmt: skip
            readout.sigma.copy_(factors[None])
            expected_cov = factors @ factors.transpose(1, 2)
        elif gauss_type == "uncorrelated":
            stds = torch.tensor([[0.05, 0.1], [0.08, 0.02], [0.03, 0.06]])
            readout.sigma.copy_(stds.view(1, 3, 1, 2))
            expected_cov = torch.diag_embed(stds**2)
        else:
            stds = torch.tensor([0.05, 0.08, 0.03])
            readout.sigma.copy_(stds.view(1, 3, 1, 1))
            expected_cov = torch.diag_embed((stds**2)[:, None].expand(3, 2))
    draws = 40000
    grid = readout.sample_grid(draws).detach().reshape(draws, 3, 2).double()
    mean = grid.mean(0)
    centred = grid - mean
    cov = torch.einsum("bnc,bnd->ncd", centred, centred) / (draws - 1)
    np.testing.assert_allclose(mean.numpy(), readout._mu.detach().reshape(3, 2).numpy(), atol=2e-3)
    np.testing.assert_allclose(cov.numpy(), expected_cov.double().numpy(), atol=3e-4)
    np.testing.assert_allclose(
        readout.covariance().detach().numpy(), expected_cov.numpy(), rtol=1e-5, atol=1e-8
    )


def test_each_image_gets_its_own_draw_unless_batch_sample_is_false():
    torch.manual_seed(4)
    x = torch.randn(1, 2, 6, 6).expand(3, -1, -1, -1)  # three identical images
    per_image = FullGaussian2d((2, 6, 6), 4, init_sigma=0.3).train()
    out = per_image(x)
    assert not torch.allclose(out[0], out[1])
    shared = FullGaussian2d((2, 6, 6), 4, init_sigma=0.3, batch_sample=False).train()
    out = shared(x)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[0], out[2])
    assert not torch.allclose(out[0], shared.eval()(x)[0])  # it did sample
    torch.testing.assert_close(per_image(x, sample=False)[0], per_image.eval()(x)[0])


def test_positions_are_clamped_and_mu_is_clamped_in_place():
    readout = FullGaussian2d((1, 4, 4), 2, init_sigma=5.0).train()
    with torch.no_grad():
        readout._mu.copy_(torch.tensor([[1.7, -0.2], [-3.0, 0.5]]).view(1, 2, 1, 2))
    grid = readout.sample_grid(500)
    assert grid.abs().max() <= 1.0
    assert (grid == 1.0).any() and (grid == -1.0).any()  # wide σ: many draws clamp
    np.testing.assert_allclose(
        readout._mu.detach().reshape(2, 2).numpy(), [[1.0, -0.2], [-1.0, 0.5]]
    )


def test_shift_is_added_after_the_clamp():
    readout = FullGaussian2d((1, 3, 5), 1, bias=False).eval()
    with torch.no_grad():
        readout._mu.copy_(torch.tensor([0.9, 0.0]).view(1, 1, 1, 2))
        readout._features.fill_(1.0)
    x = torch.arange(15, dtype=torch.float32).view(1, 1, 3, 5)
    shift = torch.tensor([[0.5, 0.0]])
    shift_np = shift.numpy().astype(float)
    # read at x = 1.4: pixel column 4.8, i.e. 0.2 of column 4 and 0.8 of zero padding
    expected = expected_responses(x, np.array([[0.9, 0.0]]), np.ones((1, 1)), [0.0], shift_np)
    np.testing.assert_allclose(readout(x, shift=shift).detach().numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(expected, [[0.2 * 9.0]], atol=1e-6)  # row 1, column 4 = 9


def test_gradients_reach_mu_sigma_features_and_predictor():
    coords = np.random.default_rng(5).normal(size=(4, 2))
    readout = FullGaussian2d((2, 6, 6), 4, grid_mean_predictor=PREDICTOR, source_grid=coords)
    readout.train()(torch.randn(3, 2, 6, 6)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in readout.parameters())


# ------------------------------------------------------------------ parametrisation, init


def test_parameter_names_and_shapes_match_the_published_readout():
    coords = np.zeros((7, 2)) + np.arange(7)[:, None]
    with_predictor = FullGaussian2d(
        (64, 28, 56), 7, grid_mean_predictor=PREDICTOR, source_grid=coords
    )
    shapes = {k: tuple(v.shape) for k, v in with_predictor.state_dict().items()}
    assert shapes == {
        "sigma": (1, 7, 2, 2),
        "_features": (1, 64, 1, 7),
        "bias": (7,),
        "source_grid": (7, 2),
        "mu_transform.0.weight": (30, 2),
        "mu_transform.0.bias": (30,),
        "mu_transform.2.weight": (2, 30),
        "mu_transform.2.bias": (2,),
    }
    plain = FullGaussian2d((8, 4, 4), 3, gauss_type="uncorrelated", bias=False)
    assert {k: tuple(v.shape) for k, v in plain.state_dict().items()} == {
        "_mu": (1, 3, 1, 2),
        "sigma": (1, 3, 1, 2),
        "_features": (1, 8, 1, 3),
    }
    assert FullGaussian2d((8, 4, 4), 3, gauss_type="isotropic").sigma.shape == (1, 3, 1, 1)


def test_initialisation_follows_the_published_ranges():
    torch.manual_seed(6)
    full = FullGaussian2d((16, 4, 4), 2000, init_mu_range=0.3, init_sigma=0.1)
    assert full._mu.abs().max() <= 0.3 and full._mu.abs().max() > 0.29
    assert full.sigma.abs().max() <= 0.1 and full.sigma.min() < -0.09
    np.testing.assert_allclose(full._features.detach().numpy(), 1 / 16)
    np.testing.assert_array_equal(full.bias.detach().numpy(), 0.0)
    iso = FullGaussian2d((16, 4, 4), 5, gauss_type="isotropic", init_sigma=0.4)
    np.testing.assert_allclose(iso.sigma.detach().numpy(), 0.4)


def test_bias_starts_at_mean_activity():
    mean = torch.tensor([0.5, 1.5, 2.5])
    readout = FullGaussian2d((2, 4, 4), 3, mean_activity=mean)
    np.testing.assert_allclose(readout.bias.detach().numpy(), [0.5, 1.5, 2.5])
    readout.initialize(np.array([3.0, 2.0, 1.0]))
    np.testing.assert_allclose(readout.bias.detach().numpy(), [3.0, 2.0, 1.0])
    with pytest.raises(TopoError, match="one value per neuron"):
        FullGaussian2d((2, 4, 4), 3, mean_activity=torch.ones(4))


def test_feature_l1_and_regularizer():
    readout = FullGaussian2d((2, 4, 4), 3, feature_reg_weight=0.0076)
    weights = torch.tensor([[1.0, -2.0, 0.5], [-0.25, 3.0, 0.0]])
    with torch.no_grad():
        readout._features.copy_(weights.view(1, 2, 1, 3))
    assert readout.feature_l1().item() == pytest.approx(6.75)
    assert readout.feature_l1("mean").item() == pytest.approx(6.75 / 6)
    assert readout.feature_l1("none").shape == (1, 2, 1, 3)
    assert readout.regularizer().item() == pytest.approx(0.0076 * 6.75)
    fresh = FullGaussian2d((64, 4, 4), 100, feature_reg_weight=0.0076)
    assert fresh.regularizer().item() == pytest.approx(0.0076 * 100)  # 0.0076·n at init


def test_psd_sigma_gives_a_symmetric_positive_definite_covariance():
    torch.manual_seed(7)
    readout = FullGaussian2d((1, 5, 5), 50, psd_sigma=True, init_sigma=0.1)
    assert "sigma_is_cholesky" in readout.state_dict()
    np.testing.assert_allclose(
        readout.covariance().detach().numpy(),
        np.broadcast_to(0.01 * np.eye(2), (50, 2, 2)),
        atol=1e-7,
    )
    with torch.no_grad():
        readout.sigma.normal_(0.0, 2.0)  # any raw values
    factor = readout.sigma_factor().detach()
    assert (factor[:, 0, 1] == 0).all() and (factor.diagonal(dim1=1, dim2=2) > 0).all()
    cov = readout.covariance().detach().double()
    torch.testing.assert_close(cov, cov.transpose(1, 2))
    assert (torch.linalg.eigvalsh(cov) > 0).all()
    softplus = np.log1p(np.exp(readout.sigma.detach()[0].diagonal(dim1=1, dim2=2).numpy()))
    np.testing.assert_allclose(factor.diagonal(dim1=1, dim2=2).numpy(), softplus, rtol=1e-5)
    before = readout.covariance().detach().clone()
    with torch.no_grad():
        readout.sigma[..., 0, 1] += 1.0  # the upper entry is not used
    torch.testing.assert_close(readout.covariance().detach(), before)


def test_published_sigma_is_not_constrained():
    torch.manual_seed(8)
    published = FullGaussian2d((1, 5, 5), 200)
    sigma = published.sigma.detach()[0]
    assert not torch.allclose(sigma, sigma.transpose(1, 2))  # neither symmetric …
    assert (torch.linalg.eigvals(sigma).real < 0).any()  # … nor PSD as a matrix (issue #154)


# ------------------------------------------------------------------ selection, errors


def test_out_idx_selects_neurons():
    torch.manual_seed(9)
    readout = FullGaussian2d((2, 6, 6), 5, init_mu_range=0.7).eval()
    randomise(readout)
    x = torch.randn(2, 2, 6, 6)
    full = readout(x)
    torch.testing.assert_close(readout(x, out_idx=[4, 1]), full[:, [4, 1]])
    mask = np.array([True, False, True, False, False])
    torch.testing.assert_close(readout(x, out_idx=mask), full[:, [0, 2]])
    with pytest.raises(TopoError, match="out of range"):
        readout(x, out_idx=[5])


def test_bad_arguments_raise_topo_errors():
    with pytest.raises(TopoError, match="init_mu_range"):
        FullGaussian2d((2, 4, 4), 3, init_mu_range=1.5)
    with pytest.raises(TopoError, match="psd_sigma"):
        FullGaussian2d((2, 4, 4), 3, gauss_type="isotropic", psd_sigma=True)
    with pytest.raises(TopoError, match="one row per neuron"):
        FullGaussian2d((2, 4, 4), 3, grid_mean_predictor=PREDICTOR, source_grid=np.zeros((4, 2)))
    with pytest.raises(TopoError, match="unknown grid mean predictor"):
        FullGaussian2d(
            (2, 4, 4), 3, grid_mean_predictor={"hiden_layers": 1}, source_grid=np.zeros((3, 2))
        )
    with pytest.raises(TopoError, match="channels"):
        FullGaussian2d((2, 4, 4), 3)(torch.zeros(1, 3, 4, 4))
    with pytest.raises(TopoError, match="shift"):
        FullGaussian2d((2, 4, 4), 3)(torch.zeros(2, 2, 4, 4), shift=torch.zeros(2, 3))


def test_multi_readout_dispatches_by_data_key():
    torch.manual_seed(10)
    grids = {"a": np.random.default_rng(0).normal(size=(3, 2)), "b": np.ones((4, 2))}
    multi = MultipleFullGaussian2d(
        {"a": (2, 5, 5), "b": (2, 5, 5)},
        {"a": 3, "b": 4},
        source_grids=grids,
        mean_activity_dict={"a": torch.ones(3), "b": torch.zeros(4)},
        grid_mean_predictor=PREDICTOR,
        feature_reg_weight=0.5,
    ).eval()
    assert multi.data_keys == ["a", "b"]
    x = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(multi(x, data_key="b"), multi["b"](x))
    assert multi(x, data_key="a").shape == (2, 3)
    np.testing.assert_allclose(multi["a"].bias.detach().numpy(), 1.0)
    assert multi.regularizer("b").item() == pytest.approx(0.5 * 2 * 4 * 0.5)  # 0.5·Σ|1/2|
    assert multi.positions("b").shape == (4, 2)
    assert set(multi.state_dict()) >= {"a.source_grid", "b.mu_transform.2.bias"}
    with pytest.raises(TopoError, match="name the data key"):
        multi(x)
    with pytest.raises(TopoError, match="unknown data key"):
        multi(x, data_key="c")
    single = MultipleFullGaussian2d({"only": (2, 5, 5)}, {"only": 2})
    assert single(x).shape == (2, 2) and single.regularizer().item() == pytest.approx(2.0)
    with pytest.raises(TopoError, match="source grids"):
        MultipleFullGaussian2d({"a": (2, 5, 5)}, {"a": 3}, grid_mean_predictor=PREDICTOR)


# ------------------------------------------------------------------ shifters


def test_baseline_mlp_shifter_keys_shapes_and_57_parameters():
    shifter = MLPShifter(["26872-17-20"], hidden_channels_shifter=5, shift_layers=3)
    shapes = {k: tuple(v.shape) for k, v in shifter.state_dict().items()}
    assert shapes == {
        "26872-17-20.mlp.0.weight": (5, 2),
        "26872-17-20.mlp.0.bias": (5,),
        "26872-17-20.mlp.2.weight": (5, 5),
        "26872-17-20.mlp.2.bias": (5,),
        "26872-17-20.mlp.4.weight": (2, 5),
        "26872-17-20.mlp.4.bias": (2,),
    }
    assert sum(p.numel() for p in shifter.parameters()) == 57
    mlp = shifter["26872-17-20"]
    pupil = torch.randn(6, 2)
    expected = pupil
    for i in (0, 2, 4):
        expected = torch.tanh(expected @ mlp.mlp[i].weight.T + mlp.mlp[i].bias)
    torch.testing.assert_close(mlp(pupil), expected)
    assert shifter.regularizer("26872-17-20").item() == 0.0  # issue #183
    with pytest.raises(TopoError, match="wrong shape"):
        mlp(torch.randn(6, 3))


def test_mlp_shifter_uses_default_linear_init():
    torch.manual_seed(11)
    shifter = MLPShifter(["k"], hidden_channels_shifter=5, shift_layers=3)
    weight = shifter["k"].mlp[2].weight
    bound = 1 / math.sqrt(5)  # torch's kaiming-uniform(a=√5) bound for fan_in 5
    assert weight.abs().max() <= bound and weight.abs().max() > 0.5 * bound


def test_static_affine_shifter_starts_near_zero_and_regularises_weights():
    torch.manual_seed(12)
    shifter = StaticAffine2dShifter(["a", "b"], gamma_shifter=2.0)
    assert set(shifter.state_dict()) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    weights = torch.cat([shifter[k].weight.reshape(-1) for k in "ab"])
    assert 1e-8 < weights.abs().max() < 1e-5
    with torch.no_grad():
        shifter["a"].weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -3.0]]))
    assert shifter.regularizer("a").item() == pytest.approx(2.0 * 14 / 4)
    pupil = torch.randn(4, 2)
    expected = torch.tanh(pupil @ shifter["a"].weight.T + shifter["a"].bias)
    torch.testing.assert_close(shifter["a"](pupil), expected)
    assert isinstance(shifter["a"], StaticAffine2d)


def test_in_place_clamp_does_not_break_a_graph_that_used_mu():
    readout = FullGaussian2d((2, 5, 5), 3).train()
    with torch.no_grad():
        readout._mu.add_(2.0)  # μ left [-1, 1], as after an optimiser step
    spatial = readout.positions().pow(2).sum()  # a loss on positions first (clamps μ) …
    response = readout(torch.randn(2, 2, 5, 5)).sum()  # … then the forward clamps again
    (spatial + response).backward()
    assert readout._mu.grad is not None and readout._mu.abs().max() <= 1.0
