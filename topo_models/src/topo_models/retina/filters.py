"""Pure-torch temporal and spatial filters of the retina model, in physical units.

All videos are ``(batch, channels, time, height, width)``; a filter's streaming state is the
``(batch, channels, height, width)`` frame it needs from the past, passed in and returned so that
running a movie in chunks gives the same numbers as running it at once. Time constants and σ
are tensors, so gradients reach them.

Temporal filters are first-order recursions (O(1) state), discretised
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
    depends on where the chunk starts). Without autograd the steps write into one preallocated
    output (two in-place kernels per step, no final stack); the numbers are the same.

    Args:
        x: (batch, channels, time, height, width).
        a, b: scalars or tensors broadcastable to one frame.
        y0: (batch, channels, height, width) state before the first step.

    Returns:
        y: like ``x``; and the last frame ``y_{T−1}`` (the state for the next chunk).
    """
    _check_video(x)
    if x.shape[2] == 0:
        return x.clone(), y0
    bx = b * x
    if not needs_graph(bx, a, y0):
        out = torch.empty_like(bx)
        y = y0
        for t in range(x.shape[2]):
            frame = out[:, :, t]
            torch.mul(y, a, out=frame)
            frame.add_(bx[:, :, t])
            y = frame
        return out, y.clone()
    y = y0
    frames = []
    for t in range(x.shape[2]):
        y = a * y + bx[:, :, t]
        frames.append(y)
    return torch.stack(frames, dim=2), y


def needs_graph(*tensors: object) -> bool:
    """Whether autograd must record: grad mode on and some input requires grad."""
    if not torch.is_grad_enabled():
        return False
    return any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


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
    ganglion transient: impulse response 1 at lag 0 and
    ``−w·(1 − e)·e^{k−1}`` at lag k ≥ 1, DC gain ``1 − w``. The state is the last low-pass output,
    which already contains the chunk's last input, so the previous input is never forgotten at a
    chunk boundary (the convis high-pass forgets it).

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
        x: a video (batch, channels, time, height, width) or frames (..., height, width).
        sigma_px: σ in pixels (scalar tensor).
        epsilon: truncation tail of the kernel.
    """
    return separable_blur(x, gaussian_kernel_1d(sigma_px.to(x), epsilon))


# Kernels up to this many taps are applied as sums of shifted slices (cheap for 3–5 taps); longer
# ones as two matrix products per frame.
SLICE_TAPS = 5


def separable_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Blur (..., height, width) with the odd 1-D ``kernel`` along both axes, replicate padding.

    Every frame must be blurred by the same floating-point operations whatever the chunking,
    so that streamed runs stay bit-exact; ``conv2d`` and batched matrix products both pick
    batch-size-dependent algorithms whose rounding differs. Short kernels are therefore a
    fixed-order sum of shifted slices (elementwise, so batch-independent); longer ones are two
    matrix products with the banded ``blur_operator`` matrices (``M_h @ frame @ M_wᵀ``), applied
    to one time step at a time so that every product has the same shape in every chunk.
    """
    if kernel.numel() == 1:
        return x
    kernel = kernel.to(x)
    if kernel.numel() <= SLICE_TAPS:
        return _slice_blur(x, kernel)
    height, width = x.shape[-2:]
    rows, columns = blur_operator(kernel, height), blur_operator(kernel, width)
    if x.dim() != 5:
        return blur_with(x, rows, columns)
    if needs_graph(x, kernel):
        frames = [blur_with(x[:, :, t], rows, columns) for t in range(x.shape[2])]
        return torch.stack(frames, dim=2) if frames else x.clone()
    out = torch.empty_like(x)
    for t in range(x.shape[2]):
        out[:, :, t] = blur_with(x[:, :, t], rows, columns)
    return out


def _slice_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The blur as a fixed-order sum of shifted slices of the replicate-padded frames."""
    radius = kernel.numel() // 2
    height, width = x.shape[-2:]
    flat = x.reshape(-1, 1, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    rows = sum(kernel[k] * flat[:, :, k : k + height, :] for k in range(kernel.numel()))
    out = sum(kernel[k] * rows[:, :, :, k : k + width] for k in range(kernel.numel()))
    return out.reshape(x.shape)


def blur_operator(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) matrix ``M`` with ``M @ column`` = the column blurred by the odd ``kernel``.

    Replicate padding is folded in: taps that fall off an edge add to the edge pixel, so every
    row sums to the kernel's sum. Built from constant 0/1 shift matrices weighted by the
    kernel, so gradients reach the kernel (and through it σ).
    """
    radius = kernel.numel() // 2
    rows = torch.arange(size, device=kernel.device)
    offsets = torch.arange(-radius, radius + 1, device=kernel.device)
    source = (rows[None, :] + offsets[:, None]).clamp(0, size - 1)  # (taps, size)
    shifts = F.one_hot(source, size).to(kernel.dtype)  # (taps, size, size): [tap, out, in]
    return torch.einsum("k,koi->oi", kernel, shifts)


def blur_with(x: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ columnsᵀ`` over the last two dims: a blur with prebuilt operators.

    Two ``bmm`` over the flattened leading dims, not ``matmul``: ``matmul`` folds the batch into
    one ``mm`` or not depending on whether an operand requires grad, so a no-grad warm-up and a
    run with grad would round differently. ``bmm`` picks its kernel from the shapes alone.
    """
    height, width = x.shape[-2:]
    frames = x.reshape(-1, height, width)
    n = frames.shape[0]
    out = torch.bmm(torch.bmm(rows.expand(n, -1, -1), frames), columns.mT.expand(n, -1, -1))
    return out.reshape(x.shape)
