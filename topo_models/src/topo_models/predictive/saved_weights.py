"""Load Sensorium baseline checkpoints (published or topo_train's) into a ``FiringRateEncoder``.

The published files (``sensorium_sota_model.pth``, ``sensorium_p_ln_model.pth``, …) are plain
state dicts; topo_train writes ``{"model": state_dict, "model_config": …}``. The architecture
is read off the tensors (see docs/predictive.md):

* data keys: ``readout.<key>.*``; neurons: ``_features`` (1, C, 1, n);
* core: input channels, width and input kernel from ``core.features.layer0.conv.weight``;
  layer count from ``features.layer<i>``; depth-separable and hidden kernel from
  ``layer1.ds_conv.spatial_conv.weight`` (or ``layer1.conv.weight``); stacked layers from the
  readout's C / hidden width; ``core_bias`` from hidden conv biases — the 2024 sensorium key set
  (9 extra ``features.layer{1,2,3}.ds_conv.*_conv.bias``) is built with ``core_bias=True``;
* readout: Gaussian type from ``sigma``'s shape, grid predictor from ``mu_transform.*`` with the
  cortical coordinates taken from the ``source_grid`` buffer (already normalised; normalising
  again is idempotent and the buffer is then loaded exactly), Cholesky σ from
  ``sigma_is_cholesky``;
* shifter: MLP (``mlp.<i>.*``) depth and widths, or StaticAffine (``weight``/``bias``).

CNN or LN cannot be told from weights (LN only drops the ELUs): ``architecture`` decides, else
``model_config``'s ``_target_`` (``…sensorium_ln``/``…sensorium_cnn``), else a token ``ln`` in
the file name (``sensorium_p_ln_model.pth``), else 3 core layers → LN and any other count → CNN.
Not recorded in weights either, and taken from the baseline: final tanh of the predictor,
``elu_offset=0``, no input padding, dilation 1, no skip connections, regulariser weights.

Files are read with ``weights_only=True``; keys and shapes are compared before loading, so a
file of another architecture fails with the file name and the differing keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from topo_models.errors import TopoError
from topo_models.predictive.builders import BASELINE_CNN, stacked_core_full_gauss_readout
from topo_models.predictive.encoder import FiringRateEncoder
from topo_models.safe_load import read_torch_file
from topo_models.state_dict_report import listing, state_dict_mismatches

__all__ = ["infer_architecture", "load_checkpoint"]

Architecture = Literal["cnn", "ln"]
_LAYER = re.compile(r"^core\.features\.layer(\d+)\.")
_READOUT = re.compile(r"^readout\.([^.]+)\.")
_MLP_LINEAR = re.compile(r"^shifter\.([^.]+)\.mlp\.(\d+)\.weight$")
_PREDICTOR_LINEAR = re.compile(r"^mu_transform\.(\d+)\.weight$")
_SIGMA_TYPES = {(2, 2): "full", (1, 2): "uncorrelated", (1, 1): "isotropic"}
_CONV0 = "core.features.layer0.conv.weight"


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    architecture: Architecture | None = None,
) -> FiringRateEncoder:
    """Build the encoder a Sensorium checkpoint describes and load its weights (strict).

    Args:
        path: a ``torch.save`` file: a state dict, or ``{"model": …, "model_config": …}`` /
            ``{"state_dict": …}``; a ``module.`` (DDP) prefix on every key is removed.
        map_location: passed to ``torch.load``; the default reads CUDA-saved files on CPU.
        architecture: ``"cnn"`` or ``"ln"``; None infers it (see the module docstring).

    Returns:
        The model in eval mode.

    Raises:
        TopoError: missing, corrupt or non-tensor file; not this architecture; missing,
            unexpected or mismatching keys (all naming the file).
    """
    path = Path(path)
    state, config = _locate(_read(path, map_location), path)
    kwargs = infer_architecture(state, path, architecture=architecture, model_config=config)
    model = stacked_core_full_gauss_readout(**kwargs)
    _check_keys(model, state, path)
    model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- reading


def _read(path: Path, map_location: str | torch.device) -> object:
    return read_torch_file(path, map_location)


def _locate(raw: object, path: Path) -> tuple[dict[str, torch.Tensor], object]:
    """(state dict, model_config or None) from any accepted layout."""
    if not isinstance(raw, Mapping):
        raise TopoError("checkpoint is not a dict", file=path, found=type(raw).__name__)
    config = raw.get("model_config")
    for wrapper in ("model", "state_dict"):
        if isinstance(raw.get(wrapper), Mapping):
            raw = raw[wrapper]
            break
    bad = [str(k) for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TopoError(
            "state dict holds non-tensor entries",
            file=path,
            expected="a state dict (only tensors)",
            found=listing(bad),
        )
    state = {str(k): v for k, v in raw.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, config


# --------------------------------------------------------------------------- inference


def infer_architecture(
    state: Mapping[str, torch.Tensor],
    path: str | Path = "<state dict>",
    architecture: Architecture | None = None,
    model_config: object = None,
) -> dict[str, object]:
    """Keyword arguments of ``stacked_core_full_gauss_readout`` that rebuild ``state``.

    Raises:
        TopoError: the state dict is not a stacked-core Gaussian-readout encoder.
    """
    path = Path(path)
    conv0 = state.get(_CONV0)
    readout_keys = list(dict.fromkeys(m.group(1) for k in state if (m := _READOUT.match(k))))
    if conv0 is None or conv0.dim() != 4 or not readout_keys:
        raise TopoError(
            "not a Sensorium stacked-core / Gaussian-readout checkpoint",
            file=path,
            expected=f"{_CONV0} (4-d) and readout.<data_key>.* keys",
            found=listing(sorted(state)),
        )
    hidden, input_channels, input_kern = int(conv0.shape[0]), int(conv0.shape[1]), conv0.shape[-1]
    layers = 1 + max(int(m.group(1)) for k in state if (m := _LAYER.match(k)))
    kwargs: dict[str, object] = {
        "input_channels": input_channels,
        "hidden_channels": hidden,
        "input_kern": int(input_kern),
        "layers": layers,
        "gamma_input": BASELINE_CNN["gamma_input"],
        "gamma_readout": BASELINE_CNN["gamma_readout"],
        "batch_norm": "core.features.layer0.norm.running_mean" in state,
        **_hidden_layers(state, layers),
    }
    readout = {key: _readout(state, key, path) for key in readout_keys}
    first = readout[readout_keys[0]]
    channels = first["channels"]
    if channels % hidden or not 0 < channels // hidden <= layers:
        raise TopoError(
            "readout channels are not a whole number of core layers",
            file=path,
            field=f"readout.{readout_keys[0]}._features",
            expected=f"a multiple of {hidden} up to {hidden * layers}",
            found=channels,
        )
    stacked = channels // hidden
    kwargs.update(
        n_neurons={key: r["n"] for key, r in readout.items()},
        stack=None if stacked == layers else -stacked,
        gauss_type=first["gauss_type"],
        readout_bias=first["bias"],
        psd_sigma=first["psd_sigma"],
        grid_mean_predictor=first["predictor"],
        cortex_coordinates=(
            {key: r["grid"] for key, r in readout.items()} if first["predictor"] else None
        ),
        **_shifter(state, path),
    )
    kwargs["linear"] = _architecture(path, architecture, model_config, layers) == "ln"
    return kwargs


def _hidden_layers(state: Mapping[str, torch.Tensor], layers: int) -> dict[str, object]:
    prefix = "core.features.layer1."
    if layers < 2:
        return {"core_bias": "core.features.layer0.conv.bias" in state}
    if f"{prefix}ds_conv.spatial_conv.weight" in state:
        kern = state[f"{prefix}ds_conv.spatial_conv.weight"].shape[-1]
        bias = f"{prefix}ds_conv.in_depth_conv.bias" in state
        return {"depth_separable": True, "hidden_kern": int(kern), "core_bias": bias}
    if f"{prefix}conv.weight" in state:
        kern = state[f"{prefix}conv.weight"].shape[-1]
        return {"hidden_kern": int(kern), "core_bias": f"{prefix}conv.bias" in state}
    if any(k.startswith(f"{prefix}attention_conv.") for k in state):
        return {"attention_conv": True, "core_bias": False}
    return {}  # leave the defaults; the key check reports what does not fit


def _readout(state: Mapping[str, torch.Tensor], key: str, path: Path) -> dict[str, object]:
    prefix = f"readout.{key}."
    features, sigma = state.get(prefix + "_features"), state.get(prefix + "sigma")
    if features is None or features.dim() != 4 or sigma is None or sigma.dim() != 4:
        raise TopoError(
            "readout lacks its Gaussian parameters",
            file=path,
            field=prefix.rstrip("."),
            expected="_features (1, C, 1, n) and sigma (1, n, 2|1, 2|1)",
            found=listing(k for k in state if k.startswith(prefix)),
        )
    gauss_type = _SIGMA_TYPES.get(tuple(sigma.shape[2:]))
    if gauss_type is None:
        raise TopoError(
            "unknown sigma shape", file=path, field=prefix + "sigma", found=tuple(sigma.shape)
        )
    found: dict[str, object] = {
        "channels": int(features.shape[1]),
        "n": int(features.shape[-1]),
        "gauss_type": gauss_type,
        "bias": prefix + "bias" in state,
        "psd_sigma": prefix + "sigma_is_cholesky" in state,
        "predictor": None,
        "grid": None,
    }
    grid = state.get(prefix + "source_grid")
    linears = sorted(
        int(m.group(1))
        for k in state
        if k.startswith(prefix) and (m := _PREDICTOR_LINEAR.match(k[len(prefix) :]))
    )
    if grid is not None and linears:
        first = state[f"{prefix}mu_transform.{linears[0]}.weight"]
        hidden_layers = len(linears) - 1
        found["predictor"] = {
            "type": "cortex",
            "input_dimensions": int(grid.shape[1]),
            "hidden_layers": hidden_layers,
            "hidden_features": int(first.shape[0]) if hidden_layers else 20,
            "final_tanh": True,
        }
        found["grid"] = grid.detach().cpu().double().numpy()
    return found


def _shifter(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, object]:
    mlp: dict[str, list[int]] = {}
    for key in state:
        if m := _MLP_LINEAR.match(key):
            mlp.setdefault(m.group(1), []).append(int(m.group(2)))
    if mlp:
        key, indices = next(iter(mlp.items()))
        first = state[f"shifter.{key}.mlp.{min(indices)}.weight"]
        return {
            "shifter": True,
            "shifter_type": "MLP",
            "shift_layers": len(indices),
            "input_channels_shifter": int(first.shape[1]),
            "hidden_channels_shifter": int(first.shape[0]) if len(indices) > 1 else 5,
        }
    affine = [k for k in state if re.match(r"^shifter\.[^.]+\.weight$", k)]
    if affine:
        weight = state[affine[0]]
        bias = affine[0][: -len("weight")] + "bias"
        return {
            "shifter": True,
            "shifter_type": "StaticAffine",
            "input_channels_shifter": int(weight.shape[1]),
            "shifter_bias": bias in state,
        }
    if any(k.startswith("shifter.") for k in state):
        raise TopoError(
            "unrecognised shifter keys",
            file=path,
            field="shifter",
            expected="shifter.<key>.mlp.<i>.{weight,bias} or shifter.<key>.{weight,bias}",
            found=listing(k for k in state if k.startswith("shifter.")),
        )
    return {"shifter": False}


def _architecture(
    path: Path, architecture: str | None, model_config: object, layers: int
) -> Architecture:
    if architecture is not None:
        if architecture not in ("cnn", "ln"):
            raise TopoError(
                "unknown architecture", field="architecture", expected="cnn|ln", found=architecture
            )
        return architecture  # type: ignore[return-value]
    if isinstance(model_config, Mapping):
        target = str(model_config.get("_target_", model_config.get("name", "")))
        if target.endswith("sensorium_ln"):
            return "ln"
        if target.endswith("sensorium_cnn"):
            return "cnn"
    if "ln" in re.split(r"[^0-9a-zA-Z]+", path.stem.lower()):
        return "ln"
    return "ln" if layers == 3 else "cnn"


# --------------------------------------------------------------------------- checking


def _check_keys(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    lines = state_dict_mismatches(own, state, "model")
    if lines:
        raise TopoError(
            "checkpoint does not fit the Sensorium encoder it describes; " + "; ".join(lines),
            file=path,
        )
