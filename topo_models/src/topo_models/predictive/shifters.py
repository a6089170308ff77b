"""Shifters: map the pupil centre to one (x, y) translation of all readout positions per trial.

The output is in readout grid units (tanh keeps it in (-1, 1)) and is added to every neuron's
position after the readout's clamp. One shifter per data key, as
neuralpredictors' ``MLPShifter`` / ``StaticAffine2dShifter``; state-dict keys match 0.3.0
(``shifter.<key>.mlp.{0,2,4}.*`` and ``shifter.<key>.{weight,bias}``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from topo_models.errors import TopoError

__all__ = ["MLP", "MLPShifter", "StaticAffine2d", "StaticAffine2dShifter"]


def _check_input(x: torch.Tensor, width: int, what: str) -> None:
    if x.dim() != 2 or x.shape[1] != width:
        raise TopoError(
            f"{what} input has the wrong shape (pupil centre, plus trial_idx if appended)",
            field="pupil_center",
            expected=f"(B, {width})",
            found=tuple(x.shape),
        )


class MLP(nn.Module):
    """(shift_layers − 1) × [Linear, Tanh], then Linear(→ 2), Tanh.

    Keeps torch's default Linear init: the published ``initialize`` was never called (and its
    filter could not match a Linear), so default init is what the baseline trained with
    (neuralpredictors PR #247).

    Args:
        input_features: pupil centre (2), plus trial_idx columns if those are appended.
        hidden_channels: width of each hidden layer.
        shift_layers: number of Linear layers (1 = no hidden layer).
        bias: Linear biases.
    """

    def __init__(
        self,
        input_features: int = 2,
        hidden_channels: int = 10,
        shift_layers: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if input_features < 1 or hidden_channels < 1 or shift_layers < 1:
            raise TopoError(
                "bad shifter size",
                field="shifter",
                expected="input_features, hidden_channels, shift_layers >= 1",
                found=(input_features, hidden_channels, shift_layers),
            )
        self.input_features = int(input_features)
        layers: list[nn.Module] = []
        width = self.input_features
        for _ in range(shift_layers - 1):
            layers += [nn.Linear(width, hidden_channels, bias=bias), nn.Tanh()]
            width = hidden_channels
        layers += [nn.Linear(width, 2, bias=bias), nn.Tanh()]
        self.mlp = nn.Sequential(*layers)

    def forward(
        self, pupil_center: torch.Tensor, trial_idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, 2) shift from pupil_center (B, 2) [and trial_idx (B, k), concatenated]."""
        x = pupil_center if trial_idx is None else torch.cat((pupil_center, trial_idx), dim=1)
        _check_input(x, self.input_features, "MLP shifter")
        return self.mlp(x)

    def regularizer(self) -> torch.Tensor:
        """Zero: the published MLP shifter has no regulariser (neuralpredictors issue #183)."""
        return self.mlp[0].weight.new_zeros(())


class StaticAffine2d(nn.Linear):
    """tanh(W x + b): an affine map of the pupil centre, squashed to (-1, 1).

    Starts near zero (weights and bias ~ N(0, 1e-6)), i.e. no shift. A subclass of
    ``nn.Linear`` so its keys are ``weight`` / ``bias`` as published.
    """

    def __init__(self, input_channels: int = 2, output_channels: int = 2, bias: bool = True):
        super().__init__(input_channels, output_channels, bias=bias)
        self.initialize()

    def initialize(self, bias: torch.Tensor | None = None) -> None:
        with torch.no_grad():
            self.weight.normal_(0.0, 1e-6)
            if self.bias is not None:
                if bias is None:
                    self.bias.normal_(0.0, 1e-6)
                else:
                    self.bias.copy_(bias)

    def forward(self, x: torch.Tensor, trial_idx: torch.Tensor | None = None) -> torch.Tensor:
        if trial_idx is not None:
            warnings.warn(
                "StaticAffine2d ignores trial_idx (it has no trial input)",
                UserWarning,
                stacklevel=2,
            )
        _check_input(x, self.in_features, "StaticAffine2d shifter")
        return torch.tanh(super().forward(x))

    def regularizer(self) -> torch.Tensor:
        """mean(W²)."""
        return self.weight.pow(2).mean()


class _ShifterDict(nn.ModuleDict):
    """A shifter per data key, with the regulariser weighted by ``gamma_shifter``."""

    gamma_shifter: float

    def resolve_key(self, data_key: str | None) -> str:
        if data_key is None and len(self) == 1:
            return next(iter(self.keys()))
        if data_key not in self:
            raise TopoError(
                "no shifter for this data key",
                field="data_key",
                expected=list(self),
                found=data_key,
            )
        return data_key

    def regularizer(self, data_key: str | None = None) -> torch.Tensor:
        return self[self.resolve_key(data_key)].regularizer() * self.gamma_shifter


def _check_keys(data_keys: Sequence[str]) -> list[str]:
    keys = list(data_keys)
    if not keys or any(not isinstance(k, str) or not k or "." in k for k in keys):
        raise TopoError(
            "shifter data keys must be non-empty strings without '.'",
            field="data_keys",
            found=keys,
        )
    return keys


class MLPShifter(_ShifterDict):
    """One ``MLP`` per data key. The baseline is 2 → 5 → 5 → 2 (``hidden_channels_shifter=5``,
    ``shift_layers=3``; 57 parameters per key). ``gamma_shifter`` is inert because the MLP
    regulariser is 0, as published (issue #183)."""

    def __init__(
        self,
        data_keys: Sequence[str],
        input_channels: int = 2,
        hidden_channels_shifter: int = 2,
        shift_layers: int = 1,
        gamma_shifter: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.gamma_shifter = float(gamma_shifter)
        for key in _check_keys(data_keys):
            self[key] = MLP(input_channels, hidden_channels_shifter, shift_layers, bias=bias)


class StaticAffine2dShifter(_ShifterDict):
    """One ``StaticAffine2d`` per data key; regulariser gamma_shifter · mean(W²)."""

    def __init__(
        self,
        data_keys: Sequence[str],
        input_channels: int = 2,
        output_channels: int = 2,
        bias: bool = True,
        gamma_shifter: float = 0.0,
    ) -> None:
        super().__init__()
        self.gamma_shifter = float(gamma_shifter)
        for key in _check_keys(data_keys):
            self[key] = StaticAffine2d(input_channels, output_channels, bias=bias)
