"""Pieces shared by the Sensorium cores: small layers, argument checks and the stacked forward.

A *core* maps images (batch, channels, height, width) to a feature stack the readouts sample
from. Every core here returns ``(output, features)``: ``features`` maps ``"layer0"``,
``"layer1"``, … to each layer's output (after its nonlinearity) and ``output`` concatenates,
along channels, the layers chosen by ``stack``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from numbers import Integral, Real

import torch
from torch import nn
from torch.nn import functional as F

from topo_models.errors import TopoError
from topo_models.predictive.regularizers import build_input_regularizer, group_sparsity


class AdaptiveELU(nn.Module):
    """ELU(x − xshift) + yshift; plain ELU with the default shifts (0, 0). No parameters."""

    def __init__(self, xshift: float = 0.0, yshift: float = 0.0) -> None:
        super().__init__()
        self.xshift = float(xshift)
        self.yshift = float(yshift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(x - self.xshift) + self.yshift

    def extra_repr(self) -> str:
        return f"xshift={self.xshift}, yshift={self.yshift}"


class Bias2DLayer(nn.Module):
    """A learned per-channel offset, parameter ``bias`` of shape (1, C, 1, 1)."""

    def __init__(self, channels: int, initial: float = 0.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((1, channels, 1, 1), float(initial)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class Scale2DLayer(nn.Module):
    """A learned per-channel gain, parameter ``scale`` of shape (1, C, 1, 1)."""

    def __init__(self, channels: int, initial: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), float(initial)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def init_conv(module: nn.Module) -> None:
    """Xavier-normal weights and zero biases for every Conv2d (the neuralpredictors init)."""
    if isinstance(module, nn.Conv2d):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a TopoError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise TopoError("bad core argument", field=name, expected=f"int >= {minimum}", found=value)
    return int(value)


def check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or value < 0:
        raise TopoError("bad core argument", field=name, expected="number >= 0", found=value)
    return float(value)


def check_momentum(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
        raise TopoError(
            "bad batch-norm momentum", field="momentum", expected="in [0, 1]", found=value
        )
    return float(value)


def check_elu_shift(value: object) -> tuple[float, float]:
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, Real) and not isinstance(v, bool) for v in value)
    ):
        raise TopoError(
            "bad ELU shift", field="elu_shift", expected="(xshift, yshift)", found=value
        )
    return float(value[0]), float(value[1])


def per_hidden_layer(name: str, value: object, layers: int, minimum: int) -> list[int]:
    """An int, or one int per hidden layer (``layers − 1`` of them), as a list."""
    n_hidden = layers - 1
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) != n_hidden:
            raise TopoError(
                "one value per hidden layer is needed",
                field=name,
                expected=f"an int or a list of {n_hidden}",
                found=value,
            )
        return [check_int(name, v, minimum) for v in values]
    return [check_int(name, value, minimum)] * n_hidden


def resolve_stack(stack: int | Sequence[int] | None, layers: int) -> list[int]:
    """Which layer outputs form the core output: None = all, int s = ``range(layers)[s:]``."""
    if stack is None:
        return list(range(layers))
    if isinstance(stack, Integral) and not isinstance(stack, bool):
        chosen = list(range(layers))[stack:]
    elif isinstance(stack, Sequence) and not isinstance(stack, str):
        chosen = list(stack)
    else:
        raise TopoError(
            "bad stack", field="stack", expected="None, int or list of int", found=stack
        )
    if not chosen or not all(
        isinstance(i, Integral) and not isinstance(i, bool) and -layers <= i < layers
        for i in chosen
    ):
        raise TopoError(
            "stack selects no layer or a layer that does not exist",
            field="stack",
            expected=f"indices in [-{layers}, {layers})",
            found=stack,
        )
    return [int(i) % layers for i in chosen]


class StackedCoreBase(nn.Module, ABC):
    """The forward pass, Laplace term and regulariser shared by the stacked cores.

    Subclasses fill ``self.features`` with ``layer0`` … and implement ``input_weight`` (the
    first layer's effective (out, in, k, k) weight) and ``hidden_weights`` (the plain-conv
    weights that group sparsity sees).
    """

    features: nn.Sequential
    skip: int

    def _setup_regularization(
        self,
        gamma_input: float,
        gamma_hidden: float,
        input_regularizer: str,
        laplace_padding: int | None,
        input_kern: int,
        use_avg_reg: bool,
    ) -> None:
        self.gamma_input = check_nonnegative("gamma_input", gamma_input)
        self.gamma_hidden = check_nonnegative("gamma_hidden", gamma_hidden)
        self.use_avg_reg = bool(use_avg_reg)
        self._input_weights_regularizer = build_input_regularizer(
            input_regularizer, padding=laplace_padding, kernel=input_kern
        )

    @abstractmethod
    def input_weight(self) -> torch.Tensor:
        """The first layer's weight (out, in, k, k) that the Laplace penalty smooths."""

    @abstractmethod
    def hidden_weights(self) -> list[torch.Tensor]:
        """The (out, in, k, k) weights group sparsity acts on (may be empty)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (batch, in_channels, h, w) → (stacked output, {"layer{i}": layer output})."""
        outputs: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            if index >= 1 and self.skip > 1:
                x = torch.cat(outputs[-min(self.skip, index) :], dim=1)
            # channels-last activations: PyTorch's CPU depthwise convolution is ~10x faster
            # in that layout (and cuDNN prefers it too); values are the same
            x = layer(x).contiguous(memory_format=torch.channels_last)
            outputs.append(x)
        features = {f"layer{i}": out for i, out in enumerate(outputs)}
        return torch.cat([outputs[i] for i in self.stack], dim=1), features

    def laplace(self) -> torch.Tensor:
        """The configured smoothness penalty of the first layer's kernels."""
        return self._input_weights_regularizer(self.input_weight(), avg=self.use_avg_reg)

    def group_sparsity(self) -> torch.Tensor:
        """Mean L2 norm of each hidden k×k kernel, averaged over hidden layers (0 if none)."""
        weights = self.hidden_weights()
        if not weights:
            return self.input_weight().new_zeros(())
        return group_sparsity(weights)

    def regularizer(self) -> torch.Tensor:
        """gamma_hidden · group sparsity + gamma_input · Laplace penalty."""
        return self.gamma_hidden * self.group_sparsity() + self.gamma_input * self.laplace()


