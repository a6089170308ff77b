"""Builders of the Sensorium 2022 baselines: stacked CNN core + Gaussian readout (+ shifter).

``stacked_core_full_gauss_readout`` mirrors sensorium's builder of that name (its defaults are
that function's defaults); instead of data loaders it takes the neuron counts, the neurons'
cortical coordinates and the input channel count. ``sensorium_cnn`` / ``sensorium_ln`` apply the
published notebook configurations (sensorium's model tutorial), registered for ``create_model``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.cores import Stacked2dCore
from topo_models.predictive.encoder import FiringRateEncoder
from topo_models.predictive.position_start import POSITION_STARTS, start_positions_at_fields
from topo_models.predictive.readouts.gaussian import GaussType
from topo_models.predictive.readouts.grid import GRID_PREDICTOR_KEYS
from topo_models.predictive.readouts.multi import MultipleFullGaussian2d
from topo_models.predictive.shifters import MLPShifter, StaticAffine2dShifter
from topo_models.registry import register_model

__all__ = [
    "BASELINE_CNN",
    "core_output_shape",
    "sensorium_cnn",
    "sensorium_ln",
    "stacked_core_full_gauss_readout",
]

# The published "SOTA" CNN (notebook configs); the LN model is this with layers=3, linear=True.
BASELINE_CNN: dict[str, object] = {
    "pad_input": False,
    "stack": -1,
    "layers": 4,
    "input_kern": 9,
    "hidden_kern": 7,
    "hidden_channels": 64,
    "depth_separable": True,
    "gamma_input": 6.3831,
    "gamma_readout": 0.0076,
    "gauss_type": "full",
    "init_sigma": 0.1,
    "init_mu_range": 0.3,
    "grid_mean_predictor": {
        "type": "cortex",
        "input_dimensions": 2,
        "hidden_layers": 1,
        "hidden_features": 30,
        "final_tanh": True,
    },
}

# Square sides tried, smallest first, by the dry forward that measures the core's channels.
_DRY_SIDES = (16, 64, 144)


def core_output_shape(core: nn.Module, input_channels: int, min_size: int = 0) -> tuple[int, ...]:
    """(C, H, W) of the core's output for a small zero image, measured in eval mode without grad.

    The readout uses only C (positions are relative), so the smallest input the core accepts
    is used (at least 2·min_size, e.g. twice the unpadded input kernel) to keep this cheap;
    H, W are those of that input, not of the training images.
    """
    was_training = core.training
    core.eval()
    error: RuntimeError | None = None
    try:
        for side in sorted({max(s, 2 * min_size) for s in _DRY_SIDES}):
            try:
                with torch.no_grad():
                    output, _ = core(torch.zeros(1, input_channels, side, side))
                return tuple(output.shape[1:])
            except RuntimeError as caught:  # input smaller than the receptive field
                error = caught
    finally:
        core.train(was_training)
    raise TopoError(
        "could not run the core on a zero image to measure its output channels",
        field="core",
        found=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
    )


def _source_grids(
    n_neurons: Mapping[str, int],
    cortex_coordinates: Mapping[str, object] | None,
    dims: int,
) -> dict[str, np.ndarray]:
    if cortex_coordinates is None:
        raise TopoError(
            "the cortex grid mean predictor needs every neuron's cortical coordinates",
            field="cortex_coordinates",
            expected={k: f"({n}, >={dims})" for k, n in n_neurons.items()},
        )
    grids = {}
    for key, n in n_neurons.items():
        if key not in cortex_coordinates:
            raise TopoError(
                "cortical coordinates missing for a data key",
                field="cortex_coordinates",
                expected=list(n_neurons),
                found=sorted(cortex_coordinates),
            )
        value = cortex_coordinates[key]
        coords = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value, dtype=float)
        if coords.ndim != 2 or coords.shape[0] != n or coords.shape[1] < dims:
            raise TopoError(
                "cortical coordinates must have one row per neuron",
                field=f"cortex_coordinates[{key!r}]",
                expected=f"({n}, >={dims})",
                found=coords.shape,
            )
        grids[key] = coords[:, :dims]
    return grids


def _readout_predictor(
    grid_mean_predictor: Mapping[str, object] | None,
) -> tuple[dict[str, object] | None, int]:
    """Split the published predictor config into readout options and the input dimensions."""
    if grid_mean_predictor is None:
        return None, 0
    config = dict(grid_mean_predictor)
    kind = config.pop("type", "cortex")
    dims = int(config.pop("input_dimensions", 2))
    if kind != "cortex":
        raise TopoError(
            "unknown grid mean predictor type",
            field="grid_mean_predictor.type",
            expected="cortex",
            found=kind,
        )
    unknown = sorted(set(config) - set(GRID_PREDICTOR_KEYS))
    if unknown:
        raise TopoError(
            "unknown grid mean predictor option(s)",
            field="grid_mean_predictor",
            expected=["type", "input_dimensions", *GRID_PREDICTOR_KEYS],
            found=unknown,
        )
    return config, dims


def stacked_core_full_gauss_readout(
    n_neurons: Mapping[str, int],
    cortex_coordinates: Mapping[str, object] | None = None,
    input_channels: int = 1,
    *,
    mean_activity: Mapping[str, object] | None = None,
    seed: int | None = None,
    hidden_channels: int = 32,
    input_kern: int = 13,
    hidden_kern: int = 3,
    layers: int = 3,
    gamma_input: float = 15.5,
    skip: int = 0,
    final_nonlinearity: bool = True,
    momentum: float = 0.9,
    pad_input: bool = False,
    batch_norm: bool = True,
    hidden_dilation: int = 1,
    laplace_padding: int | None = None,
    input_regularizer: str = "LaplaceL2norm",
    use_avg_reg: bool = False,
    init_mu_range: float = 0.2,
    init_sigma: float = 1.0,
    readout_bias: bool = True,
    gamma_readout: float = 4.0,
    elu_offset: float = 0.0,
    stack: int | Sequence[int] | None = None,
    depth_separable: bool = False,
    linear: bool = False,
    gauss_type: GaussType = "full",
    grid_mean_predictor: Mapping[str, object] | None = None,
    attention_conv: bool = False,
    shifter: bool = False,
    shifter_type: Literal["MLP", "StaticAffine"] = "MLP",
    input_channels_shifter: int = 2,
    hidden_channels_shifter: int = 5,
    shift_layers: int = 3,
    gamma_shifter: float = 0.0,
    shifter_bias: bool = True,
    hidden_padding: int | None = None,
    core_bias: bool = False,
    psd_sigma: bool = False,
) -> FiringRateEncoder:
    """A ``Stacked2dCore`` + ``MultipleFullGaussian2d`` (+ shifter) ``FiringRateEncoder``.

    Args:
        n_neurons: data key → neuron count (one readout each, in this order).
        cortex_coordinates: data key → (n, ≥ input_dimensions) cortical positions (µm), needed
            with ``grid_mean_predictor={"type": "cortex", …}``; the first input_dimensions
            columns are used and normalised inside the readout.
        input_channels: image channels (1, or 4 with behaviour planes).
        mean_activity: data key → (n,) initial readout bias (the baseline passes none: 0).
        seed: seeds torch's RNG for the build only (the global RNG state is restored).
        core_bias: ``bias`` of the core: False is the 2022 baseline; True (sensorium since
            2024-03) adds biases to the hidden convolutions only (BN keeps its affine).
        psd_sigma: Cholesky-parametrised readout covariance (see ``FullGaussian2d``).
        shifter_bias: reaches the StaticAffine shifter only, as published; the MLP always has
            biases.
        Others: as sensorium's builder, ``Stacked2dCore`` and ``FullGaussian2d``
            (``gamma_readout`` is the readout's ``feature_reg_weight``).
    """
    if not n_neurons:
        raise TopoError("no data keys", field="n_neurons", expected="{data_key: n_neurons}")
    if shifter_type not in ("MLP", "StaticAffine"):
        raise TopoError(
            "unknown shifter type",
            field="shifter_type",
            expected="MLP|StaticAffine",
            found=shifter_type,
        )
    predictor, dims = _readout_predictor(grid_mean_predictor)
    grids = None if predictor is None else _source_grids(n_neurons, cortex_coordinates, dims)
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        core = Stacked2dCore(
            input_channels,
            hidden_channels,
            input_kern,
            hidden_kern,
            layers=layers,
            gamma_input=gamma_input,
            skip=skip,
            final_nonlinearity=final_nonlinearity,
            bias=core_bias,
            momentum=momentum,
            pad_input=pad_input,
            batch_norm=batch_norm,
            hidden_dilation=hidden_dilation,
            laplace_padding=laplace_padding,
            input_regularizer=input_regularizer,
            stack=stack,
            use_avg_reg=use_avg_reg,
            depth_separable=depth_separable,
            linear=linear,
            attention_conv=attention_conv,
            hidden_padding=hidden_padding,
        )
        out_shape = core_output_shape(core, input_channels, min_size=input_kern)
        readout = MultipleFullGaussian2d(
            {key: out_shape for key in n_neurons},
            dict(n_neurons),
            source_grids=grids,
            mean_activity_dict=mean_activity,
            bias=readout_bias,
            init_mu_range=init_mu_range,
            init_sigma=init_sigma,
            gauss_type=gauss_type,
            grid_mean_predictor=predictor,
            feature_reg_weight=gamma_readout,
            psd_sigma=psd_sigma,
        )
        shifter_module: MLPShifter | StaticAffine2dShifter | None = None
        if shifter and shifter_type == "MLP":
            shifter_module = MLPShifter(
                list(n_neurons),
                input_channels=input_channels_shifter,
                hidden_channels_shifter=hidden_channels_shifter,
                shift_layers=shift_layers,
                gamma_shifter=gamma_shifter,
            )
        elif shifter:
            shifter_module = StaticAffine2dShifter(
                list(n_neurons),
                input_channels=input_channels_shifter,
                bias=shifter_bias,
                gamma_shifter=gamma_shifter,
            )
    return FiringRateEncoder(core, readout, shifter=shifter_module, elu_offset=elu_offset)


def _baseline(
    linear: bool,
    n_neurons: Mapping[str, int],
    cortex_coordinates: Mapping[str, object],
    input_channels: int,
    shifter: bool,
    mean_activity: Mapping[str, object] | None,
    core_bias: bool,
    psd_sigma: bool,
    seed: int | None,
    position_start: str,
    rf_centres_px: Mapping[str, object] | None,
    input_size: Sequence[int] | None,
) -> FiringRateEncoder:
    if position_start not in POSITION_STARTS:
        raise TopoError(
            "unknown readout position start",
            field="position_start",
            expected=POSITION_STARTS,
            found=position_start,
        )
    config = dict(BASELINE_CNN)
    if linear:
        config.update(layers=3, linear=True)
    model = stacked_core_full_gauss_readout(
        n_neurons,
        cortex_coordinates,
        input_channels,
        mean_activity=mean_activity,
        seed=seed,
        shifter=shifter,
        core_bias=core_bias,
        psd_sigma=psd_sigma,
        **config,
    )
    if position_start == "data":
        start_positions_at_fields(model, rf_centres_px, input_size, input_channels)
    return model


@register_model("sensorium_cnn", "topo_models.predictive.sensorium_cnn")
def sensorium_cnn(
    n_neurons: Mapping[str, int],
    cortex_coordinates: Mapping[str, object],
    input_channels: int = 1,
    shifter: bool = False,
    mean_activity: Mapping[str, object] | None = None,
    core_bias: bool = False,
    psd_sigma: bool = False,
    seed: int | None = None,
    position_start: str = "random",
    rf_centres_px: Mapping[str, object] | None = None,
    input_size: Sequence[int] | None = None,
) -> FiringRateEncoder:
    """The Sensorium 2022 CNN baseline ("SOTA"; Willeke et al. 2022, arXiv 2206.08666).

    Core: 9×9 conv (no padding) then 3 depth-separable 7×7 layers, 64 channels, BN (momentum
    0.9) + ELU, only the last layer read out; Laplace regulariser weight 6.3831. Readout: full
    Gaussian (init σ 0.1, μ range 0.3), μ from cortical (x, y) through a 2→30→2 tanh MLP,
    feature L1 weight 0.0076, bias. SENSORIUM+ adds ``input_channels=4`` (behaviour planes) and
    ``shifter=True`` (2→5→5→2 tanh MLP on the pupil centre).

    Args:
        n_neurons: data key → neuron count.
        cortex_coordinates: data key → (n, 2 or 3) ``cell_motor_coordinates`` (µm); x, y used.
        input_channels: 1 (SENSORIUM) or 4 (SENSORIUM+, behaviour as channels).
        shifter: add the pupil-centre MLP shifter.
        mean_activity: data key → (n,) initial bias (the published build passes none).
        core_bias: True gives the 2024 sensorium key set (9 extra hidden-conv biases).
        psd_sigma: Cholesky-parametrised readout covariance (not in the published model).
        seed: seed of the initialisation.
        position_start: ``"random"`` (published: the position MLP's own init) or ``"data"``
            (fitted to ``rf_centres_px``, receptive-field centres estimated from the data, in
            pixels of inputs of ``input_size`` (H, W); see ``start_positions_at_fields``).
    """
    return _baseline(
        False,
        n_neurons,
        cortex_coordinates,
        input_channels,
        shifter,
        mean_activity,
        core_bias,
        psd_sigma,
        seed,
        position_start,
        rf_centres_px,
        input_size,
    )


@register_model("sensorium_ln", "topo_models.predictive.sensorium_ln")
def sensorium_ln(
    n_neurons: Mapping[str, int],
    cortex_coordinates: Mapping[str, object],
    input_channels: int = 1,
    shifter: bool = False,
    mean_activity: Mapping[str, object] | None = None,
    core_bias: bool = False,
    psd_sigma: bool = False,
    seed: int | None = None,
    position_start: str = "random",
    rf_centres_px: Mapping[str, object] | None = None,
    input_size: Sequence[int] | None = None,
) -> FiringRateEncoder:
    """The Sensorium 2022 LN baseline: ``sensorium_cnn`` with 3 layers and no core
    nonlinearity (BN kept), so the output ELU + 1 is the model's only nonlinearity.
    Arguments as ``sensorium_cnn``."""
    return _baseline(
        True,
        n_neurons,
        cortex_coordinates,
        input_channels,
        shifter,
        mean_activity,
        core_bias,
        psd_sigma,
        seed,
        position_start,
        rf_centres_px,
        input_size,
    )
