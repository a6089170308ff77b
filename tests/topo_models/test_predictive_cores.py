"""Sensorium cores: published shapes and keys, layer semantics, regularisers, every core's pass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from topo_models import TopoError
from topo_models.predictive.cores import (
    AdaptiveELU,
    AttentionConv2d,
    RotationEquivariant2dCore,
    SE2dCore,
    SqueezeExcitationBlock,
    Stacked2dCore,
    TransferLearningCore,
)
from topo_models.predictive.cores.hermite import HermiteConv2D, generalized_laguerre

# The published SENSORIUM CNN core (sensorium's model tutorial): the builder's defaults + the
# notebook's settings, core_bias=False (2022).
CNN = dict(
    input_channels=1,
    hidden_channels=64,
    input_kern=9,
    hidden_kern=7,
    layers=4,
    gamma_input=6.3831,
    bias=False,
    momentum=0.9,
    pad_input=False,
    laplace_padding=None,
    input_regularizer="LaplaceL2norm",
    use_avg_reg=False,
    stack=-1,
    depth_separable=True,
)
LN = {**CNN, "layers": 3, "linear": True}
SMALL = dict(input_channels=1, hidden_channels=8, input_kern=5, hidden_kern=3, layers=3)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def perturb(module: nn.Module, seed: int = 1) -> None:
    """Move saved parameters and BN statistics off their init (identities become non-trivial)."""
    generator = seeded(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and not name.endswith("filter"):
                noise = 0.1 * torch.randn(tensor.shape, generator=generator)
                tensor.mul_(noise.exp()) if name.endswith("running_var") else tensor.add_(noise)


def test_published_cnn_core_maps_36x64_to_64x28x56_and_stacks_the_last_layer():
    core = Stacked2dCore(**CNN).eval()
    x = torch.randn(2, 1, 36, 64, generator=seeded())
    out, features = core(x)
    assert out.shape == (2, 64, 28, 56)
    assert list(features) == ["layer0", "layer1", "layer2", "layer3"]
    assert all(f.shape == (2, 64, 28, 56) for f in features.values())
    torch.testing.assert_close(out, features["layer3"])
    assert core.outchannels == 64
    assert Stacked2dCore(**{**CNN, "input_channels": 4})(torch.randn(1, 4, 36, 64))[0].shape == (
        1,
        64,
        28,
        56,
    )


def test_published_cnn_core_state_dict_matches_the_checkpoint_key_list():
    norm = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {"features.layer0.conv.weight": (64, 1, 9, 9)}
    for layer in range(4):
        for name in norm:
            expected[f"features.layer{layer}.norm.{name}"] = (
                () if name == "num_batches_tracked" else (64,)
            )
    for layer in (1, 2, 3):
        expected[f"features.layer{layer}.ds_conv.in_depth_conv.weight"] = (64, 64, 1, 1)
        expected[f"features.layer{layer}.ds_conv.spatial_conv.weight"] = (64, 1, 7, 7)
        expected[f"features.layer{layer}.ds_conv.out_depth_conv.weight"] = (64, 64, 1, 1)
    expected["_input_weights_regularizer.laplace.filter"] = (1, 1, 3, 3)
    state = Stacked2dCore(**CNN).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    torch.testing.assert_close(
        state["_input_weights_regularizer.laplace.filter"][0, 0],
        torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
    )


def test_published_trainable_parameter_counts():
    # the published checkpoints (docs/predictive.md): core 39,680 (SOTA), 55,232 (SOTA+,
    # 4 channels), 28,224 (LN)
    def count(core: nn.Module) -> int:
        return sum(p.numel() for p in core.parameters() if p.requires_grad)

    assert count(Stacked2dCore(**CNN)) == 39_680
    assert count(Stacked2dCore(**{**CNN, "input_channels": 4})) == 55_232
    assert count(Stacked2dCore(**LN)) == 28_224


def test_published_core_regularizer_is_gamma_times_laplace_l2norm_of_conv0():
    torch.manual_seed(0)
    core = Stacked2dCore(**CNN)
    w = core.features.layer0.conv.weight.detach().double()
    lap = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=torch.float64)
    padded = F.pad(w, (1, 1, 1, 1))
    response = sum(
        lap[a, b] * padded[..., a : a + 9, b : b + 9] for a in range(3) for b in range(3)
    )
    expected = 6.3831 * (response**2).sum() / (w**2).sum()
    torch.testing.assert_close(core.regularizer().double(), expected, rtol=1e-5, atol=0)
    # For iid weights E‖L∗W‖²/E‖W‖² = (49·20 + 28·19 + 4·18)/81 on a 9×9 kernel: the ≈126 of
    # the untrained published core is this expectation (124.8) plus sampling noise.
    assert abs(core.regularizer().item() - 6.3831 * 1584 / 81) < 10


def test_layer0_is_conv_then_batchnorm_then_elu_by_hand():
    core = Stacked2dCore(**SMALL, batch_norm=True, momentum=0.3)
    perturb(core)
    core.eval()
    x = torch.randn(2, 1, 12, 12, generator=seeded())
    _, features = core(x)
    conv, norm = core.features.layer0.conv, core.features.layer0.norm
    assert conv.bias is None and conv.padding == (2, 2)
    z = F.conv2d(x, conv.weight, padding=2)
    shape = (1, -1, 1, 1)
    z = (z - norm.running_mean.view(shape)) / torch.sqrt(norm.running_var.view(shape) + norm.eps)
    z = z * norm.weight.view(shape) + norm.bias.view(shape)
    torch.testing.assert_close(features["layer0"], torch.where(z > 0, z, torch.exp(z) - 1))


def test_depth_separable_layer_equals_the_three_convolutions_composed_by_hand():
    core = Stacked2dCore(**{**SMALL, "hidden_kern": 5}, depth_separable=True, batch_norm=False)
    perturb(core)
    ds = core.features.layer1.ds_conv
    x = torch.randn(2, 8, 10, 10, generator=seeded())
    by_hand = F.conv2d(x, ds.in_depth_conv.weight, ds.in_depth_conv.bias)
    by_hand = F.conv2d(by_hand, ds.spatial_conv.weight, ds.spatial_conv.bias, padding=2, groups=8)
    by_hand = F.conv2d(by_hand, ds.out_depth_conv.weight, ds.out_depth_conv.bias)
    torch.testing.assert_close(ds(x), by_hand)
    assert ds.spatial_conv.weight.shape == (8, 1, 5, 5)


def test_stack_selects_layers_and_outchannels_counts_them():
    x = torch.randn(2, 1, 12, 12, generator=seeded())
    for stack, chosen in [
        (None, [0, 1, 2]),
        (-1, [2]),
        (-2, [1, 2]),
        (1, [1, 2]),
        ([0, 2], [0, 2]),
    ]:
        core = Stacked2dCore(**SMALL, stack=stack).eval()
        out, features = core(x)
        torch.testing.assert_close(out, torch.cat([features[f"layer{i}"] for i in chosen], dim=1))
        assert core.outchannels == 8 * len(chosen) == out.shape[1]
    for bad in (3, [3], [], "all"):
        with pytest.raises(TopoError, match="stack"):
            Stacked2dCore(**SMALL, stack=bad)


def test_skip_feeds_the_concatenation_of_the_last_outputs():
    core = Stacked2dCore(**{**SMALL, "layers": 4}, skip=2).eval()
    assert core.features.layer1.conv.in_channels == 8
    assert core.features.layer2.conv.in_channels == 16
    assert core.features.layer3.conv.in_channels == 16
    x = torch.randn(2, 1, 10, 10, generator=seeded())
    _, f = core(x)
    torch.testing.assert_close(
        f["layer3"], core.features.layer3(torch.cat([f["layer1"], f["layer2"]], dim=1))
    )
    torch.testing.assert_close(f["layer1"], core.features.layer1(f["layer0"]))


def test_linear_core_has_no_nonlinearity_and_is_affine_in_eval_mode():
    core = Stacked2dCore(**SMALL, linear=True)
    perturb(core)
    core.eval()
    assert not any(isinstance(m, AdaptiveELU) for m in core.modules())
    x, y = torch.randn(2, 2, 1, 12, 12, generator=seeded())
    a, b = 0.7, -1.9
    f = lambda t: core(t)[0]  # noqa: E731
    torch.testing.assert_close(
        f(a * x + b * y),
        a * f(x) + b * f(y) + (1 - a - b) * f(torch.zeros_like(x)),
        atol=1e-4,
        rtol=1e-4,
    )
    nonlinear = Stacked2dCore(**SMALL).eval()
    g = lambda t: nonlinear(t)[0]  # noqa: E731
    gap = g(a * x + b * y) - (a * g(x) + b * g(y) + (1 - a - b) * g(torch.zeros_like(x)))
    assert gap.abs().max() > 1e-2


def test_final_nonlinearity_and_elu_shift():
    core = Stacked2dCore(**SMALL, final_nonlinearity=False)
    assert "nonlin" in dict(core.features.layer1.named_children())
    assert "nonlin" not in dict(core.features.layer2.named_children())
    shifted = Stacked2dCore(**SMALL, elu_shift=(0.5, 2.0)).features.layer0.nonlin
    t = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(shifted(t), F.elu(t - 0.5) + 2.0)
    assert list(shifted.parameters()) == []


def test_bias_and_scale_layers_follow_the_0_3_0_batchnorm_rules():
    def modules(**kw):
        layer = Stacked2dCore(**SMALL, **kw).features.layer1
        return {name: m for name, m in layer.named_children()}

    default = modules()
    assert default["norm"].affine and default["conv"].bias is not None  # hidden conv bias=bias
    assert Stacked2dCore(**SMALL).features.layer0.conv.bias is None  # no bias under BN
    assert Stacked2dCore(**SMALL, batch_norm=False).features.layer0.conv.bias is not None
    assert modules(bias=False)["norm"].affine  # independent_bn_bias: BN stays affine
    only_bias = modules(independent_bn_bias=False, batch_norm_scale=False)
    assert not only_bias["norm"].affine and only_bias["bias"].bias.shape == (1, 8, 1, 1)
    only_scale = modules(independent_bn_bias=False, bias=False)
    assert not only_scale["norm"].affine and only_scale["scale"].scale.shape == (1, 8, 1, 1)
    both = modules(independent_bn_bias=False)
    assert both["norm"].affine and "bias" not in both and "scale" not in both
    neither = modules(independent_bn_bias=False, bias=False, batch_norm_scale=False)
    assert not neither["norm"].affine and set(neither) == {"conv", "norm", "nonlin"}
    assert set(modules(batch_norm=False)) == {"conv", "nonlin"}


def test_xavier_normal_init_and_zero_conv_biases():
    torch.manual_seed(3)
    core = Stacked2dCore(
        input_channels=1, hidden_channels=64, input_kern=9, hidden_kern=7, layers=2
    )
    w = core.features.layer1.conv.weight
    fan_in, fan_out = 64 * 49, 64 * 49
    assert abs(w.std().item() / np.sqrt(2 / (fan_in + fan_out)) - 1) < 0.03
    assert abs(w.mean().item()) < 3e-3
    assert torch.all(core.features.layer1.conv.bias == 0)


def test_hidden_padding_is_same_per_layer_and_accepts_ints():
    x = torch.randn(1, 1, 15, 15, generator=seeded())
    core = Stacked2dCore(**{**SMALL, "hidden_kern": [3, 5]}, hidden_dilation=2)
    assert [core.features[i].conv.padding for i in (1, 2)] == [(2, 2), (4, 4)]
    assert all(f.shape[-2:] == (15, 15) for f in core(x)[1].values())
    valid = Stacked2dCore(**SMALL, hidden_padding=0, stack=-1)
    assert valid(x)[0].shape[-2:] == (11, 11)
    strided = Stacked2dCore(**SMALL, stride=2, stack=-1)
    assert strided(x)[0].shape[-2:] == (4, 4)  # layer0 is never strided, as in 0.3.0


def test_group_sparsity_by_hand_and_total_regularizer():
    core = Stacked2dCore(**SMALL, gamma_hidden=0.4, gamma_input=1.5, use_avg_reg=False)
    per_layer = []
    for i in (1, 2):
        w = core.features[i].conv.weight.detach().double().numpy()
        per_layer.append(
            np.mean([np.linalg.norm(w[o, c]) for o in range(w.shape[0]) for c in range(w.shape[1])])
        )
    np.testing.assert_allclose(core.group_sparsity().item(), np.mean(per_layer), rtol=1e-5)
    expected = 0.4 * core.group_sparsity() + 1.5 * core.laplace()
    torch.testing.assert_close(core.regularizer(), expected)
    w0 = core.features.layer0.conv.weight.detach().double()
    lap = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=torch.float64)
    response = sum(lap[a, b] * w0[..., a : a + 3, b : b + 3] for a in range(3) for b in range(3))
    torch.testing.assert_close(core.laplace().double(), (response**2).sum() / 2)  # LaplaceL2, pad 0


def test_group_sparsity_is_zero_with_a_warning_for_depth_separable_and_attention():
    for kind in ("depth_separable", "attention_conv"):
        with pytest.warns(UserWarning, match="group sparsity"):
            core = Stacked2dCore(
                **{**SMALL, "hidden_channels": 8}, gamma_hidden=1.0, **{kind: True}
            )
        assert core.group_sparsity().item() == 0.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"depth_separable": True, "attention_conv": True}, "depth_separable"),
        ({"input_regularizer": "Laplace"}, "input_regularizer"),
        ({"gamma_input": -1.0}, "gamma_input"),
        ({"hidden_kern": [3]}, "hidden_kern"),
        ({"layers": 0}, "layers"),
        ({"momentum": 1.5}, "momentum"),
        ({"elu_shift": (1.0,)}, "elu_shift"),
        ({"stride": 2}, "stride"),
        ({"attention_conv": True, "hidden_dilation": 2}, "hidden_dilation"),
        ({"input_regularizer": "GaussianLaplaceL2"}, "laplace_padding"),
    ],
)
def test_bad_arguments_raise_topo_error_naming_the_field(kwargs, field):
    with pytest.raises(TopoError, match=field):
        Stacked2dCore(**{**SMALL, **kwargs})


def test_gaussian_laplace_regulariser_by_name_uses_the_input_kernel():
    core = Stacked2dCore(**SMALL, input_regularizer="GaussianLaplaceL2", laplace_padding=None)
    assert core._input_weights_regularizer.kernel == (5, 5)
    assert torch.isfinite(core.regularizer())


# --- squeeze-excitation -------------------------------------------------------------------------


def test_se_gate_equals_the_hand_computation():
    block = SqueezeExcitationBlock(16, reduction=4)
    x = torch.randn(3, 16, 5, 6, generator=seeded())
    w1, b1 = block.se[1].weight.detach().numpy(), block.se[1].bias.detach().numpy()
    w2, b2 = block.se[3].weight.detach().numpy(), block.se[3].bias.detach().numpy()
    xn = x.numpy()
    expected = np.empty_like(xn)
    for n in range(3):
        squeezed = xn[n].reshape(16, -1).mean(axis=1)
        hidden = np.maximum(w1 @ squeezed + b1, 0)
        gate = 1 / (1 + np.exp(-(w2 @ hidden + b2)))
        expected[n] = xn[n] * gate[:, None, None]
    np.testing.assert_allclose(block(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert block.se[1].weight.shape == (4, 16)


def test_se_core_gates_the_last_layers_after_the_nonlinearity():
    core = SE2dCore(1, 64, 5, 3, layers=4, n_se_blocks=2, depth_separable=True)
    names = [list(dict(core.features[i].named_children())) for i in range(4)]
    assert "seg_ex_block" not in names[0] + names[1]
    assert names[2][-2:] == ["nonlin", "seg_ex_block"] and names[3][-1] == "seg_ex_block"
    assert core.features.layer3.seg_ex_block.se[1].weight.shape == (2, 64)  # 64 // 32
    assert core.features.layer1.ds_conv.in_depth_conv.bias is None  # SE default bias=False
    core.eval()
    x = torch.randn(2, 1, 11, 11, generator=seeded())
    _, f = core(x)
    layer = core.features.layer3
    ungated = layer.nonlin(layer.norm(layer.ds_conv(f["layer2"])))
    torch.testing.assert_close(f["layer3"], layer.seg_ex_block(ungated))
    with pytest.raises(TopoError, match="n_se_blocks"):
        SE2dCore(1, 64, 5, 3, layers=3, n_se_blocks=3)
    with pytest.raises(TopoError, match="se_reduction"):
        SE2dCore(1, 16, 5, 3, n_se_blocks=1)


def test_se_core_regularizer_is_the_laplace_term_only():
    core = SE2dCore(**SMALL, gamma_hidden=5.0, gamma_input=2.0)
    assert type(core._input_weights_regularizer).__name__ == "LaplaceL2norm"
    assert core._input_weights_regularizer.laplace.padding_size == 1 and not core.use_avg_reg
    torch.testing.assert_close(core.regularizer(), 2.0 * core.laplace())
    assert core.group_sparsity().item() > 0


# --- attention ------------------------------------------------------------------------------------


def attention_by_loops(layer: AttentionConv2d, x: torch.Tensor) -> torch.Tensor:
    """Ramachandran et al. 2019 eq. 2-3 written per pixel, per head, per window slot."""
    k, s, p, heads = layer.kernel_size, layer.stride, layer.padding, layer.groups
    q_all, k_all, v_all = layer.query_conv(x), layer.key_conv(x), layer.value_conv(x)
    batch, channels, height, width = q_all.shape
    half, per = channels // 2, channels // heads
    out_h, out_w = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
    out = torch.zeros(batch, channels, out_h, out_w)
    for n in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                ci, cj = i * s - p + k // 2, j * s - p + k // 2
                slots = [
                    (a, b)
                    for a in range(k)
                    for b in range(k)
                    if 0 <= i * s - p + a < height and 0 <= j * s - p + b < width
                ]
                for g in range(heads):
                    chans = range(g * per, (g + 1) * per)
                    logits = []
                    for a, b in slots:
                        r, c = i * s - p + a, j * s - p + b
                        total = 0.0
                        for ch in chans:
                            rel = (
                                layer.rel_h[ch, 0, 0, a, 0]
                                if ch < half
                                else layer.rel_w[ch - half, 0, 0, 0, b]
                            )
                            total = total + q_all[n, ch, ci, cj] * (k_all[n, ch, r, c] + rel)
                        logits.append(total)
                    weights = torch.softmax(torch.stack(logits), dim=0)
                    for ch in chans:
                        values = torch.stack(
                            [v_all[n, ch, i * s - p + a, j * s - p + b] for a, b in slots]
                        )
                        out[n, ch, i, j] = (weights * values).sum()
    return out


@pytest.mark.parametrize("stride, padding, groups", [(1, 1, 1), (1, 0, 2), (2, 1, 2)])
def test_attention_conv_matches_the_per_pixel_definition(stride, padding, groups):
    torch.manual_seed(0)
    layer = AttentionConv2d(3, 4, kernel_size=3, stride=stride, padding=padding, groups=groups)
    with torch.no_grad():
        for conv in (layer.query_conv, layer.key_conv, layer.value_conv):
            conv.weight.mul_(0.3)
    x = torch.randn(2, 3, 5, 6, generator=seeded())
    out = layer(x)
    assert out.shape == (
        2,
        4,
        (5 + 2 * padding - 3) // stride + 1,
        (6 + 2 * padding - 3) // stride + 1,
    )
    torch.testing.assert_close(out, attention_by_loops(layer, x), atol=1e-5, rtol=1e-4)


def test_attention_without_position_embedding_is_flip_equivariant_and_averages_values():
    torch.manual_seed(1)
    layer = AttentionConv2d(3, 6, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 7, 7, generator=seeded())
    with torch.no_grad():
        layer.rel_h.zero_()
        layer.rel_w.zero_()
    # Without r the logits ignore where a neighbour sits: a spatial permutation that maps every
    # window onto a window (a flip) permutes the output the same way.
    torch.testing.assert_close(layer(x.flip(-1)), layer(x).flip(-1), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        layer.rel_w.normal_()
    assert (layer(x.flip(-1)) - layer(x).flip(-1)).abs().max() > 1e-3
    # Every window slot holds the same value for a constant image, borders included (masking).
    constant = torch.full((1, 3, 6, 6), 0.7)
    torch.testing.assert_close(layer(constant), layer.value_conv(constant))
    with pytest.raises(TopoError, match="padding"):
        AttentionConv2d(3, 6, kernel_size=3, padding=2)
    with pytest.raises(TopoError, match="out_channels"):
        AttentionConv2d(3, 5, kernel_size=3)


def test_attention_core_names_and_shapes():
    core = Stacked2dCore(**SMALL, attention_conv=True)
    keys = {k for k in core.state_dict() if k.startswith("features.layer1.attention_conv")}
    prefix = "features.layer1.attention_conv."
    assert keys == {
        prefix + name
        for name in ("rel_h", "rel_w", "key_conv.weight", "query_conv.weight", "value_conv.weight")
        + ("key_conv.bias", "query_conv.bias", "value_conv.bias")
    }
    assert core.features.layer1.attention_conv.rel_h.shape == (4, 1, 1, 3, 1)
    assert core(torch.randn(2, 1, 9, 9))[0].shape == (2, 24, 9, 9)


# --- rotation equivariance ---------------------------------------------------------------------


def roll_orientations(t: torch.Tensor, layers: int, rotations: int, steps: int) -> torch.Tensor:
    b, c, h, w = t.shape
    per = c // (layers * rotations)
    return t.reshape(b, layers, rotations, per, h, w).roll(steps, dims=2).reshape(t.shape)


@pytest.mark.parametrize("rotations, pad_input", [(8, True), (4, False), (12, True)])
def test_rotating_the_image_by_90_degrees_rotates_maps_and_rolls_orientations(rotations, pad_input):
    torch.manual_seed(0)
    core = RotationEquivariant2dCore(
        1, 3, 5, 3, layers=3, num_rotations=rotations, pad_input=pad_input
    )
    perturb(core)
    core.eval()
    x = torch.randn(2, 1, 19, 19, generator=seeded())
    out, _ = core(x)
    out_rotated, _ = core(torch.rot90(x, 1, dims=(-2, -1)))
    expected = roll_orientations(torch.rot90(out, 1, dims=(-2, -1)), 3, rotations, rotations // 4)
    assert out.shape[1] == 3 * 3 * rotations == core.outchannels
    # exact on the whole map (square input, odd kernels, symmetric padding); the central patch,
    # free of any border effect, must agree just as well
    torch.testing.assert_close(out_rotated, expected, atol=1e-4, rtol=1e-4)
    c = out.shape[-1] // 2
    torch.testing.assert_close(
        out_rotated[..., c - 3 : c + 4, c - 3 : c + 4],
        expected[..., c - 3 : c + 4, c - 3 : c + 4],
        atol=1e-4,
        rtol=1e-4,
    )
    assert (out_rotated - torch.rot90(out, 1, dims=(-2, -1))).abs().max() > 1e-2


def test_hermite_filters_of_the_quarter_turn_are_the_rot90_of_the_base_filter():
    conv = HermiteConv2D(
        2, 3, 7, padding=3, stride=1, num_rotations=8, upsampling=2, first_layer=True
    )
    w = conv.weights_all_rotations.reshape(8, 3, 2, 7, 7)
    torch.testing.assert_close(w[2], torch.rot90(w[0], 1, dims=(-2, -1)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w[4], torch.rot90(w[0], 2, dims=(-2, -1)), atol=1e-5, rtol=1e-5)
    assert (w[1] - w[0]).abs().max() > 1e-3
    assert conv.coeffs.shape == (28, 2, 3)


def test_generalized_laguerre_matches_scipy():
    special = pytest.importorskip("scipy.special")
    x = np.linspace(0, 12, 40)
    for degree in range(5):
        for alpha in range(5):
            np.testing.assert_allclose(
                generalized_laguerre(degree, alpha, x),
                special.eval_genlaguerre(degree, alpha, x),
                rtol=1e-9,
                atol=1e-9,
            )


def test_rotation_core_laplace_acts_on_the_effective_first_layer_filters():
    core = RotationEquivariant2dCore(1, 4, 7, 3, layers=2, num_rotations=4, gamma_input=2.0)
    w = core.features.layer0.hermite_conv.weights_all_rotations
    assert w.shape == (16, 1, 7, 7)
    wd = w.detach().double()
    lap = torch.tensor([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=torch.float64)
    response = sum(lap[a, b] * wd[..., a : a + 5, b : b + 5] for a in range(3) for b in range(3))
    # LaplaceL2norm, laplace_padding 0, use_avg_reg True: mean/mean over different counts
    expected = (response**2).mean() / (wd**2).mean()
    torch.testing.assert_close(core.laplace().double(), expected, rtol=1e-5, atol=0)
    core.regularizer().backward()
    assert core.features.layer0.hermite_conv.coeffs.grad.abs().sum() > 0


def test_rotation_core_batchnorm_variants_and_keys():
    shared = RotationEquivariant2dCore(1, 4, 5, 3, layers=2, num_rotations=8)
    assert shared.features.layer0.norm.batch_norm.weight.shape == (4,)
    assert {k for k in shared.state_dict() if "hermite" in k} == {
        "features.layer0.hermite_conv.coeffs",
        "features.layer1.hermite_conv.coeffs",
    }
    assert shared.features.layer1.hermite_conv.coeffs.shape == (6, 32, 4)
    with pytest.raises(TopoError, match="stride"):
        RotationEquivariant2dCore(1, 4, 5, 3, layers=2, stride=2)
    assert RotationEquivariant2dCore(1, 4, 5, 3, layers=2, stride=2, stack=-1)(
        torch.randn(1, 1, 17, 17)
    )[0].shape == (1, 32, 5, 5)
    plain = RotationEquivariant2dCore(
        1, 4, 5, 3, layers=2, num_rotations=8, rot_eq_batch_norm=False
    )
    assert plain.features.layer0.norm.weight.shape == (32,)
    assert plain(torch.randn(2, 1, 9, 9))[0].shape == (2, 64, 9, 9)
    biased = RotationEquivariant2dCore(
        1, 4, 5, 3, layers=2, num_rotations=8, independent_bn_bias=False, batch_norm_scale=False
    )
    assert biased.features.layer0.bias.bias.shape == (1, 1, 4, 1, 1)
    # the shared statistics are those of all orientations of a feature together
    shared.train()
    x = torch.randn(3, 1, 9, 9, generator=seeded())
    conv_out = shared.features.layer0.hermite_conv(x).reshape(3, 8, 4, 9, 9)
    normed = shared.features.layer0.norm(conv_out.reshape(3, 32, 9, 9)).reshape(3, 8, 4, 9, 9)
    per_feature = normed.transpose(0, 2).reshape(4, -1)
    torch.testing.assert_close(per_feature.mean(1), torch.zeros(4), atol=1e-5, rtol=0)


# --- transfer learning -------------------------------------------------------------------------


def test_transfer_core_loads_a_local_state_dict_and_freezes_it(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    perturb(reference)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    core = TransferLearningCore(1, "resnet18", layers=5, pretrained=True, weights_path=path)
    torch.testing.assert_close(core.features.TransferLearning[0].weight, reference.conv1.weight)
    assert core.outchannels == 64
    reference.eval()
    core.eval()
    x = torch.randn(2, 1, 32, 32, generator=seeded())
    rgb = x.repeat(1, 3, 1, 1)
    by_hand = reference.layer1(
        reference.maxpool(reference.relu(reference.bn1(reference.conv1(rgb))))
    )
    norm = core.features.OutBatchNorm
    by_hand = F.relu(
        F.batch_norm(by_hand, norm.running_mean, norm.running_var, norm.weight, norm.bias)
    )
    out, features = core(x)
    torch.testing.assert_close(out, by_hand)
    assert list(features) == [f"layer{i}" for i in range(5)]
    core.train()
    core(x)[0].sum().backward()
    assert all(
        p.grad is None and not p.requires_grad for p in core.features.TransferLearning.parameters()
    )
    assert core.features.OutBatchNorm.weight.grad is not None
    assert core.regularizer().item() == 0.0


def test_transfer_core_fine_tune_and_features_style_networks():
    core = TransferLearningCore(3, "squeezenet1_1", layers=4, fine_tune=True, final_batchnorm=False)
    out, _ = core(torch.randn(2, 3, 40, 40))
    assert out.shape[1] == core.outchannels == 128 and out.min() >= 0
    out.sum().backward()
    assert all(p.grad is not None for p in core.parameters())
    assert not any(getattr(m, "inplace", False) for m in core.modules())


def test_transfer_core_refuses_downloads_missing_or_mismatching_files(tmp_path):
    with pytest.raises(TopoError, match="never downloads"):
        TransferLearningCore(1, "resnet18", layers=4, pretrained=True)
    with pytest.raises(TopoError, match="not found"):
        TransferLearningCore(
            1, "resnet18", layers=4, pretrained=True, weights_path=tmp_path / "x.pt"
        )
    wrong = tmp_path / "squeeze.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), wrong)
    with pytest.raises(TopoError, match="do not match"):
        TransferLearningCore(1, "resnet18", layers=4, pretrained=True, weights_path=wrong)
    junk = tmp_path / "junk.pt"
    torch.save({"model": nn.Linear(2, 2)}, junk)
    with pytest.raises(TopoError, match="state dict"):
        TransferLearningCore(1, "resnet18", layers=4, pretrained=True, weights_path=junk)
    with pytest.raises(TopoError, match="tl_model_name"):
        TransferLearningCore(1, "resnet_huge", layers=4)
    with pytest.raises(TopoError, match="layers"):
        TransferLearningCore(1, "resnet18", layers=99)
    with pytest.raises(TopoError, match="input_channels"):
        TransferLearningCore(4, "resnet18", layers=4)


# --- every core ----------------------------------------------------------------------------------

CORES = {
    "cnn": lambda: Stacked2dCore(**CNN),
    "ln": lambda: Stacked2dCore(**LN),
    "plain_skip": lambda: Stacked2dCore(**SMALL, skip=2, gamma_hidden=0.1),
    "attention": lambda: Stacked2dCore(**SMALL, attention_conv=True),
    "se": lambda: SE2dCore(1, 32, 5, 3, n_se_blocks=2, se_reduction=8, gamma_input=1.0),
    "rotation": lambda: RotationEquivariant2dCore(1, 4, 5, 3, num_rotations=8, gamma_input=1.0),
    "transfer": lambda: TransferLearningCore(1, "resnet18", layers=6, fine_tune=True),
}


@pytest.mark.parametrize("name", sorted(CORES))
def test_every_core_returns_output_and_features_and_trains(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        core = CORES[name]()
    x = torch.randn(2, 1, 36, 64, generator=seeded(), requires_grad=True)
    out, features = core(x)
    assert out.dim() == 4 and out.shape[:2] == (2, core.outchannels)
    assert isinstance(features, dict) and list(features)[0] == "layer0"
    assert all(f.shape[0] == 2 for f in features.values())
    loss = out.square().mean() + core.regularizer()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in core.parameters() if p.requires_grad)
    assert core.regularizer().dim() == 0


# --- neuralpredictors 0.3.0 as an outside reference (skipped where it is not installed) ---------

VARIANTS = [
    CNN,
    LN,
    {**CNN, "bias": True},
    {**SMALL, "independent_bn_bias": False, "batch_norm_scale": False},
    {**SMALL, "independent_bn_bias": False, "bias": False, "gamma_hidden": 0.3},
    {**SMALL, "skip": 2, "gamma_hidden": 0.2, "input_regularizer": "LaplaceL1", "gamma_input": 1.0},
    {**SMALL, "batch_norm": False, "elu_shift": (0.3, 1.0), "final_nonlinearity": False},
]


@pytest.mark.parametrize("settings", VARIANTS, ids=range(len(VARIANTS)))
def test_stacked_core_loads_and_reproduces_neuralpredictors_0_3_0(settings):
    pytest.importorskip("neuralpredictors")
    from tests.topo_models.neuralpredictors_compat import import_neuralpredictors

    try:
        import_neuralpredictors()
    except ImportError as error:
        pytest.skip(str(error))
    from neuralpredictors.layers.cores import Stacked2dCore as ReferenceCore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ReferenceCore(**settings)
    perturb(reference)
    core = Stacked2dCore(**settings)
    assert {k: v.shape for k, v in core.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    core.load_state_dict(reference.state_dict())
    x = torch.randn(3, settings["input_channels"], 36, 64, generator=seeded())
    for train in (False, True):
        reference.train(train)
        core.train(train)
        torch.testing.assert_close(core(x)[0], reference(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(core.regularizer(), reference.regularizer(), atol=1e-5, rtol=1e-5)


def test_the_spatial_correlation_loss_can_be_put_on_a_predictive_core():
    """A core's features carry layer names like every trunk's, so TDANN's loss trains it."""
    from topo_models.losses import SpatialCorrelationLoss
    from topo_models.positions import LayerPositions
    from topo_models.positions.layouts import retinotopic_coordinates
    from topo_models.positions.neighborhoods import precompute_neighborhoods

    torch.manual_seed(0)
    core = Stacked2dCore(1, 8, 5, 3, layers=2, gamma_input=0.0)
    _, features = core(torch.randn(4, 1, 12, 16))
    dims = tuple(features["layer1"].shape[1:])
    coordinates = retinotopic_coordinates(dims, 2.0, np.random.default_rng(0))
    positions = LayerPositions(
        name="layer1",
        dims=dims,
        coordinates=coordinates,
        neighborhood_indices=precompute_neighborhoods(coordinates, 1.0, 10, seed=0),
        neighborhood_width=1.0,
    )
    loss = SpatialCorrelationLoss({"layer1": positions}, {"layer1": 1.0})
    total, per_layer = loss(features)
    assert set(per_layer) == {"layer1"} and torch.isfinite(total) and total > 0
    total.backward()
    assert core.features.layer0.conv.weight.grad.abs().sum() > 0
