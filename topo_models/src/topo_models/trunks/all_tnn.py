"""All-TNN: six locally connected layers, each a topographic sheet (Lu et al. 2025).

The published network (Lu et al., Nature Human Behaviour 9, 2025; KietzmannLab/All-TNN) on
150-px images, valid padding:

    layer   channels (hypercolumn)   kernel, stride   then
    sheet0  64   (8 × 8)             7, 3             ReLU, norm, 2×2 max-pool
    sheet1  81   (9 × 9)             3, 1             ReLU, norm
    sheet2  81   (9 × 9)             3, 1             ReLU, norm, 2×2 max-pool
    sheet3  256  (16 × 16)           3, 1             ReLU, norm
    sheet4  256  (16 × 16)           3, 1             ReLU, norm, 2×2 max-pool
    sheet5  2500 (50 × 50)           3, 1             ReLU, norm
    flatten, linear readout to the classes (ecoset: 565)

Outputs of 48, 22, 20, 8, 6 and 1 positions a side. ``width`` scales each hypercolumn side
(rounded half up, at least 1), so channels stay perfect squares; ``padding="same"`` adds kernel // 2
zeros on each side, which keeps a 64-px input alive through the six layers (with valid
padding the smallest input is 148 px). The default is the CPU scale: 64 px, width 0.5, same
padding (channels 16, 25, 25, 64, 64, 625; outputs 22, 11, 11, 5, 5, 2 a side);
``all_tnn(input_size=150, width=1.0, padding="valid", num_classes=565)`` is the published one.

The released models have one normalisation layer per block, after the ReLU (the original's
default order); which kind is not recorded here, so topo uses a LayerNorm over the channels of
each position (Keras' ``LayerNormalization`` with its default axis and epsilon 1e-3).
``norm="none"`` drops it (the original's default hyper-parameter).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.neighbour_cosine import hypercolumn_side
from topo_models.positions import LayerPositions, NetworkPositions, precompute_neighborhoods
from topo_models.registry import register_model
from topo_models.trunks.locally_connected import LocallyConnected2d

# (hypercolumn side, kernel, stride, 2×2 max-pool after) of the six published layers.
PUBLISHED_LAYERS: tuple[tuple[int, int, int, bool], ...] = (
    (8, 7, 3, True),
    (9, 3, 1, False),
    (9, 3, 1, True),
    (16, 3, 1, False),
    (16, 3, 1, True),
    (50, 3, 1, False),
)
SHEET_NAMES: tuple[str, ...] = tuple(f"sheet{index}" for index in range(len(PUBLISHED_LAYERS)))
LAYER_NORM_EPS = 1e-3  # Keras' LayerNormalization default

Padding = Literal["valid", "same"]
Norm = Literal["layer", "none"]


def scaled_side(side: int, width: float) -> int:
    """A hypercolumn side scaled by ``width``, rounded half up, at least 1."""
    return max(1, math.floor(side * width + 0.5))


def zip_layers() -> zip:
    """(name, (side, kernel, stride, pool)) of the six published layers."""
    return zip(SHEET_NAMES, PUBLISHED_LAYERS, strict=True)


def _layer_sizes(input_size: int, padding: Padding) -> list[int]:
    """Output side of each layer (before its pooling); stops at the first empty one."""
    sizes, size = [], input_size
    for _side, kernel, stride, pool in PUBLISHED_LAYERS:
        pad = kernel // 2 if padding == "same" else 0
        out = (size + 2 * pad - kernel) // stride + 1
        sizes.append(out)
        if out < (2 if pool else 1):
            break
        size = out // 2 if pool else out
    return sizes


def smallest_input(padding: Padding) -> int:
    """The smallest input side (px) that leaves every layer at least one position."""
    size = 1
    while len(sizes := _layer_sizes(size, padding)) < len(PUBLISHED_LAYERS) or sizes[-1] < 1:
        size += 1
    return size


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels at each position of (batch, C, H, W) maps."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class AllTNN(nn.Module):
    """The All-TNN trunk with a linear readout; see the module docstring for the layout.

    ``forward`` returns ``(logits, features)``: ``features`` maps ``sheet0 … sheet5`` (also the
    locally connected modules' names, for ``NeighbourCosineLoss``) to each layer's output after
    ReLU and norm, before pooling, (batch, K, out_h, out_w).

    Args:
        num_classes: outputs of the readout.
        input_size: side of the square RGB input, px.
        width: scale of every hypercolumn side (1.0: the published 8, 9, 9, 16, 16, 50).
        padding: ``"valid"`` (published) or ``"same"`` (kernel // 2 zeros each side).
        norm: ``"layer"`` (per-position LayerNorm over channels) or ``"none"``.
        bias: units have biases (published: yes; the bias is part of each unit's loss vector).
    """

    def __init__(
        self,
        num_classes: int = 565,
        input_size: int = 64,
        width: float = 0.5,
        padding: Padding = "same",
        norm: Norm = "layer",
        bias: bool = True,
    ) -> None:
        super().__init__()
        for field, value in (("num_classes", num_classes), ("input_size", input_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TopoError(f"bad {field}", field=field, expected="an int >= 1", found=value)
        is_real = isinstance(width, (int, float)) and not isinstance(width, bool)
        if not (is_real and math.isfinite(width) and width > 0):
            raise TopoError("bad width", field="width", expected="a number > 0", found=width)
        if padding not in ("valid", "same"):
            raise TopoError("bad padding", field="padding", expected="valid|same", found=padding)
        if norm not in ("layer", "none"):
            raise TopoError("bad norm", field="norm", expected="layer|none", found=norm)
        sizes = _layer_sizes(input_size, padding)
        if len(sizes) < len(PUBLISHED_LAYERS) or sizes[-1] < 1:
            name, pool = SHEET_NAMES[len(sizes) - 1], PUBLISHED_LAYERS[len(sizes) - 1][3]
            raise TopoError(
                f"the input is too small for layer {name!r}",
                field="input_size",
                expected=f"input_size >= {smallest_input(padding)} with padding {padding!r}",
                found=f"input_size {input_size} leaves {name} {sizes[-1]} positions a side"
                + (" (its 2x2 max-pool needs 2)" if pool else ""),
            )
        self.input_size = input_size
        self.sides = {name: scaled_side(spec[0], width) for name, spec in zip_layers()}
        self.pool_after = {name for name, spec in zip_layers() if spec[3]}
        size, channels = input_size, 3
        layers = zip(zip_layers(), sizes, strict=True)
        for index, ((name, (_side, kernel, stride, pool)), out) in enumerate(layers):
            units = self.sides[name] ** 2
            pad = kernel // 2 if padding == "same" else 0
            self.add_module(
                name, LocallyConnected2d(channels, units, size, kernel, stride, pad, bias)
            )
            self.add_module(
                f"norm{index}", ChannelLayerNorm(units) if norm == "layer" else nn.Identity()
            )
            size, channels = (out // 2 if pool else out), units
        self.readout = nn.Linear(channels * size * size, num_classes)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return SHEET_NAMES

    def sheets(self) -> dict[str, LocallyConnected2d]:
        """The six locally connected layers by name, in network order."""
        return {name: getattr(self, name) for name in SHEET_NAMES}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (batch, 3, input_size, input_size) → (logits, {sheet name: (batch, K, h, w)})."""
        expected = (3, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise TopoError(
                "AllTNN got an input of the wrong shape: its first layer has one kernel per "
                "output position, for one input size only",
                field="sheet0 input shape",
                expected=f"(batch, {expected[0]}, {expected[1]}, {expected[2]})",
                found=tuple(x.shape),
            )
        features: dict[str, torch.Tensor] = {}
        h = x
        for index, name in enumerate(SHEET_NAMES):
            h = getattr(self, f"norm{index}")(F.relu(getattr(self, name)(h)))
            features[name] = h
            if name in self.pool_after:
                h = F.max_pool2d(h, 2)
        return self.readout(torch.flatten(h, 1)), features

    def sheet_coordinates(self) -> dict[str, np.ndarray]:
        """Each layer's (K·out_h·out_w, 2) sheet coordinates (x = column, y = row), in grid steps.

        Rows are in ``torch.flatten(features[name], 1)`` order (channel-major): unit (c, i, j)
        sits at column j·√K + c % √K, row i·√K + c // √K, the tiling ``hypercolumn_sheet``
        gives the loss, so a unit's position is where its weights are compared.
        """
        coordinates = {}
        for name, layer in self.sheets().items():
            side = hypercolumn_side(layer.out_channels, name)
            channel, row, column = np.meshgrid(
                np.arange(layer.out_channels),
                np.arange(layer.output_size[0]),
                np.arange(layer.output_size[1]),
                indexing="ij",
            )
            x = column * side + channel % side
            y = row * side + channel // side
            coordinates[name] = np.stack([x.reshape(-1), y.reshape(-1)], axis=1).astype(np.float32)
        return coordinates

    def sheet_positions(
        self,
        neighborhood_width: float | None = None,
        n_neighborhoods: int = 1000,
        seed: int = 0,
    ) -> NetworkPositions:
        """``NetworkPositions`` of the six sheets, for the topography analyses.

        Coordinates are ``sheet_coordinates`` (grid steps, not mm: the scale label stays unset,
        as for spatial networks). Neighbourhoods are TDANN-style square windows of
        ``neighborhood_width`` grid steps (default: two hypercolumns, at least 8 steps).
        """
        layers = {}
        for index, (name, coords) in enumerate(self.sheet_coordinates().items()):
            layer = getattr(self, name)
            width = neighborhood_width
            if width is None:
                width = max(2.0 * self.sides[name], 8.0)
            indices = precompute_neighborhoods(coords, width, n_neighborhoods, seed + index)
            dims = (layer.out_channels, *layer.output_size)
            layers[name] = LayerPositions(name, dims, coords, indices, width)
        return NetworkPositions(layers)


@register_model("all_tnn", "topo_models.trunks.all_tnn.AllTNN")
def all_tnn(
    num_classes: int = 565,
    input_size: int = 64,
    width: float = 0.5,
    padding: Padding = "same",
    norm: Norm = "layer",
    bias: bool = True,
) -> AllTNN:
    """All-TNN's six locally connected sheets and readout (default: the 64-px CPU scale)."""
    return AllTNN(num_classes, input_size, width, padding, norm, bias)
