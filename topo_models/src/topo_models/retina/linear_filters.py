"""Causal spatio-temporal linear filters that stream with exact state (the L of LN models).

``video: (batch, in_channels, time, height, width) → (batch, out_channels, time, H', W')``;
conventions (causality, padding, kernel layout, non-zero init) are those of ``ln.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError

INITS = ("random", "ones")
SPATIAL_PADDINGS = ("valid", "same")
TIME_PADDINGS = ("zeros", "first_frame")


def check_choice(value: object, choices: Sequence[str], field: str) -> str:
    if value not in choices:
        raise TopoError("unknown option", field=field, expected=list(choices), found=value)
    return str(value)


def check_shape(shape: object, length: int, field: str) -> tuple[int, ...]:
    values = tuple(shape) if isinstance(shape, (tuple, list)) else ()
    if len(values) != length or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise TopoError(
            "bad kernel shape", field=field, expected=f"{length} integers >= 1", found=shape
        )
    return values


def check_count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TopoError("bad channel count", field=field, expected="integer >= 1", found=value)
    return value


def _init_weight(
    shape: tuple[int, ...], fan_in: int, init: str, generator: torch.Generator
) -> torch.Tensor:
    if init == "ones":
        return torch.full(shape, 1.0 / fan_in)
    return torch.randn(shape, generator=generator) / fan_in**0.5


def causal_conv3d(
    x: torch.Tensor, kernel: torch.Tensor, history: torch.Tensor, spatial_padding: str
) -> torch.Tensor:
    """Causal spatio-temporal filtering of one chunk, given the frames before it.

    Args:
        x: (batch, in, time, height, width) the chunk.
        kernel: (out, in, kt, kh, kw), ``kernel[:, :, lag]`` weights frame ``t − lag``.
        history: (batch, in, kt − 1, height, width) the frames just before ``x``.
        spatial_padding: "valid" or "same" (replicate).

    Returns:
        (batch, out, time, H', W').
    """
    kh, kw = kernel.shape[-2:]
    padded = torch.cat([history.to(x), x], dim=2)
    if spatial_padding == "same":
        pad = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2, 0, 0)
        padded = F.pad(padded, pad, mode="replicate")
    # conv3d correlates: flipping the time axis turns lag-indexed taps into a causal filter
    if spatial_padding == "valid" and tuple(padded.shape[-2:]) == (kh, kw):
        return _whole_frame_conv(padded, kernel.flip(2))
    return F.conv3d(padded, kernel.flip(2))


def _whole_frame_conv(padded: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """``conv3d`` for a kernel as large as the frame (one cell per channel), as a ``conv1d``.

    With nothing to slide over in space, every pixel is a channel of a 1-D convolution in time;
    CPU conv3d is several times slower on this shape. Returns (batch, out, time, 1, 1).
    """
    batch, channels, steps = padded.shape[:3]
    signal = padded.permute(0, 1, 3, 4, 2).reshape(batch, -1, steps)
    weight = flipped.permute(0, 1, 3, 4, 2).reshape(flipped.shape[0], -1, flipped.shape[2])
    return F.conv1d(signal, weight)[..., None, None]


class StreamingModule(nn.Module):
    """``reset()`` and chunked ``run()`` for modules whose state lives in streaming filters."""

    def reset(self) -> None:
        """Forget all carried frames; the next call starts a new movie."""
        for module in self.children():
            if isinstance(module, StreamingModule):
                module.reset()

    def run(self, video: torch.Tensor, chunk: int = 100) -> torch.Tensor:
        """Stream ``video`` ``chunk`` frames at a time (continuing the current movie).

        Equals one call on the whole video (to float rounding); gradients do not cross chunks.
        """
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise TopoError(
                "chunk is a number of frames", field="chunk", expected=">= 1", found=chunk
            )
        if not isinstance(video, torch.Tensor) or video.dim() != 5:
            raise TopoError(
                "LN models take a 5-D video",
                field="video",
                expected="(batch, channels, time, height, width)",
                found=tuple(video.shape) if isinstance(video, torch.Tensor) else type(video),
            )
        return torch.cat([self(part) for part in torch.split(video, chunk, dim=2)], dim=2)


class StreamingFilter(StreamingModule, metaclass=abc.ABCMeta):
    """Causal filter state and checks; subclasses define ``kernel()``."""

    def __init__(
        self,
        kernel_shape: Sequence[int],
        in_channels: int,
        out_channels: int,
        spatial_padding: str,
        time_padding: str,
        init: str,
    ) -> None:
        super().__init__()
        self.kernel_shape = check_shape(kernel_shape, 3, "kernel_shape")
        self.in_channels = check_count(in_channels, "in_channels")
        self.out_channels = check_count(out_channels, "out_channels")
        self.spatial_padding = check_choice(spatial_padding, SPATIAL_PADDINGS, "spatial_padding")
        self.time_padding = check_choice(time_padding, TIME_PADDINGS, "time_padding")
        self.init = check_choice(init, INITS, "init")
        self._history: torch.Tensor | None = None

    @abc.abstractmethod
    def kernel(self) -> torch.Tensor:
        """(out, in, kt, kh, kw) the full spatio-temporal kernel."""

    def reset(self) -> None:
        """Forget the carried frames; the next call starts a new movie."""
        self._history = None

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or not torch.is_floating_point(x):
            raise TopoError(
                "LN models take a floating-point 5-D video",
                field="video",
                expected="(batch, channels, time, height, width) float tensor",
                found=tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__,
            )
        _, kh, kw = self.kernel_shape
        if x.shape[1] != self.in_channels:
            raise TopoError(
                "video channels do not match the filter",
                field="video",
                expected=f"{self.in_channels} channels",
                found=tuple(x.shape),
            )
        if self.spatial_padding == "valid" and (x.shape[3] < kh or x.shape[4] < kw):
            raise TopoError(
                "the frame is smaller than the kernel",
                field="video",
                expected=f"height >= {kh}, width >= {kw}",
                found=tuple(x.shape),
            )
        if self._history is not None and (
            self._history.shape[:2] != x.shape[:2] or self._history.shape[3:] != x.shape[3:]
        ):
            raise TopoError(
                "the carried frames do not fit this chunk; call reset() before a new movie size",
                field="video",
                expected=tuple(self._history.shape),
                found=tuple(x.shape),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in, time, height, width) → (batch, out, time, H', W'); continues the movie."""
        self._check(x)
        kt = self.kernel_shape[0]
        history = self._history
        if history is None:
            frame_shape = (x.shape[0], x.shape[1], kt - 1, *x.shape[3:])
            if self.time_padding == "first_frame" and x.shape[2] > 0:
                history = x[:, :, :1].detach().expand(frame_shape)
            else:
                history = x.new_zeros(frame_shape)
        y = causal_conv3d(x, self.kernel(), history, self.spatial_padding)
        # gradients do not cross chunks (as in Retina.run)
        self._history = torch.cat([history.to(x), x.detach()], dim=2)[:, :, x.shape[2] :]
        return y


