"""The deterministic stages of the VirtualRetina-like model: OPL, bipolar gain control, ganglion
input (the spiking stage is ``spiking.GanglionSpiking``).

Equations follow VirtualRetina (see docs/retina.md) in continuous time, discretised with ``dt`` from
the ``Resolution``. Each stage maps a ``(batch, channels, time, height, width)`` video to one of the
same shape and keeps its streaming state in plain (non-parameter) attributes, so that consecutive
calls continue one movie; ``reset()`` starts a new one. Stored states are detached: a chunked run
back-propagates within a chunk only (truncated BPTT).
"""

from __future__ import annotations

import torch

from topo_models.errors import TopoError
from topo_models.retina.filters import (
    SLICE_TAPS,
    blur_operator,
    blur_with,
    decay_factor,
    exp_highpass,
    exp_lowpass,
    gaussian_blur,
    gaussian_kernel_1d,
    initial_state,
    needs_graph,
    separable_blur,
)
from topo_models.retina.parameters import PhysicalParameter, PhysicalStage
from topo_models.retina.resolution import Resolution


def _detach(state: torch.Tensor) -> torch.Tensor:
    return state.detach()


class OPL(PhysicalStage):
    """Outer plexiform layer: centre minus surround of the luminance movie.

    ``C = T_{wU,τU}(LP_τC(G_σC ⊛ L))``, ``S = LP_τS(G_σS ⊛ C)``,
    ``I_OPL = (λ_OPL / luminance_range)·(C − w_OPL·S)``; ``T`` is the delayed high-pass
    undershoot of ``filters.exp_highpass``. ``center_signal`` and ``surround_signal`` keep the
    last chunk's C and S (detached) for inspection.
    """

    PARAMETERS = (
        PhysicalParameter("sigma_center", 0.05, "deg", "centre Gaussian σ", "nonnegative"),
        PhysicalParameter("tau_center", 0.01, "s", "centre low-pass time constant", "positive"),
        PhysicalParameter("undershoot_tau", 0.1, "s", "undershoot time constant τ_U", "positive"),
        PhysicalParameter("undershoot_weight", 0.8, "1", "undershoot weight w_U", "nonnegative"),
        PhysicalParameter("sigma_surround", 0.15, "deg", "surround Gaussian σ", "nonnegative"),
        PhysicalParameter("tau_surround", 0.004, "s", "surround low-pass τ_S", "positive"),
        PhysicalParameter("relative_weight", 1.0, "1", "surround weight w_OPL", "nonnegative"),
        PhysicalParameter("lambda_opl", 10.0, "1/luminance", "OPL gain λ_OPL", "real"),
    )

    def __init__(
        self,
        resolution: Resolution | None = None,
        *,
        sigma_center: float = 0.05,
        tau_center: float = 0.01,
        undershoot_tau: float = 0.1,
        undershoot_weight: float = 0.8,
        sigma_surround: float = 0.15,
        tau_surround: float = 0.004,
        relative_weight: float = 1.0,
        lambda_opl: float = 10.0,
    ) -> None:
        super().__init__(resolution, dict(locals()))
        self.reset()

    STATE = ("center_state", "undershoot_state", "surround_state")

    def reset(self) -> None:
        self.center_state: torch.Tensor | None = None
        self.undershoot_state: torch.Tensor | None = None
        self.surround_state: torch.Tensor | None = None
        self.center_signal: torch.Tensor | None = None
        self.surround_signal: torch.Tensor | None = None

    def forward(self, luminance: torch.Tensor) -> torch.Tensor:
        """luminance: (batch, channels, time, height, width) in [0, luminance_range] → I_OPL."""
        res = self.resolution
        ppd, eps, dt = res.pixels_per_degree, res.filter_epsilon, res.dt
        x = luminance
        center = gaussian_blur(x, self.value("sigma_center", x) * ppd, eps)
        center, self.center_state = exp_lowpass(
            center, self.value("tau_center", x), dt, self.center_state
        )
        center, self.undershoot_state = exp_highpass(
            center,
            self.value("undershoot_tau", x),
            self.value("undershoot_weight", x),
            dt,
            self.undershoot_state,
        )
        surround = gaussian_blur(center, self.value("sigma_surround", x) * ppd, eps)
        surround, self.surround_state = exp_lowpass(
            surround, self.value("tau_surround", x), dt, self.surround_state
        )
        self.center_state = _detach(self.center_state)
        self.undershoot_state = _detach(self.undershoot_state)
        self.surround_state = _detach(self.surround_state)
        self.center_signal, self.surround_signal = center.detach(), surround.detach()
        gain = self.value("lambda_opl", x) / res.input_luminance_range
        return gain * (center - self.value("relative_weight", x) * surround)


