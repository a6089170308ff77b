"""Linear–nonlinear (LN) models of retinal cells with exact streaming state.

The convis LN family as torch modules: a causal spatio-temporal
filter, then a static nonlinearity with learnable gain and offset. Shapes:

``video: (batch, in_channels, time, height, width) → rates: (batch, out_channels, time, H', W')``

Time is causal and keeps its length: the output at step ``t`` sees frames ``t−kt+1 … t`` only;
the last ``kt−1`` input frames are carried between calls, so ``run(video, chunk)`` equals one
call for every chunk size. Before the first frame the filter sees zeros (``time_padding=
"zeros"``, the default) or copies of the first frame (``"first_frame"``, as convis does: no
onset transient on a grey background). Space is ``"valid"`` (``H' = H − kh + 1``; a kernel as large
as the stimulus gives one cell, ``H' = W' = 1``: per-cell rates) or ``"same"`` (replicate
padding, ``H' = H``: a mosaic of identical cells).

Kernel convention: ``kernel[lag, i, j]`` weights the frame ``lag`` steps in the past at offset
``(i, j)`` of the cell's window — the cell's receptive field, which is what the spike-triggered
average estimates (``estimators.py``). A cell's response to an impulse at window pixel
``(i, j)`` is ``kernel[:, i, j]`` in time.

Weights are never initialised at zero: convis's zero init with ``clamp(min=0)`` has zero
gradient and never trains. ``init="random"`` draws seeded N(0, 1/fan_in) weights;
``"ones"`` sets every tap to ``1/fan_in`` (DC gain 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError
from topo_models.registry import register_model
from topo_models.retina.linear_filters import (
    LinearFilter3d,
    SeparableFilter3d,
    StreamingFilter,
    StreamingModule,
    check_choice,
    check_count,
)

NONLINEARITIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": F.softplus,
    "exp": torch.exp,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
}
"""Static nonlinearities by name (drive → non-negative rate; sigmoid saturates at 1).

``relu`` has zero gradient where the drive is negative: give it a positive offset or a random
init, not zeros."""


class StaticNonlinearity(nn.Module):
    """``rate = f(gain · drive + offset)`` per output channel; gain starts at 1, offset at 0."""

    def __init__(self, nonlinearity: str = "softplus", channels: int = 1) -> None:
        super().__init__()
        self.name = check_choice(nonlinearity, tuple(NONLINEARITIES), "nonlinearity")
        self.gain = nn.Parameter(torch.ones(check_count(channels, "channels")))
        self.offset = nn.Parameter(torch.zeros(channels))

    def forward(self, drive: torch.Tensor) -> torch.Tensor:
        """drive: (batch, channels, time, H, W) → rates, same shape."""
        view = (1, -1, 1, 1, 1)
        return NONLINEARITIES[self.name](self.gain.view(view) * drive + self.offset.view(view))


class _LNBase(StreamingModule):
    """A streaming filter (``filter_type``) followed by a ``StaticNonlinearity``."""

    filter_type: type[StreamingFilter]

    def __init__(
        self,
        kernel_shape: Sequence[int],
        nonlinearity: str = "softplus",
        init: str = "random",
        seed: int = 0,
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_padding: str = "valid",
        time_padding: str = "zeros",
    ) -> None:
        super().__init__()
        self.filter = self.filter_type(
            kernel_shape, in_channels, out_channels, spatial_padding, time_padding, init, seed
        )
        self.nonlinearity = StaticNonlinearity(nonlinearity, self.filter.out_channels)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (batch, in, time, height, width) → rates (batch, out, time, H', W')."""
        return self.nonlinearity(self.filter(video))


class LN(_LNBase):
    """Linear filter + static nonlinearity: ``rate = f(gain · (k ⋆ video) + offset)``.

    Args:
        kernel_shape: (kt, kh, kw) in steps and pixels; kh, kw = stimulus size for one cell.
        nonlinearity: "softplus", "exp", "relu" or "sigmoid".
        init: "random" or "ones" (never zeros).
        seed: seed of the random init.
        in_channels, out_channels, spatial_padding, time_padding: as ``LinearFilter3d``.
    """

    filter_type = LinearFilter3d