def norm_modules(
    channels: int,
    *,
    batch_norm: bool,
    bias: bool,
    batch_norm_scale: bool,
    independent_bn_bias: bool,
    momentum: float,
    norm_cls: Callable[..., nn.Module] = nn.BatchNorm2d,
    bias_cls: Callable[..., nn.Module] = Bias2DLayer,
    scale_cls: Callable[..., nn.Module] = Scale2DLayer,
) -> dict[str, nn.Module]:
    """The ``norm`` / ``bias`` / ``scale`` modules after a convolution (neuralpredictors 0.3.0).

    With ``independent_bn_bias`` (the 0.3.0 default) the batch norm is always affine, whatever
    ``bias`` and ``batch_norm_scale`` say. Otherwise the batch norm is affine only when both are
    set, and a lone bias or a lone scale gets its own layer. The rotation core passes its own
    classes (bound to ``num_rotations``) as ``norm_cls`` / ``bias_cls`` / ``scale_cls``.
    """
    if not batch_norm:
        return {}
    if independent_bn_bias:
        return {"norm": norm_cls(channels, momentum=momentum)}
    modules: dict[str, nn.Module] = {
        "norm": norm_cls(channels, momentum=momentum, affine=bias and batch_norm_scale)
    }
    if bias and not batch_norm_scale:
        modules["bias"] = bias_cls(channels)
    elif batch_norm_scale and not bias:
        modules["scale"] = scale_cls(channels)
    return modules
