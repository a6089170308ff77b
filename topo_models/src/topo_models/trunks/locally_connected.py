"""A convolution without weight sharing: every output position has its own kernel and bias.

All-TNN (Lu et al. 2025, Nature Human Behaviour) builds its sheets from such layers (Keras'
``LocallyConnected2D``): with no shared kernel, neighbouring units can differ or agree, and a
smoothness loss on their weights makes the topography. The forward unfolds the input into the
patch of every output position (one strided view, one copy) and takes one batched product over
positions: no loop over positions. (``F.unfold`` would give the patches as (batch, in·kh·kw,
positions), which needs a second, transposing copy before the product.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from topo_models.errors import TopoError

Pair = int | tuple[int, int]


def _pair(value: Pair, field: str, least: int) -> tuple[int, int]:
    """``value`` as (rows, columns), each an integer >= ``least``."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= least for v in pair
    ):
        raise TopoError(
            f"bad {field}", field=field, expected=f"an int >= {least} or a pair", found=value
        )
    return pair  # type: ignore[return-value]


def output_size(
    input_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int]:
    """(rows, columns) of the output, as Conv2d computes them (may be < 1 for a too small input)."""
    return tuple(  # type: ignore[return-value]
        (size + 2 * pad - kernel) // step + 1
        for size, kernel, step, pad in zip(input_size, kernel_size, stride, padding, strict=True)
    )


def patch_index(
    padded_size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    positions: tuple[int, int],
) -> torch.Tensor:
    """(positions · kh · kw,) flat index, into the padded input's H · W grid, of every patch
    element, in the patches' order (position-major, then kernel row, then kernel column)."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel_size, stride, positions
    i, j, dh, dw = torch.meshgrid(
        torch.arange(out_h), torch.arange(out_w), torch.arange(kh), torch.arange(kw), indexing="ij"
    )
    return ((i * sh + dh) * padded_size[1] + (j * sw + dw)).flatten()


class _Patches(torch.autograd.Function):
    """Every output position's input patch, (positions, batch, kh·kw·in), from channels-last
    rows (batch, H, W, in) (padding included).

    Forward: one strided view, one copy. Backward: every patch element's gradient added to its
    input pixel in one ``index_add_`` over ``index`` (:func:`patch_index`); autograd's own
    backward of the strided view is 2-3 times slower on CPU, and adding one kernel offset at a
    time (kh · kw strided adds) 1.1-3 times slower.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        rows: torch.Tensor,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        positions: tuple[int, int],
        index: torch.Tensor,
    ) -> torch.Tensor:
        (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, positions
        ctx.rows_shape = rows.shape
        ctx.save_for_backward(index)
        patches = rows.unfold(1, kh, sh).unfold(2, kw, sw)  # (batch, out_h, out_w, in, kh, kw)
        patches = patches.permute(1, 2, 0, 4, 5, 3)  # (out_h, out_w, batch, kh, kw, in)
        return patches.reshape(out_h * out_w, rows.shape[0], -1)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None, None]:
        batch, height, width, channels = ctx.rows_shape
        (index,) = ctx.saved_tensors
        # (positions · kh · kw, in · batch): one row per patch element, as index lists them.
        # The product's gradient arrives as a transposed view of a (positions, kh·kw·in, batch)
        # tensor, so in that layout the rows are a view, not a copy.
        source = grad.transpose(1, 2).reshape(-1, channels * batch)
        summed = grad.new_zeros(height * width, channels * batch).index_add_(0, index, source)
        rows = summed.view(height, width, channels, batch).permute(3, 0, 1, 2)
        return rows, None, None, None, None


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous in one copy.

    The gradient reaching the batched product is a permuted view of the output's; CPU ``bmm``
    would copy it one position at a time (484 small copies for All-TNN's first layer at 64 px).
    """

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class LocallyConnected2d(nn.Module):
    """Conv2d-like layer with a separate kernel and bias at each output position.

    Weight layout: ``weight`` is (out_h, out_w, out_channels, kh, kw, in_channels): ``weight[i,
    j, o]`` is the kernel of unit o at output position (i, j), channels last as in Keras (the
    Conv2d-shaped kernel of a position is ``weight[i, j].permute(0, 3, 1, 2)``). ``bias`` is
    (out_channels, out_h, out_w), the layout of one output map. Each position is initialised as
    torch initialises a Conv2d (uniform ±1/√fan_in, fan_in = in_channels·kh·kw).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (units per position).
        input_size: (H, W) of the input; the layer only takes this size, since it owns one
            kernel per output position.
        kernel_size: kernel side, or (kh, kw).
        stride: step between positions, or (rows, columns).
        padding: zeros added on each side, or (rows, columns).
        bias: whether each unit has a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: Pair,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for field, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TopoError(f"bad {field}", field=field, expected="an int >= 1", found=value)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size = _pair(input_size, "input_size", 1)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.output_size = output_size(self.input_size, self.kernel_size, self.stride, self.padding)
        if min(self.output_size) < 1:
            raise TopoError(
                "the input is smaller than the kernel: no output position",
                field="input_size",
                expected=f"an input that fits kernel {self.kernel_size} with padding "
                f"{self.padding}",
                found=f"input {self.input_size} -> output {self.output_size}",
            )
        out_h, out_w = self.output_size
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_h, out_w, out_channels, kh, kw, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels, out_h, out_w)) if bias else None
        padded = tuple(
            size + 2 * pad for size, pad in zip(self.input_size, self.padding, strict=True)
        )
        self.register_buffer(
            "patch_index",
            patch_index(padded, self.kernel_size, self.stride, self.output_size),
            persistent=False,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Conv2d's default init at every position: weights and bias uniform ±1/√fan_in."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"output_size={self.output_size}, bias={self.bias is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in_channels, H, W) → (batch, out_channels, out_h, out_w)."""
        expected = (self.in_channels, *self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise TopoError(
                "LocallyConnected2d got an input of the wrong shape",
                field="input shape",
                expected=f"(batch, {expected[0]}, {expected[1]}, {expected[2]})",
                found=tuple(x.shape),
            )
        (ph, pw), (out_h, out_w), batch = self.padding, self.output_size, x.shape[0]
        # Channels last, so that a kernel row (kw × in values) is one contiguous run: gathering
        # the patches is then several times faster than from (batch, in, H, W) or F.unfold.
        rows = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph)).contiguous()
        patches = _Patches.apply(
            rows, self.kernel_size, self.stride, self.output_size, self.patch_index
        )
        kernels = self.weight.reshape(out_h * out_w, self.out_channels, -1)
        # (positions, out, batch): the weight's gradient then comes out in its own layout.
        out = _ContiguousGrad.apply(torch.bmm(kernels, patches.transpose(1, 2)))
        out = out.permute(2, 1, 0).reshape(batch, self.out_channels, out_h, out_w)
        return out if self.bias is None else out + self.bias
