"""Steady state of the deterministic stages for a uniform background.

VirtualRetina starts its filters at the steady state of a uniform screen; starting at zero
instead gives onset transients for the first few hundred ms. For a uniform luminance L every
Gaussian leaves the frame unchanged and every low-pass equals its input, so the fixed point is
closed-form: ``C = (1 − w_U)·L``, ``S = C``, ``I_OPL = (λ_OPL/range)·(C − w_OPL·S)``; the bipolar
potential solves ``V·(g_leak + λ_A·V²) = input_amp·I_OPL`` (the fixed point of its discrete
update as well as of the ODE), ``g_A = λ_A·V²``; the ganglion transient's low-pass holds V.
"""

from __future__ import annotations

import math

import torch

from topo_models.errors import TopoError
from topo_models.retina.stages import OPL, Bipolar, GanglionInput


def bipolar_steady_potential(drive: float, g_leak: float, lambda_amp: float) -> float:
    """The real root V of ``λ_A·V³ + g_leak·V − drive = 0`` (drive = input_amp·I_OPL, Hz).

    The cubic is odd and strictly increasing (g_leak > 0), so the root is unique. Newton's method
    from ``drive/g_leak`` approaches it monotonically (the cubic is convex on the root's side).
    """
    v = drive / g_leak
    if lambda_amp == 0.0 or drive == 0.0:
        return v
    for _ in range(200):
        residual = lambda_amp * v**3 + g_leak * v - drive
        step = residual / (3.0 * lambda_amp * v**2 + g_leak)
        v -= step
        if abs(step) <= 1e-15 * abs(v):
            break
    return v


def _number(stage: torch.nn.Module, name: str) -> float:
    return getattr(stage, name).detach().item()


def _frame(value: float, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    return torch.full(shape, value, dtype=dtype, device=device)


def set_steady_state(
    opl: OPL,
    bipolar: Bipolar,
    ganglia: tuple[GanglionInput, ...],
    background_luminance: float,
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> float:
    """Fill the carried state of ``opl``, ``bipolar`` and ``ganglia`` for luminance L.

    Args:
        background_luminance: L, in input units (0 … ``input_luminance_range``).
        shape: (batch, channels, height, width) of the frames the movie will have.
        dtype, device: of the state frames (use the movie's, or float rounding of the state
            makes the first frames drift by an ulp).

    Returns:
        the steady bipolar potential V (bipolar units), for inspection.
    """
    if not math.isfinite(background_luminance):
        raise TopoError(
            "background luminance must be finite",
            field="background_luminance",
            expected="a finite number",
            found=background_luminance,
        )
    lum = float(background_luminance)
    center_lowpass = lum
    center = (1.0 - _number(opl, "undershoot_weight")) * center_lowpass
    surround = center
    gain = _number(opl, "lambda_opl") / opl.resolution.input_luminance_range
    i_opl = gain * (center - _number(opl, "relative_weight") * surround)
    drive = _number(bipolar, "input_amp") * i_opl
    v = bipolar_steady_potential(drive, _number(bipolar, "g_leak"), _number(bipolar, "lambda_amp"))
    q = _number(bipolar, "lambda_amp") * v**2
    opl.center_state = _frame(center_lowpass, shape, dtype, device)
    opl.undershoot_state = _frame(center_lowpass, shape, dtype, device)
    opl.surround_state = _frame(surround, shape, dtype, device)
    bipolar.v = _frame(v, shape, dtype, device)
    bipolar.q = _frame(q, shape, dtype, device)
    bipolar.g_a = _frame(q, shape, dtype, device)
    for ganglion in ganglia:
        ganglion.transient_state = _frame(v, shape, dtype, device)
    return v