class Bipolar(PhysicalStage):
    """Contrast gain control: ``dV/dt = input_amp·I_OPL − (g_leak + g_A)·V``.

    ``g_A = G_σA ⊛ LP_τA(λ_A·V²)``. Each step is the exact exponential relaxation of V towards
    ``E = input_amp·I_t / g`` with ``g = g_leak + g_A`` held from the previous step, then the
    adaptation low-pass (unit DC gain, ``τ_A`` read at every call) is fed with the new V². Every
    batch element and channel is processed. State starts at ``V = 0``, ``g_A = 0``.
    """

    PARAMETERS = (
        PhysicalParameter("lambda_amp", 0.0, "Hz", "adaptation feedback gain λ_A", "nonnegative"),
        PhysicalParameter("g_leak", 50.0, "Hz", "inert leak conductance g0", "positive"),
        PhysicalParameter("input_amp", 50.0, "Hz", "gain of the OPL current", "real"),
        PhysicalParameter("tau_adaptation", 0.005, "s", "adaptation low-pass τ_A", "positive"),
        PhysicalParameter("sigma_adaptation", 0.2, "deg", "adaptation Gaussian σ_A", "nonnegative"),
    )

    def __init__(
        self,
        resolution: Resolution | None = None,
        *,
        lambda_amp: float = 0.0,
        g_leak: float = 50.0,
        input_amp: float = 50.0,
        tau_adaptation: float = 0.005,
        sigma_adaptation: float = 0.2,
    ) -> None:
        super().__init__(resolution, dict(locals()))
        self.reset()

    STATE = ("v", "q", "g_a")

    def reset(self) -> None:
        self.v: torch.Tensor | None = None
        self.q: torch.Tensor | None = None
        self.g_a: torch.Tensor | None = None

    def forward(self, i_opl: torch.Tensor) -> torch.Tensor:
        """i_opl: (batch, channels, time, height, width) → bipolar potential V, same shape."""
        res = self.resolution
        dt, x = res.dt, i_opl
        v = initial_state(self.v, x, "bipolar.v")
        q = initial_state(self.q, x, "bipolar.q")
        g_a = initial_state(self.g_a, x, "bipolar.g_a")
        g_leak, lam = self.value("g_leak", x), self.value("lambda_amp", x)
        drive = self.value("input_amp", x) * x
        e_a = decay_factor(self.value("tau_adaptation", x), dt)
        feed = (1.0 - e_a) * lam
        sigma_px = self.value("sigma_adaptation", x) * res.pixels_per_degree
        blur = _frame_blur(gaussian_kernel_1d(sigma_px, res.filter_epsilon), x)
        if x.shape[2] and not needs_graph(drive, g_leak, feed, e_a, sigma_px):
            return self._forward_in_place(drive, v, q, g_a, g_leak, e_a, feed, blur, dt)
        frames = []
        for t in range(x.shape[2]):
            g = g_leak + g_a
            target = drive[:, :, t] / g
            v = target + (v - target) * torch.exp(-dt * g)
            q = e_a * q + feed * v**2
            g_a = blur(q)
            frames.append(v)
        self.v, self.q, self.g_a = _detach(v), _detach(q), _detach(g_a)
        return torch.stack(frames, dim=2) if frames else x.clone()

    def _forward_in_place(self, drive, v, q, g_a, g_leak, e_a, feed, blur, dt) -> torch.Tensor:
        """``forward``'s loop without autograd: the same operations in the same order, written
        into preallocated frames (the potentials straight into the output)."""
        out = torch.empty_like(drive)
        g, target, decay, squared = (torch.empty_like(v) for _ in range(4))
        q = q.clone()
        for t in range(drive.shape[2]):
            torch.add(g_a, g_leak, out=g)  # g_leak + g_a
            torch.div(drive[:, :, t], g, out=target)
            torch.mul(g, -dt, out=decay).exp_()
            frame = out[:, :, t]
            torch.sub(v, target, out=frame).mul_(decay).add_(target)  # target + (v − target)·e
            v = frame
            q.mul_(e_a)
            torch.mul(v, v, out=squared).mul_(feed)
            q.add_(squared)
            g_a = blur(q)
        self.v, self.q, self.g_a = v.clone(), q, g_a
        return out


