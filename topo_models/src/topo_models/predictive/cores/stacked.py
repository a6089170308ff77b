"""The Sensorium 2022 baseline core: a stack of convolution → batch norm → ELU layers.

Re-implements neuralpredictors 0.3.0 ``Stacked2dCore`` with every
argument and default, and with the same module tree, so its state dicts (and the published
checkpoints) load unchanged: ``features.layer{i}.{conv | ds_conv.* | attention_conv.*}``,
``features.layer{i}.{norm, bias, scale}``, ``_input_weights_regularizer.laplace.filter``.

Differences from 0.3.0, all where 0.3.0 would crash or mislead: "same" hidden padding is
computed per layer (0.3.0 reuses the first hidden kernel's), ``outchannels`` counts the stacked
layers only, arguments are checked, and the ELU is not in-place (``features`` keeps every layer).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.cores.attention import AttentionConv2d
from topo_models.predictive.cores.common import (
    AdaptiveELU,
    StackedCoreBase,
    check_elu_shift,
    check_int,
    check_momentum,
    init_conv,
    norm_modules,
    per_hidden_layer,
    resolve_stack,
)
from topo_models.predictive.regularizers import INPUT_REGULARIZERS


class DepthSeparableConv2d(nn.Sequential):
    """1×1 channel mixing → k×k depthwise spatial filter → 1×1 channel mixing.

    The MobileNet factorisation used by the Sensorium CNN's hidden layers: C² + C·k² + C²
    weights instead of C²·k². Children ``in_depth_conv``, ``spatial_conv`` (groups = out
    channels) and ``out_depth_conv`` all carry a bias when ``bias`` is set, as in 0.3.0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.add_module("in_depth_conv", nn.Conv2d(in_channels, out_channels, 1, bias=bias))
        self.add_module(
            "spatial_conv",
            nn.Conv2d(
                out_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=out_channels,
                bias=bias,
            ),
        )
        self.add_module("out_depth_conv", nn.Conv2d(out_channels, out_channels, 1, bias=bias))


