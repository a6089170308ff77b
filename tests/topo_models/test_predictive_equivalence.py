"""topo's Sensorium baseline computes what neuralpredictors 0.3.0 computes, from the same weights.

The reference model is assembled from neuralpredictors' own classes with the published settings
(tests/topo_models/neuralpredictors_compat.py), its weights are moved off their initial values,
its plain state dict is saved, and topo loads that file with ``load_checkpoint``. Both must then
agree on eval outputs, train-mode outputs (same random draw for the readout's sampled positions),
BatchNorm running statistics after a training forward, regularizer values and the gradient of
the Poisson loss for every parameter. Skipped only where neuralpredictors is not installed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("neuralpredictors")

from tests.topo_models.neuralpredictors_compat import (  # noqa: E402
    build_reference_model,
    import_neuralpredictors,
    perturb_,
)
from topo_models.predictive import Stacked2dCore, load_checkpoint  # noqa: E402

import_neuralpredictors()
from neuralpredictors.layers.cores import Stacked2dCore as ReferenceCore  # noqa: E402

BATCH, HEIGHT, WIDTH = 6, 36, 64
ATOL = 1e-5

# (model name, shifter): SENSORIUM (1 channel, no shifter) and SENSORIUM+ (image + 3 behaviour
# planes, MLP shifter on the pupil centre), and the two crossed variants.
TRACKS = [
    ("sensorium_cnn", False),
    ("sensorium_cnn", True),
    ("sensorium_ln", False),
    ("sensorium_ln", True),
]


def poisson_loss(rates: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """The baseline's summed Poisson negative log-likelihood (up to the constant log r!)."""
    return (rates - responses * torch.log(rates + 1e-12)).sum()