class LinearFilter3d(StreamingFilter):
    """A full causal spatio-temporal kernel ``(out, in, kt, kh, kw)``; ``weight`` is learnable.

    Args:
        kernel_shape: (kt, kh, kw) in steps and pixels.
        in_channels, out_channels: video channels in and filtered maps out.
        spatial_padding: "valid" (per-cell, default) or "same" (replicate).
        time_padding: what precedes the first frame: "zeros" or "first_frame".
        init: "random" (seeded N(0, 1/fan_in)) or "ones" (1/fan_in each).
        seed: seed of the random init.
    """

    def __init__(
        self,
        kernel_shape: Sequence[int],
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_padding: str = "valid",
        time_padding: str = "zeros",
        init: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(
            kernel_shape, in_channels, out_channels, spatial_padding, time_padding, init
        )
        shape = (self.out_channels, self.in_channels, *self.kernel_shape)
        fan_in = self.in_channels * self.kernel_shape[0] * self.kernel_shape[1]
        fan_in *= self.kernel_shape[2]
        gen = torch.Generator().manual_seed(int(seed))
        self.weight = nn.Parameter(_init_weight(shape, fan_in, self.init, gen))

    def kernel(self) -> torch.Tensor:
        """(out, in, kt, kh, kw)."""
        return self.weight


class SeparableFilter3d(StreamingFilter):
    """A space–time separable kernel ``temporal[lag] · spatial[i, j]`` (outer product).

    ``temporal``: (out, in, kt); ``spatial``: (out, in, kh, kw); both learnable. Arguments as
    ``LinearFilter3d``; with ``init="ones"`` the full kernel is ``1/(kt·kh·kw)`` per tap.
    """

    def __init__(
        self,
        kernel_shape: Sequence[int],
        in_channels: int = 1,
        out_channels: int = 1,
        spatial_padding: str = "valid",
        time_padding: str = "zeros",
        init: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__(
            kernel_shape, in_channels, out_channels, spatial_padding, time_padding, init
        )
        kt, kh, kw = self.kernel_shape
        pair = (self.out_channels, self.in_channels)
        gen = torch.Generator().manual_seed(int(seed))
        self.temporal = nn.Parameter(_init_weight((*pair, kt), kt, self.init, gen))
        spatial_fan_in = self.in_channels * kh * kw
        self.spatial = nn.Parameter(_init_weight((*pair, kh, kw), spatial_fan_in, self.init, gen))

    def kernel(self) -> torch.Tensor:
        """(out, in, kt, kh, kw) = temporal ⊗ spatial."""
        return self.temporal[..., :, None, None] * self.spatial[..., None, :, :]