class Stacked2dCore(StackedCoreBase):
    """Convolutional core of the Sensorium baseline (neuralpredictors 0.3.0 semantics).

    Layer 0 is a plain ``input_kern`` convolution (no stride; padding ``input_kern // 2`` if
    ``pad_input``; a bias only without batch norm). Layers 1… use ``hidden_kern`` with a plain,
    depth-separable (``depth_separable``) or self-attention (``attention_conv``) layer, with a
    bias when ``bias`` is set. Each layer is followed by batch norm (see ``norm_modules`` for how
    ``bias``, ``batch_norm_scale`` and ``independent_bn_bias`` interact) and an AdaptiveELU;
    the last layer's ELU only when ``final_nonlinearity``; none at all when ``linear``.

    Args:
        input_channels: image channels (1; 4 with behaviour planes).
        hidden_channels: channels of every layer.
        input_kern: first-layer kernel size.
        hidden_kern: hidden kernel size, or one per hidden layer.
        layers: number of layers, including the first.
        gamma_hidden: weight of the hidden group-sparsity penalty (plain convs only).
        gamma_input: weight of the first-layer Laplace penalty.
        skip: if > 1, layer l reads the concatenation of the last min(skip, l) outputs.
        stride: stride of the hidden layers.
        final_nonlinearity: ELU after the last layer too.
        elu_shift: (xshift, yshift) of ELU(x − xshift) + yshift.
        bias: bias in hidden convs / bias layers (see above).
        momentum: batch-norm momentum (PyTorch convention: weight of the new batch).
        pad_input: pad the first convolution to keep the image size.
        hidden_padding: hidden padding, int or one per hidden layer; None = "same"
            (((k − 1)·dilation + 1) // 2).
        batch_norm: add batch norm after every convolution.
        batch_norm_scale: learn a scale after batch norm (with ``independent_bn_bias=False``).
        independent_bn_bias: 0.3.0 default: batch norm always affine.
        hidden_dilation: dilation of the hidden convolutions.
        laplace_padding: padding of the Laplace penalty (None = half the stencil).
        input_regularizer: "LaplaceL2", "LaplaceL2norm", "LaplaceL1" or "GaussianLaplaceL2".
        stack: layers in the output: None = all, int s = ``range(layers)[s:]``, or a list.
        use_avg_reg: average (True) or sum (False) inside the Laplace penalty.
        depth_separable: hidden layers are DepthSeparableConv2d (named ``ds_conv``).
        attention_conv: hidden layers are AttentionConv2d (named ``attention_conv``).
        linear: no nonlinearity anywhere (batch norm stays): an LN model's core.
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
        bias: bool = True,
        momentum: float = 0.1,
        pad_input: bool = True,
        hidden_padding: int | Sequence[int] | None = None,
        batch_norm: bool = True,
        batch_norm_scale: bool = True,
        independent_bn_bias: bool = True,
        hidden_dilation: int = 1,
        laplace_padding: int | None = 0,
        input_regularizer: str = "LaplaceL2",
        stack: int | Sequence[int] | None = None,
        use_avg_reg: bool = True,
        depth_separable: bool = False,
        attention_conv: bool = False,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.input_channels = check_int("input_channels", input_channels, 1)
        self.hidden_channels = check_int("hidden_channels", hidden_channels, 1)
        self.input_kern = check_int("input_kern", input_kern, 1)
        self.num_layers = check_int("layers", layers, 1)
        self.hidden_kern = per_hidden_layer("hidden_kern", hidden_kern, layers, 1)
        self.hidden_dilation = check_int("hidden_dilation", hidden_dilation, 1)
        if hidden_padding is None:
            self.hidden_padding = [((k - 1) * hidden_dilation + 1) // 2 for k in self.hidden_kern]
        else:
            self.hidden_padding = per_hidden_layer("hidden_padding", hidden_padding, layers, 0)
        self.skip = check_int("skip", skip, 0)
        self.stride = check_int("stride", stride, 1)
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
        if depth_separable and attention_conv:
            raise TopoError(
                "a hidden layer is either depth-separable or attention, not both",
                field="depth_separable, attention_conv",
                found=(depth_separable, attention_conv),
            )
        if attention_conv and hidden_dilation != 1:
            raise TopoError(
                "attention layers have no dilation",
                field="hidden_dilation",
                expected=1,
                found=hidden_dilation,
            )
        if stride > 1 and (self.skip > 1 or len(set(self.stack)) > 1):
            raise TopoError(
                "strided hidden layers change the size, so their outputs cannot be concatenated",
                field="stride",
                expected="stride 1, or skip <= 1 and a single stacked layer",
                found={"stride": stride, "skip": skip, "stack": self.stack},
            )
        self.final_nonlinearity = bool(final_nonlinearity)
        self.bias = bool(bias)
        self.pad_input = bool(pad_input)
        self.batch_norm = bool(batch_norm)
        self.batch_norm_scale = bool(batch_norm_scale)
        self.independent_bn_bias = bool(independent_bn_bias)
        self.laplace_padding = laplace_padding
        self.input_regularizer = input_regularizer
        self.depth_separable = bool(depth_separable)
        self.attention_conv = bool(attention_conv)
        self.linear = bool(linear)
        if depth_separable:
            self.conv_layer_name = "ds_conv"
        elif attention_conv:
            self.conv_layer_name = "attention_conv"
        else:
            self.conv_layer_name = "conv"
        self.ignore_group_sparsity = self.conv_layer_name != "conv"
        self._setup_regularization(
            gamma_input, gamma_hidden, input_regularizer, laplace_padding, input_kern, use_avg_reg
        )
        if self.ignore_group_sparsity and self.gamma_hidden > 0:
            warnings.warn(
                f"group sparsity is defined for plain hidden convolutions only; with "
                f"{self.conv_layer_name} layers gamma_hidden={gamma_hidden} has no effect",
                UserWarning,
                stacklevel=2,
            )
        self.features = nn.Sequential()
        self.features.add_module("layer0", self._first_layer())
        for index in range(1, layers):
            self.features.add_module(f"layer{index}", self._hidden_layer(index))
        self.apply(init_conv)

    def _norm_and_nonlinearity(self, index: int) -> dict[str, nn.Module]:
        modules = norm_modules(
            self.hidden_channels,
            batch_norm=self.batch_norm,
            bias=self.bias,
            batch_norm_scale=self.batch_norm_scale,
            independent_bn_bias=self.independent_bn_bias,
            momentum=self.momentum,
        )
        if not self.linear and (index < self.num_layers - 1 or self.final_nonlinearity):
            modules["nonlin"] = AdaptiveELU(self.elu_xshift, self.elu_yshift)
        return modules

    def _first_layer(self) -> nn.Sequential:
        conv = nn.Conv2d(
            self.input_channels,
            self.hidden_channels,
            self.input_kern,
            padding=self.input_kern // 2 if self.pad_input else 0,
            bias=self.bias and not self.batch_norm,
        )
        return nn.Sequential(OrderedDict(conv=conv, **self._norm_and_nonlinearity(0)))

    def _hidden_layer(self, index: int) -> nn.Sequential:
        in_channels = self.hidden_channels * (min(self.skip, index) if self.skip > 1 else 1)
        kernel, padding = self.hidden_kern[index - 1], self.hidden_padding[index - 1]
        if self.conv_layer_name == "ds_conv":
            conv: nn.Module = DepthSeparableConv2d(
                in_channels,
                self.hidden_channels,
                kernel,
                stride=self.stride,
                padding=padding,
                dilation=self.hidden_dilation,
                bias=self.bias,
            )
        elif self.conv_layer_name == "attention_conv":
            conv = AttentionConv2d(
                in_channels,
                self.hidden_channels,
                kernel,
                stride=self.stride,
                padding=padding,
                bias=self.bias,
            )
        else:
            conv = nn.Conv2d(
                in_channels,
                self.hidden_channels,
                kernel,
                stride=self.stride,
                padding=padding,
                dilation=self.hidden_dilation,
                bias=self.bias,
            )
        layer = OrderedDict([(self.conv_layer_name, conv)])
        layer.update(self._norm_and_nonlinearity(index))
        return nn.Sequential(layer)

    def input_weight(self) -> torch.Tensor:
        return self.features[0].conv.weight

    def hidden_weights(self) -> list[torch.Tensor]:
        if self.ignore_group_sparsity:
            return []
        return [layer.conv.weight for layer in self.features[1:]]

    @property
    def outchannels(self) -> int:
        """Channels of the output: hidden_channels per stacked layer."""
        return len(self.stack) * self.hidden_channels
