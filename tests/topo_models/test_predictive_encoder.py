"""FiringRateEncoder and the Sensorium baseline builders (parameter counts of the published
checkpoints, see docs/predictive.md; exact state-dict keys)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from topo_models import TopoError, create_model, list_models
from topo_models.predictive import (
    FiringRateEncoder,
    MLPShifter,
    sensorium_cnn,
    sensorium_ln,
    stacked_core_full_gauss_readout,
)

LAPLACE = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


def coords(n: int, seed: int = 0, dims: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 600, size=(n, dims))


def small_model(shifter: bool = False, keys=("a",), elu_offset: float = 0.0) -> FiringRateEncoder:
    """A few-channel version of the baseline, fast enough for many tests."""
    n = {key: 5 + i for i, key in enumerate(keys)}
    return stacked_core_full_gauss_readout(
        n,
        {key: coords(count, i) for i, (key, count) in enumerate(n.items())},
        input_channels=2,
        seed=0,
        hidden_channels=6,
        input_kern=5,
        hidden_kern=3,
        layers=3,
        gamma_input=6.3831,
        gamma_readout=0.0076,
        depth_separable=True,
        stack=-1,
        init_sigma=0.1,
        init_mu_range=0.3,
        grid_mean_predictor={
            "type": "cortex",
            "input_dimensions": 2,
            "hidden_layers": 1,
            "hidden_features": 30,
            "final_tanh": True,
        },  # fmt: skip
        shifter=shifter,
        elu_offset=elu_offset,
    )


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ------------------------------------------------------------------ the encoder


def test_output_is_elu_of_readout_plus_offset_plus_one():
    model = small_model(elu_offset=0.3).eval()
    images = torch.randn(3, 2, 16, 20)
    core_out, _ = model.core(images)
    readout = model.readout["a"](core_out).detach().double().numpy()
    shifted = readout + 0.3
    expected = np.where(shifted > 0, shifted, np.expm1(shifted)) + 1.0
    np.testing.assert_allclose(model(images).detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    assert (model(images) > 0).all()


def test_shifter_needs_the_pupil_centre_and_moves_the_readout():
    model = small_model(shifter=True).eval()
    images = torch.randn(2, 2, 16, 20)
    with pytest.raises(TopoError, match="pupil"):
        model(images)
    pupil = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    with pytest.raises(TopoError, match="shift"):
        model(images, pupil_center=pupil, shift=torch.zeros(2, 2))
    core_out, _ = model.core(images)
    shift = model.shifter["a"](pupil)
    expected = F.elu(model.readout["a"](core_out, shift=shift)) + 1
    torch.testing.assert_close(model(images, pupil_center=pupil), expected)
    assert not torch.allclose(
        model(images, pupil_center=pupil), F.elu(model.readout["a"](core_out)) + 1
    )


def test_a_passed_shift_is_used_without_a_shifter():
    model = small_model().eval()
    images = torch.randn(2, 2, 16, 20)
    shift = torch.tensor([[0.2, -0.1], [0.0, 0.4]])
    core_out, _ = model.core(images)
    expected = F.elu(model.readout["a"](core_out, shift=shift)) + 1
    torch.testing.assert_close(model(images, shift=shift), expected)


def test_data_keys_dispatch_and_single_key_default():
    model = small_model(keys=("m1", "m2")).eval()
    images = torch.randn(2, 2, 16, 20)
    assert model.data_keys == ["m1", "m2"]
    assert model(images, data_key="m1").shape == (2, 5)
    assert model(images, data_key="m2").shape == (2, 6)
    with pytest.raises(TopoError, match="data key"):
        model(images)
    assert small_model()(torch.randn(2, 2, 16, 20)).shape == (2, 5)


def test_detach_core_stops_gradients_into_the_core_only():
    model = small_model().train()
    model(torch.randn(4, 2, 16, 20), detach_core=True).sum().backward()
    assert all(p.grad is None for p in model.core.parameters())
    assert all(p.grad is not None for p in model.readout.parameters())


def test_return_features_exposes_every_core_layer():
    model = small_model().eval()
    rates, features = model(torch.randn(2, 2, 16, 20), return_features=True)
    assert list(features) == ["layer0", "layer1", "layer2"]
    assert rates.shape == (2, 5)
    images = torch.randn(2, 2, 16, 20)
    _, features = model(images, return_features=True)
    core_out, _ = model.core(images)
    torch.testing.assert_close(features["layer2"], core_out)  # stack=-1: output = last layer
    assert features["layer0"].shape == (2, 6, 12, 16)  # unpadded 5×5 conv


def test_regularizer_is_laplace_ratio_plus_feature_l1_plus_shifter():
    model = small_model(shifter=True)
    weight = model.core.features.layer0.conv.weight.detach()
    kernels = weight.reshape(-1, 1, *weight.shape[-2:])
    lap = F.conv2d(kernels, LAPLACE[None, None], padding=1)
    core_term = 6.3831 * (lap**2).sum() / (kernels**2).sum()
    readout_term = 0.0076 * model.readout["a"]._features.detach().abs().sum()
    expected = (core_term + readout_term).item()  # the MLP shifter adds 0 (issue #183)
    assert model.regularizer("a").item() == pytest.approx(expected, rel=1e-5)
    assert model.regularizer().item() == pytest.approx(expected, rel=1e-5)


def test_positions_are_the_readout_eval_grid():
    model = small_model()
    readout = model.readout["a"]
    torch.testing.assert_close(model.positions(), readout.mu.reshape(-1, 2).clamp(-1, 1))
    assert model.positions().shape == (5, 2)


# ------------------------------------------------------------------ the published baselines


def test_sensorium_cnn_parameter_counts_match_the_published_checkpoint():
    model = sensorium_cnn({"26872-17-20": 7776}, {"26872-17-20": coords(7776)})
    assert trainable(model.core) == 39_680
    assert trainable(model.readout) == 536_696  # 7776 · (64 + 4 + 1) + 152 (predictor MLP)
    assert model.shifter is None
    assert trainable(model) == 576_376


def test_sensorium_plus_cnn_parameter_counts_match_the_published_checkpoint():
    model = sensorium_cnn(
        {"27204-5-13": 7538}, {"27204-5-13": coords(7538)}, input_channels=4, shifter=True
    )
    assert (trainable(model.core), trainable(model.readout)) == (55_232, 520_274)
    assert trainable(model.shifter) == 57
    assert trainable(model) == 575_563


def test_sensorium_ln_parameter_counts_match_the_published_checkpoints():
    ln = sensorium_ln({"k": 7776}, {"k": coords(7776)})
    assert (trainable(ln.core), trainable(ln.readout), trainable(ln)) == (28_224, 536_696, 564_920)
    ln_plus = sensorium_ln({"k": 7538}, {"k": coords(7538)}, input_channels=4, shifter=True)
    assert trainable(ln_plus.core) == 43_776 and trainable(ln_plus) == 564_107


def reference_keys(key: str, layers: int, shifter: bool) -> set[str]:
    """The published checkpoints' state-dict keys (neuralpredictors 0.3.0 names)."""
    norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"core._input_weights_regularizer.laplace.filter", "core.features.layer0.conv.weight"}
    keys |= {f"core.features.layer0.norm.{p}" for p in norm}
    for layer in range(1, layers):
        keys |= {
            f"core.features.layer{layer}.ds_conv.{c}_conv.weight"
            for c in ("in_depth", "spatial", "out_depth")
        }
        keys |= {f"core.features.layer{layer}.norm.{p}" for p in norm}
    keys |= {
        f"readout.{key}.{p}"
        for p in ("sigma", "_features", "bias", "source_grid", "mu_transform.0.weight",
                  "mu_transform.0.bias", "mu_transform.2.weight", "mu_transform.2.bias")
    }  # fmt: skip
    if shifter:
        keys |= {f"shifter.{key}.mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    return keys


@pytest.mark.parametrize(
    ("builder", "layers", "shifter"),
    [(sensorium_cnn, 4, False), (sensorium_cnn, 4, True), (sensorium_ln, 3, True)],
)
def test_state_dict_keys_are_exactly_the_published_ones(builder, layers, shifter):
    model = builder({"27204-5-13": 9}, {"27204-5-13": coords(9)}, shifter=shifter)
    assert set(model.state_dict()) == reference_keys("27204-5-13", layers, shifter)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["core.features.layer0.conv.weight"] == (64, 1, 9, 9)
    assert shapes["core.features.layer1.ds_conv.spatial_conv.weight"] == (64, 1, 7, 7)
    assert shapes["core.features.layer1.ds_conv.in_depth_conv.weight"] == (64, 64, 1, 1)
    assert shapes["core._input_weights_regularizer.laplace.filter"] == (1, 1, 3, 3)
    assert shapes["readout.27204-5-13.sigma"] == (1, 9, 2, 2)


def test_core_bias_true_gives_the_2024_key_set():
    plain = sensorium_cnn({"k": 4}, {"k": coords(4)})
    biased = sensorium_cnn({"k": 4}, {"k": coords(4)}, core_bias=True)
    extra = set(biased.state_dict()) - set(plain.state_dict())
    assert extra == {
        f"core.features.layer{i}.ds_conv.{c}_conv.bias"
        for i in (1, 2, 3)
        for c in ("in_depth", "spatial", "out_depth")
    }
    assert set(plain.state_dict()) <= set(biased.state_dict())


def test_baseline_settings_and_shapes():
    xyz = coords(20, dims=3)
    model = sensorium_cnn({"k": 20}, {"k": xyz}, seed=1)
    readout = model.readout["k"]
    assert readout.in_shape[0] == 64  # only the channels matter to the readout
    assert model.core(torch.zeros(2, 1, 36, 64))[0].shape == (2, 64, 28, 56)
    assert readout.sigma.abs().max() <= 0.1 and readout.feature_reg_weight == 0.0076
    assert readout.gauss_type == "full" and isinstance(readout.mu_transform[-1], torch.nn.Tanh)
    xy = xyz[:, :2] - xyz[:, :2].mean(0)
    np.testing.assert_allclose(readout.source_grid.numpy(), xy / np.abs(xy).max(), atol=1e-6)
    np.testing.assert_array_equal(readout.bias.detach().numpy(), 0.0)  # no mean activity
    norms = [m for m in model.core.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4 and all(m.momentum == 0.9 and m.affine for m in norms)
    assert model.core.gamma_input == 6.3831


def _affinity_error(model, x1, x2):
    """max |f(a)+f(b)-f(0)-f(a+b)| / max |f(a+b)|: 0 for an affine core."""
    f = lambda x: model.core(x)[0].detach()  # noqa: E731
    both = f(x1 + x2)
    return ((f(x1) + f(x2) - f(torch.zeros_like(x1)) - both).abs().max() / both.abs().max()).item()


def test_ln_core_is_affine_in_eval_mode_and_the_cnn_is_not():
    torch.manual_seed(2)
    x1, x2 = 300 * torch.randn(1, 1, 36, 64), 300 * torch.randn(1, 1, 36, 64)  # big: ELU bends
    ln = sensorium_ln({"k": 3}, {"k": coords(3)}, seed=2).eval()
    cnn = sensorium_cnn({"k": 3}, {"k": coords(3)}, seed=2).eval()
    assert _affinity_error(ln, x1, x2) < 1e-4
    assert _affinity_error(cnn, x1, x2) > 1e-2
    assert not any(
        isinstance(m, torch.nn.ELU) or "ELU" in type(m).__name__ for m in ln.core.modules()
    )


def test_registered_builders_are_seeded_and_leave_the_global_rng_alone():
    assert {"sensorium_cnn", "sensorium_ln"} <= set(list_models())
    kwargs = {"n_neurons": {"k": 6}, "cortex_coordinates": {"k": coords(6)}, "seed": 3}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = create_model("sensorium_cnn", **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    second = create_model("sensorium_cnn", **kwargs)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = create_model("sensorium_cnn", **{**kwargs, "seed": 4})
    assert not torch.equal(
        other.core.features.layer0.conv.weight, first.core.features.layer0.conv.weight
    )
    assert isinstance(create_model("sensorium_ln", **kwargs), FiringRateEncoder)


def test_mean_activity_and_shifter_options():
    model = sensorium_cnn(
        {"k": 3}, {"k": coords(3)}, shifter=True, mean_activity={"k": torch.tensor([0.1, 0.2, 0.3])}
    )
    np.testing.assert_allclose(model.readout["k"].bias.detach().numpy(), [0.1, 0.2, 0.3])
    assert isinstance(model.shifter, MLPShifter)


def test_builder_errors_name_the_field():
    with pytest.raises(TopoError, match="cortex_coordinates"):
        sensorium_cnn({"k": 3}, {"j": coords(3)})
    with pytest.raises(TopoError, match="one row per neuron"):
        sensorium_cnn({"k": 3}, {"k": coords(4)})
    with pytest.raises(TopoError, match="unknown grid mean predictor type"):
        stacked_core_full_gauss_readout(
            {"k": 3}, {"k": coords(3)}, grid_mean_predictor={"type": "retina"}
        )
    with pytest.raises(TypeError):
        create_model(
            "sensorium_cnn", n_neurons={"k": 3}, cortex_coordinates={"k": coords(3)}, shfter=True
        )
