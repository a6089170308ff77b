"""Pure-torch temporal and spatial filters of the retina model, in physical units.

All videos are ``(batch, channels, time, height, width)``; a filter's streaming state is the
``(batch, channels, height, width)`` frame it needs from the past, passed in and returned so that
running a movie in chunks gives the same numbers as running it at once. Time constants and σ
are tensors, so gradients reach them.

Temporal filters are first-order recursions (O(1) state; reference/retina.md §9.3), discretised
exactly for an input held constant over each step: ``τ dy/dt = x − y`` with ``x`` constant on
``(t−1, t]`` gives ``y_t = e·y_{t−1} + (1 − e)·x_t`` with ``e = exp(−dt/τ)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from topo_models.errors import TopoError


def _check_video(x: torch.Tensor) -> None:
    if x.dim() != 5:
        raise TopoError(
            "retina filters take a 5-D video",
            field="video",
            expected="(batch, channels, time, height, width)",
            found=tuple(x.shape),
        )


def initial_state(state: torch.Tensor | None, x: torch.Tensor, field: str) -> torch.Tensor:
    """The carried frame ``state`` (or zeros on the first chunk), checked against ``x``'s frames.

    Args:
        state: (batch, channels, height, width) or None.
        x: (batch, channels, time, height, width) the chunk about to be filtered.
        field: name used in the error when the shapes disagree.
    """
    frame_shape = x.shape[:2] + x.shape[3:]
    if state is None:
        return x.new_zeros(frame_shape)
    if state.shape != frame_shape:
        raise TopoError(
            "the carried state does not fit this chunk; call reset() before a new movie size",
            field=field,
            expected=tuple(frame_shape),
            found=tuple(state.shape),
        )
    return state.to(x)


def decay_factor(tau: torch.Tensor, dt: float) -> torch.Tensor:
    """Per-step decay ``exp(−dt/τ)`` of a first-order filter; ``tau`` and ``dt`` in seconds."""
    return torch.exp(-dt / tau)


def first_order_scan(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, y0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y_t = a·y_{t−1} + b·x_t`` along time, starting from ``y_{−1} = y0``.

    The loop runs over time steps only and is vectorised over batch, channels and pixels. It does
    the same floating-point operations per step whatever the chunking, so streamed runs equal
    unchunked runs bit for bit (a closed-form cumulative-product scan would not: its rounding
    depends on where the chunk starts).

    Args:
        x: (batch, channels, time, height, width).
        a, b: scalars or tensors broadcastable to one frame.
        y0: (batch, channels, height, width) state before the first step.

    Returns:
        y: like ``x``; and the last frame ``y_{T−1}`` (the state for the next chunk).
    """
    _check_video(x)
    bx = b * x
    y = y0
    frames = []
    for t in range(x.shape[2]):
        y = a * y + bx[:, :, t]
        frames.append(y)
    if not frames:
        return x.clone(), y0
    return torch.stack(frames, dim=2), y


def exp_lowpass(
    x: torch.Tensor, tau: torch.Tensor, dt: float, state: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal exponential low-pass with unit DC gain, ``τ`` in seconds.

    Impulse response to a one-frame input of height 1 at step 0: ``(1 − e)·e^k`` at step k, i.e.
    ``≈ (dt/τ)·exp(−k·dt/τ)``; the step response is exactly ``1 − exp(−(k + 1)·dt/τ)``.

    Returns:
        the filtered video and the state (last output frame) for the next chunk.
    """
    e = decay_factor(tau, dt)
    return first_order_scan(x, e, 1.0 - e, initial_state(state, x, "lowpass state"))


def exp_highpass(
    x: torch.Tensor,
    tau: torch.Tensor,
    weight: torch.Tensor,
    dt: float,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y_t = x_t − w·LP_τ(x)_{t−1}``: identity minus a w-weighted, one-step-delayed low-pass.

    This is the recursive form of the FIR ``δ − w·exponential`` used for the OPL undershoot and the
    ganglion transient (reference/retina.md §1.2, §1.5): impulse response 1 at lag 0 and
    ``−w·(1 − e)·e^{k−1}`` at lag k ≥ 1, DC gain ``1 − w``. The state is the last low-pass output,
    which already contains the chunk's last input, so the previous input is never forgotten at a
    chunk boundary (the convis high-pass forgets it, §7 #13).

    Returns:
        the filtered video and the state for the next chunk.
    """
    previous = initial_state(state, x, "highpass state")
    lowpassed, last = exp_lowpass(x, tau, dt, previous)
    delayed = torch.cat([previous.unsqueeze(2), lowpassed[:, :, :-1]], dim=2)
    return x - weight * delayed, last


def gaussian_radius(sigma_px: float, epsilon: float) -> int:
    """Largest integer r (px) with ``exp(−r²/2σ²) ≥ epsilon``: the kernel keeps ≥ ε of its peak."""
    return int(math.floor(sigma_px * math.sqrt(2.0 * math.log(1.0 / epsilon))))


def gaussian_kernel_1d(sigma_px: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Sampled Gaussian at integer offsets ``−r … r``, normalised to sum 1.

    Args:
        sigma_px: σ in pixels (scalar tensor; differentiable). σ = 0 gives ``[1]``.
        epsilon: truncation tail, relative to the peak.

    Returns:
        (2r + 1,) kernel.
    """
    sigma = sigma_px.detach().item()
    if sigma == 0.0:
        return torch.ones(1, dtype=sigma_px.dtype, device=sigma_px.device)
    radius = gaussian_radius(sigma, epsilon)
    offsets = torch.arange(-radius, radius + 1, dtype=sigma_px.dtype, device=sigma_px.device)
    weights = torch.exp(-(offsets**2) / (2.0 * sigma_px**2))
    return weights / weights.sum()


def gaussian_blur(x: torch.Tensor, sigma_px: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Separable Gaussian over the last two (height, width) dims, replicate padding, same size.

    The kernel sums to 1, so a uniform frame is unchanged (no border darkening).

    Args:
        x: (..., height, width).
        sigma_px: σ in pixels (scalar tensor).
        epsilon: truncation tail of the kernel.
    """
    return separable_blur(x, gaussian_kernel_1d(sigma_px.to(x), epsilon))


def separable_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur (..., height, width) with the odd 1-D ``kernel`` along both axes, replicate padding.

    Written as a fixed-order sum of shifted slices rather than ``conv2d``: every output pixel is
    computed by the same operations whatever the number of frames, so chunked runs stay bit-exact
    (conv2d picks batch-size-dependent algorithms whose rounding differs).
    """
    if kernel.numel() == 1:
        return x
    radius = kernel.numel() // 2
    height, width = x.shape[-2:]
    flat = x.reshape(-1, 1, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    rows = sum(kernel[k] * flat[:, :, k : k + height, :] for k in range(kernel.numel()))
    out = sum(kernel[k] * rows[:, :, :, k : k + width] for k in range(kernel.numel()))
    return out.reshape(x.shape)