class SeparableLN(_LNBase):
    """``LN`` with a space–time separable kernel (``SeparableFilter3d``); arguments as ``LN``.

    Fewer parameters (kt + kh·kw instead of kt·kh·kw per channel pair), so it fits from less
    data when the receptive field really is separable.
    """

    filter_type = SeparableFilter3d


class LNCascade(StreamingModule):
    """Two ``LN`` stages in series (convis ``LNLN``): ``rate = LN₂(LN₁(video))``.

    Stage 1 maps ``in_channels`` to ``hidden_channels`` (e.g. bipolar-like subunits), stage 2
    pools them to ``out_channels``. With ``"valid"`` padding each stage shrinks the frame by its
    kernel size minus one; the temporal lengths add (``kt₁ + kt₂ − 1`` frames of memory).

    Args:
        kernel_shapes: ((kt, kh, kw) of stage 1, (kt, kh, kw) of stage 2).
        nonlinearities: names of the two nonlinearities.
        init: "random" or "ones" for both stages.
        seed: stage 1 uses ``seed``, stage 2 ``seed + 1``.
    """

    def __init__(
        self,
        kernel_shapes: Sequence[Sequence[int]],
        nonlinearities: Sequence[str] = ("softplus", "softplus"),
        init: str = "random",
        seed: int = 0,
        in_channels: int = 1,
        hidden_channels: int = 1,
        out_channels: int = 1,
        spatial_padding: str = "valid",
        time_padding: str = "zeros",
    ) -> None:
        super().__init__()
        if len(kernel_shapes) != 2 or len(nonlinearities) != 2:
            raise TopoError(
                "an LN cascade has two stages",
                field="kernel_shapes, nonlinearities",
                expected="two of each",
                found=(kernel_shapes, nonlinearities),
            )
        common = dict(init=init, spatial_padding=spatial_padding, time_padding=time_padding)
        self.stage1 = LN(
            kernel_shapes[0],
            nonlinearities[0],
            seed=seed,
            in_channels=in_channels,
            out_channels=hidden_channels,
            **common,
        )
        self.stage2 = LN(
            kernel_shapes[1],
            nonlinearities[1],
            seed=seed + 1,
            in_channels=hidden_channels,
            out_channels=out_channels,
            **common,
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (batch, in, time, height, width) → rates (batch, out, time, H'', W'')."""
        return self.stage2(self.stage1(video))


@register_model(None, "topo_models.retina.cell_ln")  # video in, rates out: no features
def cell_ln(
    frames: int = 12,
    height: int | None = None,
    width: int | None = None,
    cells: int | None = None,
    separable: bool = False,
    nonlinearity: str = "softplus",
    init: str = "random",
    seed: int = 0,
    time_padding: str = "zeros",
) -> LN:
    """An LN model of ``cells`` recorded cells, each seeing the whole ``height × width`` stimulus.

    The config-facing constructor of ``model=retina_ln``: the kernel is ``(frames, height,
    width)`` with ``"valid"`` padding, so the output ``(batch, cells, time, 1, 1)`` holds one
    rate per cell and frame. ``height``, ``width`` and ``cells`` left None are filled from the
    data by ``topo_train`` (``model_config_values``).
    """
    for name, value in (("height", height), ("width", width), ("cells", cells)):
        if value is None:
            raise TopoError(
                f"cell_ln needs the stimulus {name}",
                field=name,
                expected="an integer (topo_train fills it from the data)",
                found=None,
            )
    model_type = SeparableLN if separable else LN
    return model_type(
        (frames, height, width),
        nonlinearity=nonlinearity,
        init=init,
        seed=seed,
        out_channels=cells,
        time_padding=time_padding,
    )


def memory_frames(model: nn.Module) -> int:
    """How many frames of input one output frame depends on (1 + the summed filter lags).

    ``LN``: kt; ``LNCascade``: kt₁ + kt₂ − 1. A fit scores a window only after this many
    frames of context, so that no scored output sees the zeros before a window's first frame.
    """
    filters = [m for m in model.modules() if isinstance(m, StreamingFilter)]
    if not filters:
        raise TopoError(
            "not a streaming LN-family model",
            field="model",
            expected="LN, SeparableLN or LNCascade",
            found=type(model).__name__,
        )
    return 1 + sum(f.kernel_shape[0] - 1 for f in filters)
