"""Stacked2dCore with squeeze-and-excitation channel gates on its last layers.

Hu et al. 2018, "Squeeze-and-Excitation Networks" (CVPR): a layer's output is rescaled per
channel by sigmoid(W₂ ReLU(W₁ mean_xy(x))), so the core can re-weight feature maps by global
image content. Module names follow neuralpredictors 0.3.0 (``features.layer{l}.seg_ex_block.se``
with the two Linear layers at indices 1 and 3). Unlike neuralpredictors' later releases,
``n_se_blocks > 0`` works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.cores.common import check_int
from topo_models.predictive.cores.stacked import Stacked2dCore


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) → (B, C): the spatial mean (the "squeeze")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class SqueezeExcitationBlock(nn.Module):
    """x · sigmoid(Linear(ReLU(Linear(mean_xy x)))), channels reduced by ``reduction`` inside.

    Args:
        in_ch: channels of the gated tensor.
        reduction: bottleneck factor; the hidden width is in_ch // reduction (at least 1).
    """

    def __init__(self, in_ch: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = in_ch // reduction
        if hidden < 1:
            raise TopoError(
                "squeeze-excitation bottleneck has no units",
                field="se_reduction",
                expected=f"<= {in_ch} (the channel count)",
                found=reduction,
            )
        self.se = nn.Sequential(
            GlobalAvgPool(),
            nn.Linear(in_ch, hidden),
            nn.ReLU(),
            nn.Linear(hidden, in_ch),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)[:, :, None, None]


class SE2dCore(Stacked2dCore):
    """Stacked2dCore whose last ``n_se_blocks`` hidden layers end with a squeeze-excitation gate.

    Defaults differ from Stacked2dCore as in neuralpredictors 0.3.0 (bias=False,
    laplace_padding=None, input_regularizer="LaplaceL2norm", use_avg_reg=False). The gate is
    appended after the layer's nonlinearity; layer 0 never gets one (so at most layers − 1).
    The regulariser is the Laplace term only: ``gamma_hidden`` is ignored, as in 0.3.0.

    Args:
        n_se_blocks: number of gated layers, counted from the last one.
        se_reduction: bottleneck factor of each gate.
        (all others): as Stacked2dCore.
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        input_kern: int,
        hidden_kern: int | Sequence[int],
        layers: int = 3,
        gamma_hidden: float = 0.0,
        gamma_input: float = 0.0,
        skip: int = 0,
        stride: int = 1,
        final_nonlinearity: bool = True,
        elu_shift: tuple[float, float] = (0.0, 0.0),
        bias: bool = False,
        momentum: float = 0.1,
        pad_input: bool = True,
        hidden_padding: int | Sequence[int] | None = None,
        batch_norm: bool = True,
        batch_norm_scale: bool = True,
        independent_bn_bias: bool = True,
        hidden_dilation: int = 1,
        laplace_padding: int | None = None,
        input_regularizer: str = "LaplaceL2norm",
        stack: int | Sequence[int] | None = None,
        use_avg_reg: bool = False,
        depth_separable: bool = False,
        attention_conv: bool = False,
        linear: bool = False,
        n_se_blocks: int = 0,
        se_reduction: int = 32,
    ) -> None:
        super().__init__(
            input_channels,
            hidden_channels,
            input_kern,
            hidden_kern,
            layers=layers,
            gamma_hidden=gamma_hidden,
            gamma_input=gamma_input,
            skip=skip,
            stride=stride,
            final_nonlinearity=final_nonlinearity,
            elu_shift=elu_shift,
            bias=bias,
            momentum=momentum,
            pad_input=pad_input,
            hidden_padding=hidden_padding,
            batch_norm=batch_norm,
            batch_norm_scale=batch_norm_scale,
            independent_bn_bias=independent_bn_bias,
            hidden_dilation=hidden_dilation,
            laplace_padding=laplace_padding,
            input_regularizer=input_regularizer,
            stack=stack,
            use_avg_reg=use_avg_reg,
            depth_separable=depth_separable,
            attention_conv=attention_conv,
            linear=linear,
        )
        self.n_se_blocks = check_int("n_se_blocks", n_se_blocks, 0)
        self.se_reduction = check_int("se_reduction", se_reduction, 1)
        if n_se_blocks > layers - 1:
            raise TopoError(
                "more squeeze-excitation blocks than hidden layers",
                field="n_se_blocks",
                expected=f"0 … {layers - 1}",
                found=n_se_blocks,
            )
        for index in range(layers - n_se_blocks, layers):
            self.features[index].add_module(
                "seg_ex_block", SqueezeExcitationBlock(hidden_channels, reduction=se_reduction)
            )

    def regularizer(self) -> torch.Tensor:
        """gamma_input · Laplace penalty (no group sparsity, as in neuralpredictors 0.3.0)."""
        return self.gamma_input * self.laplace()
