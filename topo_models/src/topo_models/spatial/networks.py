"""Spatial networks of Wołczyk et al. 2019: every hidden layer and the output are spatial.

Both networks follow the repo's trunk contract: ``forward(x) -> (logits, features)`` with
``features`` an ordered dict layer name → that layer's output (after the activation for hidden
layers, the raw logits for ``output``). Logits are ``labels × n_tasks`` in the (label, task)
layout of ``multitask_head``. ``spatial_layers()`` and
``predecessor()`` tell the spatial costs which layer feeds which: input pixels have no
positions, so the first layer has no predecessor and no transport cost.

All positions come from one ``torch.Generator`` seeded with ``seed``, drawn in network order, so
a seed fixes the initial layout independently of the global RNG (which initialises weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.registry import register_model
from topo_models.spatial.layers import SpatialConv2d, SpatialLinear

_SOME_ACTIVATIONS = "ReLU, Sigmoid, Tanh, GELU, ELU, LeakyReLU, SiLU, Softplus, Identity"


def make_activation(name: str) -> nn.Module:
    """A ``torch.nn`` module from its class name, case-sensitive as in the original CLI."""
    cls = getattr(nn, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TopoError(
            "unknown activation", field="activation", expected=_SOME_ACTIVATIONS, found=name
        )
    try:
        return cls()
    except TypeError as error:
        raise TopoError(
            "the activation must be a torch.nn class built without arguments",
            field="activation",
            expected=_SOME_ACTIVATIONS,
            found=name,
        ) from error


def _check_sizes(values: Sequence[int], field: str) -> tuple[int, ...]:
    sizes = tuple(values)
    if not sizes or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
        raise TopoError(
            "need at least one layer, each of positive size",
            field=field,
            expected="a non-empty sequence of integers >= 1",
            found=values,
        )
    return sizes


class _SpatialNetwork(nn.Module):
    """What both networks share: heads, input checks and the spatial-layer order."""

    def __init__(
        self, input_shape: Sequence[int], n_tasks: int, labels: int, dim: int, seed: int
    ) -> None:
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) != 3 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape
        ):
            raise TopoError(
                "input_shape is one sample's (channels, height, width)",
                field="input_shape",
                expected="three positive integers",
                found=input_shape,
            )
        for field, value in (("n_tasks", n_tasks), ("labels", labels), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TopoError(
                    "must be a positive integer", field=field, expected=">= 1", found=value
                )
        self.input_shape, self.n_tasks, self.labels, self.dim = shape, n_tasks, labels, dim
        self.seed = seed
        self._spatial_names: list[str] = []

    def _add_spatial(self, name: str, layer: nn.Module) -> None:
        self.add_module(name, layer)
        self._spatial_names.append(name)

    def spatial_layers(self) -> dict[str, nn.Module]:
        """Spatial layers in network order, ``output`` last."""
        return {name: getattr(self, name) for name in self._spatial_names}

    def predecessor(self, name: str) -> str | None:
        """The spatial layer feeding ``name`` (None for the first: pixels have no positions)."""
        if name not in self._spatial_names:
            raise TopoError(
                "not a spatial layer of this network",
                field="name",
                expected=self._spatial_names,
                found=name,
            )
        index = self._spatial_names.index(name)
        return self._spatial_names[index - 1] if index > 0 else None

    def sheet_positions(self):
        """The learned positions as ``NetworkPositions`` (see ``spatial.sheet``)."""
        from topo_models.spatial.sheet import learned_sheet_positions

        return learned_sheet_positions(self)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise TopoError(
                f"{type(self).__name__} got an input of the wrong shape",
                field="input shape",
                expected=f"(batch, {', '.join(map(str, self.input_shape))})",
                found=tuple(x.shape),
            )


@register_model("spatial_mlp", "topo_models.spatial.SpatialMLP")
class SpatialMLP(_SpatialNetwork):
    """Flatten → [SpatialLinear → activation] × L → SpatialLinear ``output``.

    Args:
        input_shape: one sample's (channels, height, width).
        n_tasks: T, the number of task heads.
        labels: classes per task; the output has ``labels * n_tasks`` logits.
        widths: hidden widths; layers ``hidden1 … hiddenL``, activations ``act1 … actL``.
        activation: a ``torch.nn`` class name (case-sensitive, e.g. ``"Sigmoid"``).
        dim: dimension of the neurons' space.
        seed: seed of the positions' generator.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        n_tasks: int = 2,
        labels: int = 10,
        widths: Sequence[int] = (128, 128, 128, 256),
        activation: str = "Sigmoid",
        dim: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(input_shape, n_tasks, labels, dim, seed)
        self.widths = _check_sizes(widths, "widths")
        make_activation(activation)  # fail before building anything
        generator = torch.Generator().manual_seed(seed)
        previous = math.prod(self.input_shape)
        self._hidden: list[tuple[str, str]] = []
        for index, width in enumerate(self.widths, start=1):
            layer, act = f"hidden{index}", f"act{index}"
            self._add_spatial(layer, SpatialLinear(previous, width, dim=dim, generator=generator))
            self.add_module(act, make_activation(activation))
            self._hidden.append((layer, act))
            previous = width
        self._add_spatial(
            "output", SpatialLinear(previous, labels * n_tasks, dim=dim, generator=generator)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, *input_shape) → (logits (B, labels * n_tasks), {layer: (B, width)})."""
        self._check_input(x)
        h = x.flatten(1)
        features: dict[str, torch.Tensor] = {}
        for layer, act in self._hidden:
            h = getattr(self, act)(getattr(self, layer)(h))
            features[layer] = h
        logits = self.output(h)
        features["output"] = logits
        return logits, features


@register_model("spatial_cnn", "topo_models.spatial.SpatialCNN")
class SpatialCNN(_SpatialNetwork):
    """[SpatialConv2d → activation → 2×2 max-pool] × L → global max-pool → SpatialLinear.

    Args:
        input_shape: one sample's (channels, height, width).
        n_tasks: T, the number of task heads.
        labels: classes per task; the output has ``labels * n_tasks`` logits.
        channels: output channels of ``conv1 … convL`` ("same" padding); activations are
            ``act1 … actL`` and pools ``pool1 …`` (a pool is skipped once a side is 1 px).
        kernel_size: side of every convolution kernel.
        activation: a ``torch.nn`` class name (case-sensitive, e.g. ``"ReLU"``).
        dim: dimension of the channels' space.
        seed: seed of the positions' generator.

    The output layer's weight is (labels × T, C_L), so its predecessor is ``convL``, whose C_L
    channel positions are the inputs the transport cost pairs it with.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        n_tasks: int = 2,
        labels: int = 10,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        activation: str = "ReLU",
        dim: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(input_shape, n_tasks, labels, dim, seed)
        self.channels = _check_sizes(channels, "channels")
        make_activation(activation)
        generator = torch.Generator().manual_seed(seed)
        previous, height, width = self.input_shape
        self._blocks: list[tuple[str, str, str | None]] = []
        for index, out in enumerate(self.channels, start=1):
            conv, act, pool = f"conv{index}", f"act{index}", f"pool{index}"
            self._add_spatial(
                conv,
                SpatialConv2d(
                    previous, out, kernel_size, padding="same", dim=dim, generator=generator
                ),
            )
            self.add_module(act, make_activation(activation))
            if height >= 2 and width >= 2:
                self.add_module(pool, nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            else:
                pool = None
            self._blocks.append((conv, act, pool))
            previous = out
        self.global_pool = nn.AdaptiveMaxPool2d(1)
        self._add_spatial(
            "output", SpatialLinear(previous, labels * n_tasks, dim=dim, generator=generator)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, *input_shape) → (logits (B, labels * T), {conv: (B, C, H', W'), output})."""
        self._check_input(x)
        h = x
        features: dict[str, torch.Tensor] = {}
        for conv, act, pool in self._blocks:
            h = getattr(self, act)(getattr(self, conv)(h))
            features[conv] = h
            if pool is not None:
                h = getattr(self, pool)(h)
        logits = self.output(self.global_pool(h).flatten(1))
        features["output"] = logits
        return logits, features
