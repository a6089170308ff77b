"""Stand-alone local self-attention, a drop-in for a k×k convolution.

Ramachandran et al. 2019, "Stand-Alone Self-Attention in Vision Models" (NeurIPS), eq. 2–3: each
output pixel is a softmax-weighted sum of the values in its k×k neighbourhood, with logits
q·(k + r) where r is a learned relative-position embedding, half its channels indexed by the
row offset and half by the column offset. Heads (``groups``) split the channels and each sums
its own q·k. Padded positions are masked out of the softmax, so borders attend only to real
pixels. Parameter names follow neuralpredictors 0.3.0 (``rel_h``, ``rel_w``, ``key_conv``,
``query_conv``, ``value_conv``), whose version computes the softmax per channel instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from topo_models.errors import TopoError


class AttentionConv2d(nn.Module):
    """Local multi-head self-attention over k×k windows.

    Args:
        in_channels: input channels.
        out_channels: output channels (even, divisible by ``groups``).
        kernel_size: window size k.
        stride: window step; queries sit at the window centres.
        padding: zeros around the input, at most (k − 1) // 2 so every window centre (the query)
            is a real pixel; (k − 1) // 2 keeps the size for odd k and stride 1.
        groups: attention heads.
        bias: bias of the 1×1 query/key/value projections.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if out_channels % 2 or out_channels % groups:
            raise TopoError(
                "attention channels must be even and divisible by the number of heads",
                field="out_channels",
                expected=f"a multiple of 2 and of groups={groups}",
                found=out_channels,
            )
        if not 0 <= padding <= (kernel_size - 1) // 2:
            raise TopoError(
                "attention padding would put a window centre (the query) outside the image",
                field="padding",
                expected=f"0 … {(kernel_size - 1) // 2}",
                found=padding,
            )
        if stride < 1:
            raise TopoError("bad attention stride", field="stride", expected=">= 1", found=stride)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.groups = groups
        half = out_channels // 2
        self.rel_h = nn.Parameter(torch.randn(half, 1, 1, kernel_size, 1))
        self.rel_w = nn.Parameter(torch.randn(half, 1, 1, 1, kernel_size))
        self.key_conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.query_conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.value_conv = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        for conv in (self.key_conv, self.query_conv, self.value_conv):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H', W', k·k) neighbourhoods of the zero-padded input."""
        k, s, p = self.kernel_size, self.stride, self.padding
        padded = F.pad(x, (p, p, p, p))
        win = padded.unfold(2, k, s).unfold(3, k, s)
        return win.reshape(*win.shape[:4], k * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in, h, w) → (batch, out, (h + 2p − k)//s + 1, (w + 2p − k)//s + 1)."""
        batch, _, height, width = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        if height + 2 * p < k or width + 2 * p < k:
            raise TopoError(
                "input smaller than the attention window",
                field="input",
                expected=f">= {k - 2 * p} pixels per side",
                found=(height, width),
            )
        out_h, out_w = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
        start = k // 2 - p
        query = self.query_conv(x)[:, :, start::s, start::s][:, :, :out_h, :out_w]
        # Padded window slots hold zeros here and are masked out of the softmax below.
        keys = self._windows(self.key_conv(x))
        values = self._windows(self.value_conv(x))
        half = self.out_channels // 2
        rel = torch.cat(
            [
                self.rel_h.expand(half, 1, 1, k, k).reshape(half, 1, 1, k * k),
                self.rel_w.expand(half, 1, 1, k, k).reshape(half, 1, 1, k * k),
            ]
        )
        heads, per_head = self.groups, self.out_channels // self.groups
        shape = (batch, heads, per_head, out_h, out_w)
        logits = torch.einsum(
            "bgchw,bgchwn->bghwn",
            query.reshape(shape),
            (keys + rel).reshape(*shape, k * k),
        )
        valid = self._windows(x.new_ones(1, 1, height, width)) > 0  # (1, 1, H', W', k·k)
        logits = logits.masked_fill(~valid, float("-inf"))
        attention = logits.softmax(dim=-1)
        out = torch.einsum("bghwn,bgchwn->bgchw", attention, values.reshape(*shape, k * k))
        return out.reshape(batch, self.out_channels, out_h, out_w)

    @property
    def weight(self) -> torch.Tensor:
        """The stacked key, value and query projection weights (3·out, in, 1, 1)."""
        return torch.cat([self.key_conv.weight, self.value_conv.weight, self.query_conv.weight])