def _frame_blur(kernel: torch.Tensor, like: torch.Tensor):
    """A function blurring one (batch, channels, height, width) frame of ``like`` by ``kernel``.

    Long kernels get their two ``blur_operator`` matrices built once per chunk instead of at
    every time step; the operations per frame are those of ``separable_blur``.
    """
    kernel = kernel.to(like)
    if kernel.numel() <= SLICE_TAPS:
        return lambda frame: separable_blur(frame, kernel)
    rows = blur_operator(kernel, like.shape[-2])
    columns = blur_operator(kernel, like.shape[-1])
    return lambda frame: blur_with(frame, rows, columns)


def ganglion_nonlinearity(
    x: torch.Tensor, i_0: torch.Tensor, v_0: torch.Tensor, lambda_g: torch.Tensor
) -> torch.Tensor:
    """VirtualRetina's rectifier, in Hz.

    ``N(x) = i0 / (1 − λ_G (x − v0)/i0)`` for ``x ≤ v0`` (positive, → 0 as x → −∞) and
    ``i0 + λ_G (x − v0)`` above; value i0 and slope λ_G at v0 from both sides. The hyperbolic
    branch sees ``min(x, v0)``, so its pole at ``v0 + i0/λ_G`` is never evaluated and
    ``torch.where`` back-propagates no NaN from the unused branch.
    """
    below = torch.clamp(x - v_0, max=0.0)
    hyperbolic = i_0 / (1.0 - lambda_g * below / i_0)
    linear = i_0 + lambda_g * (x - v_0)
    return torch.where(x <= v_0, hyperbolic, linear)


class GanglionInput(PhysicalStage):
    """Ganglion input current: transient high-pass, sign, rectifier, optional pooling.

    ``x = sign·(V − w_tr·LP_τtr(V)_{t−1})``, ``I = G_σpool ⊛ N(x)``. ``sign`` = +1 (ON) or −1
    (OFF) is a fixed property, not a physical parameter. Pooling uses replicate padding, so the
    map keeps its size (the original's valid convolution shrinks it). ``transient_signal``
    keeps the last chunk's signed, filtered x (detached).
    """

    PARAMETERS = (
        PhysicalParameter("transient_tau", 0.02, "s", "transient time constant τ_tr", "positive"),
        PhysicalParameter("transient_weight", 0.7, "1", "transient weight w_tr", "nonnegative"),
        PhysicalParameter("i_0", 37.0, "Hz", "value at the linear threshold i0", "positive"),
        PhysicalParameter("v_0", 0.0, "V", "linear threshold v0 (bipolar units)", "real"),
        PhysicalParameter("lambda_g", 100.0, "Hz/V", "slope above threshold λ_G", "positive"),
        PhysicalParameter("sigma_pool", 0.0, "deg", "pooling Gaussian σ (0: none)", "nonnegative"),
    )

    def __init__(
        self,
        resolution: Resolution | None = None,
        *,
        sign: float = 1.0,
        transient_tau: float = 0.02,
        transient_weight: float = 0.7,
        i_0: float = 37.0,
        v_0: float = 0.0,
        lambda_g: float = 100.0,
        sigma_pool: float = 0.0,
    ) -> None:
        super().__init__(resolution, dict(locals()))
        if sign not in (1.0, -1.0):
            raise TopoError("ganglion sign is ON or OFF", field="sign", expected="±1", found=sign)
        self.sign = float(sign)
        self.reset()

    STATE = ("transient_state",)

    def reset(self) -> None:
        self.transient_state: torch.Tensor | None = None
        self.transient_signal: torch.Tensor | None = None

    def forward(self, v_bip: torch.Tensor) -> torch.Tensor:
        """v_bip: (batch, channels, time, height, width) → input current (Hz), same shape."""
        res, x = self.resolution, v_bip
        filtered, state = exp_highpass(
            x,
            self.value("transient_tau", x),
            self.value("transient_weight", x),
            res.dt,
            self.transient_state,
        )
        self.transient_state = _detach(state)
        signed = self.sign * filtered
        self.transient_signal = signed.detach()
        rate = ganglion_nonlinearity(
            signed, self.value("i_0", x), self.value("v_0", x), self.value("lambda_g", x)
        )
        sigma_px = self.value("sigma_pool", x) * res.pixels_per_degree
        return gaussian_blur(rate, sigma_px, res.filter_epsilon)
