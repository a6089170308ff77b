"""Retina stages against independent formulas (VirtualRetina's equations, see docs/retina.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from topo_models.retina import (
    OPL,
    Bipolar,
    GanglionInput,
    GanglionSpiking,
    Resolution,
    Retina,
    ganglion_nonlinearity,
)

F64 = torch.float64


# tiny per-step ops are dominated by thread hand-off on a shared 2-core CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lowpass(x: np.ndarray, tau: float, dt: float) -> np.ndarray:
    e, y, out = math.exp(-dt / tau), 0.0, []
    for value in x:
        y = e * y + (1 - e) * value
        out.append(y)
    return np.array(out)


def test_opl_centre_profile_to_a_point_impulse_is_the_gaussian():
    res = Resolution(pixels_per_degree=40.0)
    opl = OPL(res)
    x = torch.zeros(1, 1, 2, 21, 21, dtype=F64)
    x[0, 0, 0, 10, 10] = 1.0
    opl(x)
    profile = opl.center_signal[0, 0, 0]  # lag 0: low-pass gain (1 - e), undershoot identity
    sigma_px = opl.sigma_center.item() * 40.0
    d = np.arange(-10, 11)
    g = np.exp(-(d**2) / (2 * sigma_px**2))
    g[np.abs(d) > math.floor(sigma_px * math.sqrt(2 * math.log(1e3)))] = 0.0
    expected = np.outer(g, g) / np.outer(g, g).sum()
    e = math.exp(-res.dt / opl.tau_center.item())
    np.testing.assert_allclose(profile.numpy() / (1 - e), expected, rtol=1e-6, atol=1e-12)


def test_opl_uniform_step_has_undershoot_and_zero_sustained_response():
    opl = OPL()
    n, dt = 1000, 0.001
    y = opl(torch.ones(1, 1, n, 4, 4, dtype=F64))[0, 0, :, 2, 1].detach().numpy()
    # independent scalar cascade: LP_τC → x − w_U·LP_τU delayed → surround LP_τS of the centre
    p = {k: v.item() for k, v in opl.named_parameters()}
    c1 = _lowpass(np.ones(n), p["tau_center"], dt)
    lp_u = _lowpass(c1, p["undershoot_tau"], dt)
    c = c1 - p["undershoot_weight"] * np.concatenate([[0.0], lp_u[:-1]])
    s = _lowpass(c, p["tau_surround"], dt)
    expected = p["lambda_opl"] * (c - p["relative_weight"] * s)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-9)
    assert y[:20].max() > 1.5  # transient peak (convis measures 1.90 at 5 ms)
    assert y[30:200].min() < -0.1  # undershoot below zero (convis: -0.20 at 50 ms)
    assert abs(y[-1]) < 1e-3 * y.max()  # w_OPL = 1: DC response → λ(1 - w_U)(1 - w_OPL) = 0


def test_bipolar_without_gain_control_is_the_linear_ode():
    res = Resolution(steps_per_second=2000.0)
    bip = Bipolar(res, lambda_amp=0.0)
    current = 0.02
    v = bip(torch.full((1, 1, 200, 3, 3), current, dtype=F64))[0, 0, :, 1, 1].detach().numpy()
    g, amp = bip.g_leak.item(), bip.input_amp.item()
    t = (np.arange(200) + 1) * res.dt
    np.testing.assert_allclose(v, amp * current / g * (1 - np.exp(-g * t)), rtol=1e-10)


def test_bipolar_gain_control_settles_on_the_cubic_steady_state():
    bip = Bipolar(lambda_amp=200.0, tau_adaptation=0.005)
    current = 0.05
    v = bip(torch.full((1, 1, 1500, 3, 3), current, dtype=F64))[0, 0, -1, 1, 1].item()
    lam, g, amp = bip.lambda_amp.item(), bip.g_leak.item(), bip.input_amp.item()
    # uniform input: g_A = λ_A·V² (unit-gain low-pass, normalised blur), V = amp·I/(g + λ_A·V²)
    roots = np.roots([lam, 0.0, g, -amp * current])
    steady = roots[np.abs(roots.imag) < 1e-9].real.max()
    assert v == pytest.approx(steady, rel=1e-6)
    assert v < amp * current / g  # gain control lowers the response


def test_ganglion_nonlinearity_is_continuous_with_slope_lambda_at_threshold():
    i_0, v_0, lam = (torch.tensor(v, dtype=F64) for v in (37.0, 0.1, 100.0))
    h = 1e-7
    x = torch.tensor([0.1 - h, 0.1, 0.1 + h, -1e6], dtype=F64)
    n = ganglion_nonlinearity(x, i_0, v_0, lam)
    assert n[1].item() == pytest.approx(37.0)
    assert (n[2] - n[0]).item() / (2 * h) == pytest.approx(100.0, rel=1e-6)
    assert 0 < n[3].item() < 37.0 * 37.0 / (100.0 * 1e6) * 1.01  # i0²/(λ|x|) tail, positive


def test_ganglion_nonlinearity_gradient_is_finite_near_the_pole():
    i_0, v_0, lam = 37.0, 0.0, 100.0
    pole = v_0 + i_0 / lam
    x = torch.tensor([pole - 1e-9, pole, pole + 1e-9, -0.5, 0.0], dtype=F64, requires_grad=True)
    params = [torch.tensor(v, dtype=F64, requires_grad=True) for v in (i_0, v_0, lam)]
    ganglion_nonlinearity(x, *params).sum().backward()
    grads = torch.cat([x.grad] + [p.grad.view(1) for p in params])
    assert torch.isfinite(grads).all()
    assert x.grad[:3].tolist() == pytest.approx([lam] * 3)  # linear branch above v0
    assert x.grad[3].item() == pytest.approx(lam / (1 + lam * 0.5 / i_0) ** 2)


def test_off_transient_input_is_minus_the_on_one():
    retina = Retina(spikes=False)
    video = torch.rand(1, 1, 60, 6, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = retina(video)
    on, off = retina.on.transient_signal, retina.off.transient_signal
    assert torch.equal(off, -on)
    p = {k: v.to(F64) for k, v in retina.off.named_parameters()}
    expected = ganglion_nonlinearity(off, p["i_0"], p["v_0"], p["lambda_g"])
    torch.testing.assert_close(out["ganglion_input_OFF"], expected, rtol=1e-12, atol=1e-12)


def _spike_steps(spikes: torch.Tensor) -> np.ndarray:
    return np.flatnonzero(spikes[0, 0, :, 0, 0].numpy())


@pytest.mark.parametrize("steps_per_second", [1000.0, 2000.0])
def test_lif_interspike_interval_is_refractory_plus_charging_time(steps_per_second):
    res = Resolution(steps_per_second=steps_per_second)
    lif = GanglionSpiking(res, noise_sigma=0.0, refr_mu=0.003)
    g = lif.g_leak.item()
    spikes = lif(torch.full((1, 1, 400, 2, 2), 2.0 * g, dtype=F64))  # V∞ = 2
    # after a spike V is held at 0 for refr - 1 steps, then charges: V_k = 2(1 - e^{-g k dt}) > 1
    refr = round(0.003 * steps_per_second)
    charge = math.floor(math.log(2.0) / (g * res.dt)) + 1
    assert set(np.diff(_spike_steps(spikes))) == {refr - 1 + charge}


def test_lif_never_fires_twice_within_the_refractory_period():
    res = Resolution()
    lif = GanglionSpiking(res, noise_sigma=0.5, refr_mu=0.004, seed=3)
    spikes = lif(torch.full((1, 1, 500, 4, 4), 1e4, dtype=F64))
    for i in range(4):
        for j in range(4):
            steps = np.flatnonzero(spikes[0, 0, :, i, j].numpy())
            assert len(steps) > 50
            assert np.diff(steps).min() >= res.sec_to_steps(0.004)


def test_seeded_spikes_are_reproducible_and_chunk_invariant():
    video = 0.5 + 0.5 * torch.rand(1, 1, 200, 5, 5, generator=torch.Generator().manual_seed(2))
    whole = Retina(seed=7)(video)
    again = Retina(seed=7).run(video, chunk=7)
    other = Retina(seed=8)(video)
    for key in whole:
        assert whole[key].sum() > 0
        assert torch.equal(whole[key], again[key])
    assert not torch.equal(whole["ganglion_spikes_ON"], other["ganglion_spikes_ON"])


def test_ganglion_pooling_keeps_the_map_size_and_blurs_by_sigma():
    gin = GanglionInput(sigma_pool=0.1)
    v = torch.zeros(1, 1, 3, 9, 9, dtype=F64)
    out = gin(v)
    assert out.shape == v.shape
    torch.testing.assert_close(out, torch.full_like(v, 37.0))  # uniform stays uniform
