"""Spike-triggered average and covariance: receptive fields from white-noise responses.

For a stimulus ``s (T, H, W)`` and spike counts ``n_t``, the window before step ``t`` is
``x_t[lag, i, j] = s[t − lag, i, j] − mean_t s[·, i, j]`` (lag 0 = the same step). Only steps
with a full window (``t >= lags − 1``) count. Then (Chichilnisky 2001; Schwartz et al. 2006,
J. Vision 6:484)

``STA = Σ_t n_t x_t / Σ_t n_t``  and  ``STC = Σ_t n_t (x_t − STA)(x_t − STA)ᵀ / Σ_t n_t``.

The window layout matches the LN models' ``kernel[lag, i, j]`` (``ln.py``), so an STA can be
compared with (or used to initialise) a fitted kernel directly. Everything is one ``unfold``
plus matrix products; the design matrix holds ``(T − lags + 1) · lags·H·W`` numbers, so split
very long recordings and average the sums. Sums are accumulated in float64 and returned in the
stimulus's floating dtype (float32 for integer input).
"""

from __future__ import annotations

import numpy as np
import torch

from topo_models.errors import TopoError


def _as_tensor(value: torch.Tensor | np.ndarray, field: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TopoError(
            "expected an array", field=field, expected="tensor or ndarray", found=type(value)
        )
    return value


def _windows(
    stimulus: torch.Tensor | np.ndarray, spikes: torch.Tensor | np.ndarray, lags: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], torch.dtype, bool]:
    """Checked design matrix and spike counts.

    Returns:
        x: (T − lags + 1, lags·H·W) mean-subtracted windows, float64, lag-major;
        n: (T − lags + 1, N) spike counts, float64; (H, W); output dtype; whether spikes had N.
    """
    s = _as_tensor(stimulus, "stimulus")
    n = _as_tensor(spikes, "spikes")
    if s.dim() != 3:
        raise TopoError(
            "the stimulus is a movie",
            field="stimulus",
            expected="(time, height, width)",
            found=tuple(s.shape),
        )
    if n.dim() not in (1, 2) or n.shape[0] != s.shape[0]:
        raise TopoError(
            "spikes are counts per stimulus step",
            field="spikes",
            expected=f"({s.shape[0]},) or ({s.shape[0]}, cells)",
            found=tuple(n.shape),
        )
    if isinstance(lags, bool) or not isinstance(lags, int) or not 1 <= lags <= s.shape[0]:
        raise TopoError(
            "lags is a number of steps", field="lags", expected=f"1..{s.shape[0]}", found=lags
        )
    per_cell = n.dim() == 2
    n = (n if per_cell else n[:, None]).to(torch.float64)[lags - 1 :]
    if not bool(torch.isfinite(n).all()) or bool((n < 0).any()):
        raise TopoError("spike counts must be finite and >= 0", field="spikes")
    if bool((n.sum(0) <= 0).any()):
        raise TopoError(
            "every cell needs at least one spike after the first lags - 1 steps",
            field="spikes",
            found=n.sum(0).tolist(),
        )
    dtype = s.dtype if torch.is_floating_point(s) else torch.float32
    s = s.to(torch.float64)
    s = s - s.mean(0)
    height, width = s.shape[1:]
    # unfold: (T', H, W, lags) with window index k = frame t' + k; lag = lags − 1 − k
    x = s.unfold(0, lags, 1).flip(-1).permute(0, 3, 1, 2).reshape(-1, lags * height * width)
    return x, n, (height, width), dtype, per_cell


def spike_triggered_average(
    stimulus: torch.Tensor | np.ndarray, spikes: torch.Tensor | np.ndarray, lags: int
) -> torch.Tensor:
    """STA of a (T, H, W) stimulus given spikes (T,) or (T, N).

    Returns:
        (lags, H, W), or (N, lags, H, W) for (T, N) spikes; ``[lag]`` is ``lag`` steps before
        the spike.
    """
    x, n, (height, width), dtype, per_cell = _windows(stimulus, spikes, lags)
    sta = (n.T @ x) / n.sum(0)[:, None]  # (N, D)
    sta = sta.reshape(-1, lags, height, width).to(dtype)
    return sta if per_cell else sta[0]


def spike_triggered_covariance(
    stimulus: torch.Tensor | np.ndarray, spikes: torch.Tensor | np.ndarray, lags: int
) -> torch.Tensor:
    """STC of a (T, H, W) stimulus given spikes (T,) or (T, N).

    Returns:
        (D, D) with ``D = lags·H·W`` in the lag-major order of ``spike_triggered_average``
        (reshape an eigenvector to (lags, H, W)), or (N, D, D) for (T, N) spikes. Compare its
        eigenvalues with the stimulus variance: larger ones are excitatory directions.
    """
    x, n, _, dtype, per_cell = _windows(stimulus, spikes, lags)
    total = n.sum(0)  # (N,)
    sta = (n.T @ x) / total[:, None]  # (N, D)
    second = torch.einsum("tn,td,te->nde", n, x, x) / total[:, None, None]
    stc = (second - sta[:, :, None] * sta[:, None, :]).to(dtype)
    return stc if per_cell else stc[0]