def cortex(n: int, seed: int) -> np.ndarray:
    """Cortical (x, y, z) positions in µm, spread like a two-photon field of view."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-400, 400, (n, 2)), rng.uniform(200, 400, n)])


def inputs(channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(BATCH, channels, HEIGHT, WIDTH, generator=generator)
    pupil = torch.randn(BATCH, 2, generator=generator)
    return images, pupil, generator


def reference_and_topo(tmp_path: Path, name: str, shifter: bool, neurons: dict[str, int]):
    channels = 4 if shifter else 1
    coordinates = {key: cortex(n, seed=i) for i, (key, n) in enumerate(neurons.items())}
    reference = build_reference_model(
        name, neurons, coordinates, input_channels=channels, shifter=shifter, seed=0
    )
    perturb_(reference, seed=1)
    path = tmp_path / "reference.pth"  # neutral name: CNN/LN inferred from the weights
    torch.save(reference.state_dict(), path)
    topo = load_checkpoint(path)
    return reference, topo, channels


def assert_close(found: torch.Tensor, expected: torch.Tensor, what: str, rtol: float = 1e-5):
    """Absolute ATOL for O(1) values, relative to the largest magnitude for large ones."""
    atol = ATOL * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(found, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize(("name", "shifter"), TRACKS)
def test_loaded_checkpoint_matches_reference_in_eval_mode(tmp_path, name, shifter):
    reference, topo, channels = reference_and_topo(tmp_path, name, shifter, {"m0": 300})
    images, pupil, _ = inputs(channels, seed=2)
    reference.eval()
    topo.eval()
    with torch.no_grad():
        expected = reference(images, data_key="m0", pupil_center=pupil)
        found = topo(images, data_key="m0", pupil_center=pupil)
    assert found.shape == (BATCH, 300)
    assert expected.std() > 0.05  # perturbed weights give neuron- and image-specific rates
    assert_close(found, expected, "eval rates")


@pytest.mark.parametrize(("name", "shifter"), TRACKS)
def test_regularizers_match_reference(tmp_path, name, shifter):
    reference, topo, _ = reference_and_topo(tmp_path, name, shifter, {"m0": 300})
    laplace = reference.core.laplace()
    core = reference.core.regularizer()
    assert core.item() == pytest.approx(6.3831 * laplace.item(), rel=1e-6)
    assert_close(topo.core.regularizer().detach(), core.detach(), "core Laplace regularizer")
    readout = reference.readout.regularizer("m0")
    assert readout.item() == pytest.approx(
        0.0076 * reference.readout["m0"]._features.abs().sum().item(), rel=1e-6
    )
    assert_close(topo.readout.regularizer("m0").detach(), readout.detach(), "readout L1")
    total = reference.regularizer("m0")
    assert_close(topo.regularizer("m0").detach(), total.detach(), "model regularizer")


@pytest.mark.parametrize(("name", "shifter"), TRACKS)
def test_train_mode_outputs_statistics_and_gradients_match_reference(tmp_path, name, shifter):
    reference, topo, channels = reference_and_topo(tmp_path, name, shifter, {"m0": 300})
    images, pupil, generator = inputs(channels, seed=3)
    responses = torch.poisson(torch.full((BATCH, 300), 0.8), generator=generator)
    reference.train()
    topo.train()
    results = {}
    for label, model in (("reference", reference), ("topo", topo)):
        model.zero_grad()
        torch.manual_seed(7)  # the readout draws its sampled positions from the global RNG
        rates = model(images, data_key="m0", pupil_center=pupil)
        loss = poisson_loss(rates, responses) + model.regularizer("m0")
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[label] = rates.detach(), loss.detach(), grads
    (r_rates, r_loss, r_grads), (t_rates, t_loss, t_grads) = results["reference"], results["topo"]
    assert_close(t_rates, r_rates, "train-mode rates (sampled positions)")
    assert_close(t_loss, r_loss, "Poisson loss + regularizer")
    assert set(t_grads) == set(r_grads)
    assert len(r_grads) == len(list(reference.parameters()))
    for parameter, expected in r_grads.items():
        assert_close(t_grads[parameter], expected, f"gradient of {parameter}", rtol=1e-4)
    # BatchNorm ran on batch statistics and moved its running averages with momentum 0.9.
    expected_state, found_state = reference.state_dict(), topo.state_dict()
    assert set(found_state) == set(expected_state)
    for key, value in expected_state.items():
        if "running" in key or "num_batches" in key:
            assert_close(found_state[key].double(), value.double(), f"buffer {key}")


@pytest.mark.parametrize(("name", "shifter"), [("sensorium_cnn", True), ("sensorium_ln", False)])
def test_train_mode_gradients_match_reference_to_float64_rounding(tmp_path, name, shifter):
    """In float64 the two implementations agree to rounding, so float32 gaps are rounding too."""
    reference, topo, channels = reference_and_topo(tmp_path, name, shifter, {"m0": 200})
    reference.double().train()
    topo.double().train()
    images, pupil, generator = inputs(channels, seed=6)
    responses = torch.poisson(torch.full((BATCH, 200), 0.8), generator=generator).double()
    gradients = {}
    for label, model in (("reference", reference), ("topo", topo)):
        torch.manual_seed(11)
        rates = model(images.double(), data_key="m0", pupil_center=pupil.double())
        (poisson_loss(rates, responses) + model.regularizer("m0")).backward()
        gradients[label] = {n: p.grad for n, p in model.named_parameters()}
    assert set(gradients["topo"]) == set(gradients["reference"])
    for parameter, expected in gradients["reference"].items():
        found = gradients["topo"][parameter]
        scale = max(1.0, expected.abs().max().item())
        assert (found - expected).abs().max().item() <= 1e-10 * scale, parameter


def test_train_mode_without_sampling_matches_reference(tmp_path):
    """With the readout at its means (sample=False) the training forward is deterministic."""
    reference, topo, channels = reference_and_topo(tmp_path, "sensorium_cnn", True, {"m0": 200})
    images, pupil, _ = inputs(channels, seed=4)
    reference.train()
    topo.train()
    expected_core = reference.core(images)  # neuralpredictors' core returns the stacked tensor
    found_core, _ = topo.core(images)  # topo's returns (stacked tensor, per-layer features)
    assert_close(found_core.detach(), expected_core.detach(), "core output, train mode")
    expected = reference.readout["m0"](
        expected_core, sample=False, shift=reference.shifter["m0"](pupil)
    )
    found = topo.readout["m0"](found_core, sample=False, shift=topo.shifter["m0"](pupil))
    assert_close(found.detach(), expected.detach(), "readout at its means (sample=False)")


def test_two_sessions_share_the_core_and_dispatch_by_data_key(tmp_path):
    neurons = {"m0": 120, "m1": 80}
    reference, topo, channels = reference_and_topo(tmp_path, "sensorium_cnn", False, neurons)
    images, pupil, _ = inputs(channels, seed=5)
    reference.eval()
    topo.eval()
    with torch.no_grad():
        for key, n in neurons.items():
            expected = reference(images, data_key=key)
            found = topo(images, data_key=key)
            assert found.shape == (BATCH, n)
            assert_close(found, expected, f"eval rates of {key}")


# Stacked2dCore argument combinations: state-dict names/shapes, outputs and regularizer values.
CORE_BASE = {
    "input_channels": 2,
    "hidden_channels": 8,
    "input_kern": 5,
    "hidden_kern": 3,
    "layers": 3,
    "gamma_input": 1.0,  # so the input Laplace term is part of every regularizer comparison
}
CORE_VARIANTS = {
    "defaults": {},
    "depth_separable": {"depth_separable": True, "bias": False},
    "depth_separable_with_bias": {"depth_separable": True, "bias": True},
    "no_batch_norm_conv_bias": {"batch_norm": False, "bias": True},
    "bn_bias_layer": {"independent_bn_bias": False, "batch_norm_scale": False, "bias": True},
    "bn_scale_layer": {"independent_bn_bias": False, "batch_norm_scale": True, "bias": False},
    "bn_not_independent_affine": {"independent_bn_bias": False, "bias": True},
    "bn_plain": {"independent_bn_bias": False, "batch_norm_scale": False, "bias": False},
    "skip_2": {"skip": 2, "layers": 4},
    "stack_last": {"stack": -1},
    "stack_list": {"stack": [0, 2], "pad_input": False},
    "stack_from_1_dilated": {"stack": 1, "hidden_dilation": 2},
    "hidden_padding": {"hidden_padding": 0, "pad_input": False, "stack": -1},
    "linear": {"linear": True, "depth_separable": True},
    "no_final_nonlinearity_elu_shift": {"final_nonlinearity": False, "elu_shift": (0.5, 0.2)},
    "group_sparsity": {"gamma_hidden": 0.3, "gamma_input": 2.0},
    "laplace_l2norm": {
        "input_regularizer": "LaplaceL2norm",
        "laplace_padding": None,
        "use_avg_reg": False,
        "gamma_input": 1.5,
    },
    "laplace_l1": {"input_regularizer": "LaplaceL1", "gamma_input": 1.0},
    "gaussian_laplace": {
        "input_regularizer": "GaussianLaplaceL2",
        "laplace_padding": None,
        "gamma_input": 1.0,
    },
}


@pytest.mark.parametrize("variant", sorted(CORE_VARIANTS))
def test_stacked_core_state_dict_and_function_match_reference(variant):
    arguments = {**CORE_BASE, **CORE_VARIANTS[variant]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.3.0 warns about averaged/deprecated regularizers
        reference = ReferenceCore(**arguments)
    core = Stacked2dCore(**arguments)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in core.state_dict().items()}
    assert found == expected
    perturb_(reference, seed=3, scale=0.1)
    core.load_state_dict(reference.state_dict())
    images = torch.randn(4, 2, 20, 24, generator=torch.Generator().manual_seed(0))
    for train in (False, True):
        reference.train(train)
        core.train(train)
        output, features = core(images)
        assert_close(output.detach(), reference(images).detach(), f"{variant} output, {train=}")
        assert sorted(features) == [f"layer{i}" for i in range(arguments["layers"])]
    assert_close(
        torch.as_tensor(core.regularizer()).detach().float(),
        torch.as_tensor(reference.regularizer()).detach().float(),
        f"{variant} regularizer",
    )


# Same module tree and state dict, different function on purpose (topo's docstrings say why):
# topo's attention layer takes the softmax over each window (0.3.0: per channel), and per-layer
# hidden kernels get their own "same" padding (0.3.0 reuses the first hidden kernel's).
KEY_ONLY_VARIANTS = {
    "attention_conv": {"attention_conv": True, "bias": False},
    "per_layer_hidden_kernels": {"hidden_kern": [3, 5], "stack": -1},
}


@pytest.mark.parametrize("variant", sorted(KEY_ONLY_VARIANTS))
def test_stacked_core_state_dict_matches_reference_where_function_differs(variant):
    arguments = {**CORE_BASE, **KEY_ONLY_VARIANTS[variant]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = ReferenceCore(**arguments)
    core = Stacked2dCore(**arguments)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in core.state_dict().items()} == expected
    core.load_state_dict(reference.state_dict())  # strict
