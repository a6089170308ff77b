"""neuralpredictors 0.3.0 (PyPI) as the reference for topo's Sensorium baseline.

Used by the equivalence test and by ``benchmarks/sensorium_model.py``; never by the topo packages.
The 0.3.0 wheel is what the 2022 baseline ran, but on Python >= 3.10 its cores, transforms and
datasets fail at import (``from collections import Iterable``; fixed upstream only after the
release), so the aliases are restored on ``collections`` before importing it.

sensorium's builder (``stacked_core_full_gauss_readout``) is not on PyPI. ``build_reference_model``
assembles the same model from neuralpredictors' own classes in the builder's order, with the
published notebook settings: seed, core, a zero forward for the readout's input
shape, a cortex-predicted-grid multi-readout, an optional MLP shifter, the firing-rate encoder.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib
import random
import warnings
from types import ModuleType

import numpy as np
import torch
from torch import nn

VERSION = "0.3.0"
# The ABC aliases Python 3.10 removed from ``collections``; 0.3.0 imports Iterable and Mapping.
_ABC_ALIASES = ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable")

# Published baseline settings (sensorium notebooks, 2022): the builder's defaults overridden by
# the notebook's configuration. ``core_bias`` was False in 2022.
CORE_SETTINGS: dict[str, dict] = {
    "sensorium_cnn": {
        "hidden_channels": 64,
        "input_kern": 9,
        "hidden_kern": 7,
        "layers": 4,
        "gamma_input": 6.3831,
        "skip": 0,
        "final_nonlinearity": True,
        "bias": False,
        "momentum": 0.9,
        "pad_input": False,
        "batch_norm": True,
        "hidden_dilation": 1,
        "laplace_padding": None,
        "input_regularizer": "LaplaceL2norm",
        "stack": -1,
        "use_avg_reg": False,
        "depth_separable": True,
        "linear": False,
        "attention_conv": False,
        "hidden_padding": None,
    },
}
CORE_SETTINGS["sensorium_ln"] = {**CORE_SETTINGS["sensorium_cnn"], "layers": 3, "linear": True}
READOUT_SETTINGS = {
    "init_mu_range": 0.3,
    "init_sigma": 0.1,
    "bias": True,
    "gamma_readout": 0.0076,
    "gauss_type": "full",
}
GRID_PREDICTOR = {"hidden_layers": 1, "hidden_features": 30, "final_tanh": True}
SHIFTER_SETTINGS = {
    "input_channels": 2,
    "hidden_channels_shifter": 5,
    "shift_layers": 3,
    "gamma_shifter": 0,
}


def import_neuralpredictors() -> ModuleType:
    """Import neuralpredictors 0.3.0 with the ``collections`` aliases it needs on Python >= 3.10.

    Raises:
        ImportError: when neuralpredictors is absent or is not version 0.3.0 (a git install of
            a later commit also reports 0.3.0 in its metadata but has other classes; the check
            below catches the common case by the 0.3.0-only ``independent_bn_bias`` argument).
    """
    for name in _ABC_ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from importlib.metadata import version

    found = version("neuralpredictors")
    if found != VERSION:
        raise ImportError(f"neuralpredictors: expected version {VERSION}, found {found}")
    package = importlib.import_module("neuralpredictors")
    for module in ("layers.cores", "layers.readouts", "layers.shifters", "layers.encoders"):
        importlib.import_module(f"neuralpredictors.{module}")
    import inspect

    from neuralpredictors.layers.cores import Stacked2dCore

    if "independent_bn_bias" not in inspect.signature(Stacked2dCore.__init__).parameters:
        raise ImportError("neuralpredictors: installed copy is not the 0.3.0 release (PyPI)")
    return package


def _seed_everything(seed: int) -> None:
    """What nnfabrik's ``set_random_seed`` does before sensorium builds a model."""
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


def build_reference_model(
    name: str,
    n_neurons: dict[str, int],
    cortex_coordinates: dict[str, np.ndarray],
    input_channels: int = 1,
    input_size: tuple[int, int] = (36, 64),
    shifter: bool = False,
    seed: int = 0,
) -> nn.Module:
    """The published baseline, built from neuralpredictors 0.3.0 classes as sensorium builds it.

    Args:
        name: "sensorium_cnn" or "sensorium_ln".
        n_neurons: neurons per data key.
        cortex_coordinates: per data key, (n, >= 2) cortical positions in µm (the first two
            columns feed the grid predictor, as ``prepare_grid`` with input_dimensions=2).
        input_channels: 1 (SENSORIUM) or 4 (SENSORIUM+: image + 3 behaviour planes).
        input_size: (height, width) of the input, for the readout's declared input shape only.
        shifter: add the SENSORIUM+ MLP shifter (2 → 5 → 5 → 2, tanh).
        seed: the builder's seed.
    """
    import_neuralpredictors()
    from neuralpredictors.layers.cores import Stacked2dCore
    from neuralpredictors.layers.encoders import FiringRateEncoder
    from neuralpredictors.layers.readouts import FullGaussian2d, MultiReadoutSharedParametersBase
    from neuralpredictors.layers.shifters import MLPShifter
    from neuralpredictors.utils import get_module_output

    class MultipleFullGaussian2d(MultiReadoutSharedParametersBase):
        _base_readout = FullGaussian2d

    if name not in CORE_SETTINGS:
        raise ValueError(f"model name: expected one of {sorted(CORE_SETTINGS)}, found {name!r}")
    _seed_everything(seed)
    source_grids = {key: np.asarray(c)[:, :2] for key, c in cortex_coordinates.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.3.0's deprecation and "bias is 0" warnings
        core = Stacked2dCore(input_channels=input_channels, **CORE_SETTINGS[name])
        shape = (1, input_channels, *input_size)
        in_shape = tuple(get_module_output(core, shape, use_cuda=False)[1:])
        readout = MultipleFullGaussian2d(
            in_shape_dict={key: in_shape for key in n_neurons},
            n_neurons_dict=dict(n_neurons),
            grid_mean_predictor=dict(GRID_PREDICTOR),
            grid_mean_predictor_type="cortex",
            source_grids=source_grids,
            **READOUT_SETTINGS,
        )
        mlp = MLPShifter(data_keys=list(n_neurons), **SHIFTER_SETTINGS) if shifter else None
    return FiringRateEncoder(core=core, readout=readout, shifter=mlp, elu_offset=0)


def perturb_(model: nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    """Move every trained quantity off its initial value, so equal outputs test real weights.

    At initialisation several terms are degenerate (bias 0, features 1/C, BN identity), which
    would hide a swapped or ignored parameter. Float buffers other than the Laplace filter and
    the normalised source grid (BN running statistics) are moved too; variances stay positive.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point() or name.endswith(("filter", "source_grid")):
                continue
            noise = torch.randn(tensor.shape, generator=generator) * scale
            if name.endswith("running_var"):
                tensor.mul_(noise.exp())
            else:
                tensor.add_(noise)
