"""A stacked core of rotation-equivariant Hermite convolutions (Ecker et al. 2019, ICLR).

Same layer recipe as Stacked2dCore (convolution → batch norm → ELU, ``stack`` selects the
output) but every convolution is a HermiteConv2D, so each of the ``hidden_channels`` learned
features exists in ``num_rotations`` orientations and each stacked layer contributes
hidden_channels · num_rotations channels (rotation-major). Batch norm, bias and scale are
shared across the orientations of a feature (``rot_eq_batch_norm``), which keeps equivariance.

Fixes against neuralpredictors 0.3.0: the Laplace penalty acts on the first
layer's effective filters of all rotations, gradients reach the Hermite coefficients, and
``rot_eq_batch_norm=False`` normalises all hidden · rotations channels. Stride applies to every
layer, as in 0.3.0; there are no skip connections.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.cores.common import (
    AdaptiveELU,
    Bias2DLayer,
    Scale2DLayer,
    StackedCoreBase,
    check_elu_shift,
    check_int,
    check_momentum,
    check_nonnegative,
    norm_modules,
    per_hidden_layer,
    resolve_stack,
)
from topo_models.predictive.cores.hermite import (
    HermiteConv2D,
    RotationEquivariantBatchNorm2D,
    RotationEquivariantBias2DLayer,
    RotationEquivariantScale2DLayer,
)
from topo_models.predictive.regularizers import INPUT_REGULARIZERS


class RotationEquivariant2dCore(StackedCoreBase):
    """Rotation-equivariant stacked core.

    Args:
        input_channels: image channels.
        hidden_channels: learned features per layer (outputs are × num_rotations).
        input_kern: first-layer kernel size (odd keeps 90° rotations exact).
        hidden_kern: hidden kernel size, or one per hidden layer.
        layers: number of layers.
        gamma_hidden: weight of group sparsity on the hidden effective filters.
        gamma_input: weight of the Laplace penalty on the first layer's effective filters.
        stride: stride of every layer.
        final_nonlinearity: ELU after the last layer too.
        elu_shift: (xshift, yshift) of the ELU.
        bias, batch_norm, batch_norm_scale, independent_bn_bias, momentum: as Stacked2dCore.
        pad_input: pad the first layer by input_kern // 2.
        hidden_padding: hidden padding, int or one per hidden layer; None = k // 2.
        laplace_padding: padding of the Laplace penalty (None = half the stencil).
        input_regularizer: as Stacked2dCore; default "LaplaceL2norm".
        stack: as Stacked2dCore.
        use_avg_reg: average (True) or sum inside the Laplace penalty.
        linear: no nonlinearity anywhere.
        num_rotations: orientations per feature, equally spaced over 2π.
        upsampling: basis sampling factor.
        rot_eq_batch_norm: share batch-norm statistics and affine terms across orientations.
        init_std: standard deviation of the normal init of the Hermite coefficients.
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
        stride: int = 1,
        final_nonlinearity: bool = True,
        elu_shift: tuple[float, float] = (0.0, 0.0),
        bias: bool = True,
        momentum: float = 0.1,
        pad_input: bool = True,
        hidden_padding: int | Sequence[int] | None = None,
        batch_norm: bool = True,
        batch_norm_scale: bool = True,
        independent_bn_bias: bool = True,
        laplace_padding: int | None = 0,
        input_regularizer: str = "LaplaceL2norm",
        stack: int | Sequence[int] | None = None,
        use_avg_reg: bool = True,
        linear: bool = False,
        num_rotations: int = 8,
        upsampling: int = 2,
        rot_eq_batch_norm: bool = True,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_channels = check_int("input_channels", input_channels, 1)
        self.hidden_channels = check_int("hidden_channels", hidden_channels, 1)
        self.input_kern = check_int("input_kern", input_kern, 1)
        self.num_layers = check_int("layers", layers, 1)
        self.hidden_kern = per_hidden_layer("hidden_kern", hidden_kern, layers, 1)
        if hidden_padding is None:
            self.hidden_padding = [k // 2 for k in self.hidden_kern]
        else:
            self.hidden_padding = per_hidden_layer("hidden_padding", hidden_padding, layers, 0)
        self.stride = check_int("stride", stride, 1)
        self.num_rotations = check_int("num_rotations", num_rotations, 1)
        self.upsampling = check_int("upsampling", upsampling, 1)
        self.init_std = check_nonnegative("init_std", init_std)
        self.momentum = check_momentum(momentum)
        self.elu_xshift, self.elu_yshift = check_elu_shift(elu_shift)
        self.stack = resolve_stack(stack, layers)
        if input_regularizer not in INPUT_REGULARIZERS:
            raise TopoError(
                "unknown input regulariser",
                field="input_regularizer",
                expected=INPUT_REGULARIZERS,
                found=input_regularizer,
            )
        if stride > 1 and len(set(self.stack)) > 1:
            raise TopoError(
                "every layer is strided, so several layers cannot be stacked",
                field="stride",
                expected="stride 1, or a single stacked layer",
                found={"stride": stride, "stack": self.stack},
            )
        self.skip = 0
        self.final_nonlinearity = bool(final_nonlinearity)
        self.bias = bool(bias)
        self.pad_input = bool(pad_input)
        self.batch_norm = bool(batch_norm)
        self.batch_norm_scale = bool(batch_norm_scale)
        self.independent_bn_bias = bool(independent_bn_bias)
        self.rot_eq_batch_norm = bool(rot_eq_batch_norm)
        self.linear = bool(linear)
        self.laplace_padding = laplace_padding
        self.input_regularizer = input_regularizer
        self._setup_regularization(
            gamma_input, gamma_hidden, input_regularizer, laplace_padding, input_kern, use_avg_reg
        )
        self.features = nn.Sequential()
        for index in range(layers):
            first = index == 0
            kernel = input_kern if first else self.hidden_kern[index - 1]
            if first:
                padding = input_kern // 2 if pad_input else 0
            else:
                padding = self.hidden_padding[index - 1]
            conv = HermiteConv2D(
                input_features=input_channels if first else hidden_channels * num_rotations,
                output_features=hidden_channels,
                filter_size=kernel,
                padding=padding,
                stride=stride,
                num_rotations=num_rotations,
                upsampling=upsampling,
                first_layer=first,
            )
            nn.init.normal_(conv.coeffs, std=self.init_std)
            layer = OrderedDict(hermite_conv=conv)
            layer.update(self._norm_and_nonlinearity(index))
            self.features.add_module(f"layer{index}", nn.Sequential(layer))

    def _norm_and_nonlinearity(self, index: int) -> dict[str, nn.Module]:
        if self.rot_eq_batch_norm:
            channels = self.hidden_channels
            classes = {
                "norm_cls": partial(
                    RotationEquivariantBatchNorm2D, num_rotations=self.num_rotations
                ),
                "bias_cls": partial(
                    RotationEquivariantBias2DLayer, num_rotations=self.num_rotations
                ),
                "scale_cls": partial(
                    RotationEquivariantScale2DLayer, num_rotations=self.num_rotations
                ),
            }
        else:
            channels = self.hidden_channels * self.num_rotations
            classes = {
                "norm_cls": nn.BatchNorm2d,
                "bias_cls": Bias2DLayer,
                "scale_cls": Scale2DLayer,
            }
        modules = norm_modules(
            channels,
            batch_norm=self.batch_norm,
            bias=self.bias,
            batch_norm_scale=self.batch_norm_scale,
            independent_bn_bias=self.independent_bn_bias,
            momentum=self.momentum,
            **classes,
        )
        if not self.linear and (index < self.num_layers - 1 or self.final_nonlinearity):
            modules["nonlin"] = AdaptiveELU(self.elu_xshift, self.elu_yshift)
        return modules

    def input_weight(self) -> torch.Tensor:
        return self.features[0].hermite_conv.weights_all_rotations

    def hidden_weights(self) -> list[torch.Tensor]:
        return [layer.hermite_conv.weights_all_rotations for layer in self.features[1:]]

    @property
    def outchannels(self) -> int:
        """Channels of the output: hidden_channels · num_rotations per stacked layer."""
        return len(self.stack) * self.hidden_channels * self.num_rotations
