"""All-TNN's smoothness loss: neighbouring units on a sheet should have similar weights.

Lu et al. 2025 (All-Topographic Neural Networks, Nature Human Behaviour) put each locally
connected layer on one 2-D sheet: the K channels of an output position form a √K × √K block (a
"hypercolumn"), channel c at block row c // √K and column c % √K, and the blocks tile the sheet
in the order of the output positions. A unit's vector is its incoming kernel and its bias. The
loss of a layer is

    L = (1 - c) / 2,   c = (mean cos(right pairs) + mean cos(bottom pairs)) / 2,

0 when neighbours agree, 1 when they point opposite ways. Pairs wrap around the sheet's borders
by default, as in the original; without wrap only the pairs inside the sheet count (and the two
directions' means are still averaged with equal weight).

On a trunk with weight sharing (a Conv2d or Linear layer) the same loss acts on the layer's
channels: channel c at row c // w, column c % w of the most-square h × w grid (TopoLoss's
layout), its vector its flattened kernel and bias. The channels then form one small sheet
that every output position shares, which is what All-TNN's hypercolumns become once the
weights are shared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses.layer_weights import checked_layer_weights
from topo_models.losses.spatial_costs import unwrap_model
from topo_models.losses.topoloss import sheet_shape
from topo_models.positions.channel_layouts import channel_grid
from topo_models.trunks.locally_connected import LocallyConnected2d

SHEET_LAYERS = (LocallyConnected2d, nn.Conv2d, nn.Linear)


def neighbour_cosine_loss(sheet: torch.Tensor, wrap: bool = True) -> torch.Tensor:
    """(1 − mean cosine of each unit with its right and bottom neighbours) / 2.

    Args:
        sheet: (H, W, D) one D-vector per sheet unit; H, W >= 2.
        wrap: the last column's right neighbour is the first column (and likewise for rows).

    Returns:
        Scalar in [0, 1].
    """
    if sheet.dim() != 3 or sheet.shape[0] < 2 or sheet.shape[1] < 2 or sheet.shape[2] < 1:
        raise TopoError(
            "a sheet is a grid of vectors with at least 2 rows and 2 columns",
            field="sheet",
            expected="(H, W, D) with H, W >= 2 and D >= 1",
            found=tuple(sheet.shape),
        )
    unit = F.normalize(sheet, dim=-1)
    if wrap:
        right = (unit * unit.roll(-1, dims=1)).sum(-1)
        bottom = (unit * unit.roll(-1, dims=0)).sum(-1)
    else:
        right = (unit[:, :-1] * unit[:, 1:]).sum(-1)
        bottom = (unit[:-1] * unit[1:]).sum(-1)
    return (1.0 - (right.mean() + bottom.mean()) / 2.0) / 2.0


def hypercolumn_side(channels: int, name: str = "layer") -> int:
    """√channels: the side of one hypercolumn block; TopoError unless channels is a square."""
    side = math.isqrt(channels)
    if side * side != channels:
        below, above = side * side, (side + 1) ** 2
        raise TopoError(
            f"layer {name!r} cannot be tiled into square hypercolumns",
            field=f"{name}.out_channels",
            expected=f"a perfect square number of channels (e.g. {below} or {above})",
            found=channels,
        )
    return side


def hypercolumn_sheet(layer: LocallyConnected2d, name: str = "layer") -> torch.Tensor:
    """The layer's units as one sheet of weight vectors, (out_h·√K, out_w·√K, D).

    Unit (channel c, position i, j) sits at sheet row i·√K + c // √K, column j·√K + c % √K; its
    vector is its flattened kernel (kh·kw·in_channels) followed by its bias, when it has one.
    Differentiable: the loss's gradient reaches ``layer.weight`` and ``layer.bias``.
    """
    if not isinstance(layer, LocallyConnected2d):
        raise TopoError(
            f"layer {name!r} is not locally connected",
            field=name,
            expected="LocallyConnected2d",
            found=type(layer).__name__,
        )
    side = hypercolumn_side(layer.out_channels, name)
    out_h, out_w = layer.output_size
    vectors = layer.weight.reshape(out_h, out_w, layer.out_channels, -1)
    if layer.bias is not None:
        vectors = torch.cat([vectors, layer.bias.permute(1, 2, 0).unsqueeze(-1)], dim=-1)
    depth = vectors.shape[-1]
    # (i, j, block row, block column, D) → (i, block row, j, block column, D)
    blocks = vectors.reshape(out_h, out_w, side, side, depth).permute(0, 2, 1, 3, 4)
    return blocks.reshape(out_h * side, out_w * side, depth)


def channel_sheet(layer: nn.Conv2d | nn.Linear, name: str = "layer") -> torch.Tensor:
    """A weight-shared layer's channels as a sheet of [kernel, bias] vectors, (h, w, D).

    Channel c sits at row c // w, column c % w of the most-square h × w grid; a unit count
    whose only grid is a line (a prime) is refused: a line has no bottom neighbours.
    """
    weight = layer.weight
    h, w = sheet_shape(weight.shape[0])
    if h < 2:
        raise TopoError(
            f"layer {name!r} cannot be laid on a sheet of at least 2 × 2 channels",
            field=f"{name}.weight",
            expected="a channel count with a divisor between 2 and its square root",
            found=weight.shape[0],
        )
    vectors = weight.reshape(weight.shape[0], -1)
    if layer.bias is not None:
        vectors = torch.cat([vectors, layer.bias.unsqueeze(1)], dim=1)
    return vectors.reshape(h, w, -1)


def layer_sheet(layer: nn.Module, name: str = "layer") -> torch.Tensor:
    """The sheet the loss smooths: hypercolumns of a locally connected layer, else channels."""
    if isinstance(layer, LocallyConnected2d):
        return hypercolumn_sheet(layer, name)
    return channel_sheet(layer, name)  # type: ignore[arg-type]


class NeighbourCosineLoss(nn.Module):
    """Σ_l w_l · neighbour_cosine_loss(sheet of layer l) over named layers: locally connected
    ones (All-TNN's sheets), or Conv2d / Linear ones (their channel sheets).

    All-TNN's spatial term is α · Σ_l f_l · L_l (α = 10 for the main model, f_l = 1): pass
    ``layer_weights = {name: α · f_l}``. ``loss(model)`` returns ``(total, per_layer)``: the
    weighted sum for training and each layer's unweighted ``L_l``, detached, for logging.

    Args:
        layer_weights: ``{module name: weight}``; names as ``model.named_modules()`` gives them
            (the ``all_tnn`` trunk's are ``sheet0 … sheet5``), weights finite and >= 0.
        wrap: circular neighbours at the sheet borders (the original's default).
    """

    def __init__(self, layer_weights: Mapping[str, float], wrap: bool = True) -> None:
        super().__init__()
        self.layer_weights = checked_layer_weights(layer_weights, "NeighbourCosineLoss")
        self.wrap = bool(wrap)

    def extra_repr(self) -> str:
        return f"layer_weights={self.layer_weights}, wrap={self.wrap}"

    def check(self, model: nn.Module) -> dict[str, nn.Module]:
        """The named layers; TopoError if one is missing, of another kind, or has no sheet."""
        layers = self._layers(model)
        with torch.no_grad():
            for name, layer in layers.items():
                layer_sheet(layer, name)  # refuses a layer that has no sheet
        return layers

    def _layers(self, model: nn.Module) -> dict[str, nn.Module]:
        """The named layers; TopoError if one is missing or of another kind (a step's check:
        building its sheet then refuses a layer that has none, without a second copy)."""
        modules = dict(unwrap_model(model).named_modules())
        for name in self.layer_weights:
            if not isinstance(modules.get(name), SHEET_LAYERS):
                local = [n for n, m in modules.items() if isinstance(m, SHEET_LAYERS)]
                shown = local[:8] + (["…"] if len(local) > 8 else [])
                found = type(modules[name]).__name__ if name in modules else "no such module"
                raise TopoError(
                    f"layer_weights names {name!r}, which is not a locally connected, "
                    "Conv2d or Linear layer",
                    field=f"layer_weights.{name}",
                    expected=f"one of {shown}",
                    found=found,
                )
        return {name: modules[name] for name in self.layer_weights}

    def channel_positions(self, model: nn.Module) -> dict[str, np.ndarray]:
        """Where the loss puts each output channel of a weight-shared layer, in [0, 1]² (the
        grid of :func:`channel_sheet`); locally connected layers place their units
        themselves (``sheet_positions`` of the ``all_tnn`` trunk) and are left out."""
        return {
            name: channel_grid(layer.weight.shape[0])
            for name, layer in self.check(model).items()
            if not isinstance(layer, LocallyConnected2d)
        }

    def forward(self, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        modules = self._layers(model)
        total: torch.Tensor | None = None
        per_layer: dict[str, torch.Tensor] = {}
        for name, weight in self.layer_weights.items():
            value = neighbour_cosine_loss(layer_sheet(modules[name], name), self.wrap)
            total = weight * value if total is None else total + weight * value
            per_layer[name] = value.detach()
        return total, per_layer  # type: ignore[return-value]
