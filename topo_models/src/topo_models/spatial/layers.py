"""Spatial layers: ordinary Linear / Conv2d layers whose output units have learnable positions.

A spatial layer puts each output neuron (Linear) or output channel (Conv2d) at a point of a
``dim``-dimensional space (Wołczyk et al. 2019, "Biologically-Inspired Spatial Neural Networks").
The positions are an ordinary ``nn.Parameter``, so the optimiser
that trains the weights also moves the neurons; the spatial costs
(``topo_models.losses.spatial_costs``) are what give the positions a gradient.

Unlike the original ``(dim, out)`` layout, ``positions`` here is ``(out, dim)``: row ``i`` is the
position of output unit ``i``, the row order of ``weight``.
"""

from __future__ import annotations

import torch
from torch import nn

from topo_models.errors import TopoError


def _check_positive(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TopoError(
            "spatial layer sizes must be positive integers",
            field=field,
            expected="an integer >= 1",
            found=value,
        )


def _initial_positions(n: int, dim: int, generator: torch.Generator | None) -> nn.Parameter:
    """(n, dim) positions i.i.d. N(0, 1), as the original; drawn from ``generator`` if given."""
    return nn.Parameter(torch.randn(n, dim, generator=generator))


class SpatialLinear(nn.Linear):
    """``nn.Linear`` with one learnable position per output neuron.

    Args:
        in_features: inputs per sample.
        out_features: output neurons; ``positions`` has this many rows.
        bias: whether the layer learns an additive bias.
        dim: dimension of the space the neurons live in (2 in the paper).
        generator: draws the initial positions (seed it for reproducible layouts); the weights
            use torch's usual initialisation under the global RNG.

    Attributes:
        positions: (out_features, dim) learnable neuron coordinates.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dim: int = 2,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_positive(in_features, "in_features")
        _check_positive(out_features, "out_features")
        _check_positive(dim, "dim")
        super().__init__(in_features, out_features, bias=bias)
        self.dim = dim
        self.positions = _initial_positions(out_features, dim, generator)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}"


class SpatialConv2d(nn.Conv2d):
    """``nn.Conv2d`` with one learnable position per output channel.

    Args:
        in_channels: input channels.
        out_channels: output channels; ``positions`` has this many rows.
        kernel_size: side of the (square) kernel, or ``(kh, kw)``.
        stride: convolution stride; ``padding="same"`` needs stride 1 (torch's rule).
        padding: ``"same"``, ``"valid"`` or an explicit integer padding.
        bias: whether the layer learns an additive bias per channel.
        dim: dimension of the space the channels live in.
        generator: draws the initial positions (see ``SpatialLinear``).

    Attributes:
        positions: (out_channels, dim) learnable channel coordinates.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        padding: str | int = "same",
        bias: bool = True,
        dim: int = 2,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_positive(in_channels, "in_channels")
        _check_positive(out_channels, "out_channels")
        _check_positive(dim, "dim")
        _check_positive(stride, "stride")
        sides = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if len(tuple(sides)) != 2:
            raise TopoError(
                "a 2-D kernel needs two sides",
                field="kernel_size",
                expected="k or (kh, kw)",
                found=kernel_size,
            )
        for side in sides:
            _check_positive(side, "kernel_size")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise TopoError(
                "unknown padding", field="padding", expected="same|valid|int", found=padding
            )
        if padding == "same" and stride != 1:
            raise TopoError(
                "'same' padding only exists for stride 1",
                field="stride",
                expected=1,
                found=stride,
            )
        super().__init__(
            in_channels, out_channels, tuple(sides), stride=stride, padding=padding, bias=bias
        )
        self.dim = dim
        self.positions = _initial_positions(out_channels, dim, generator)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}"


SPATIAL_TYPES: tuple[type[nn.Module], ...] = (SpatialLinear, SpatialConv2d)


def is_spatial(module: nn.Module) -> bool:
    """Whether ``module`` is a spatial layer (its output units have ``positions``)."""
    return isinstance(module, SPATIAL_TYPES)
