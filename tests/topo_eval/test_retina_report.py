"""task=retina_report: the classic characterisation of a retina, checked against planted truth
(a linear retina, single-exponential and band-pass configurations with closed forms) and against
direct simulations of the same stimulus outside the report code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from topo_eval.retina.report import Protocol, characterise, run_retina_report
from topo_models import TopoError
from topo_models.retina import Retina
from topo_models.retina.filters import gaussian_kernel_1d

# A short protocol: the report's measures on fewer frames, trials and frequencies.
FAST = {
    "trials": 50,
    "baseline_s": 0.1,
    "step_s": 0.4,
    "temporal_frequencies_hz": (2.0, 8.0, 32.0),
    "spatial_frequencies_cpd": (0.5, 2.0, 4.0),
    "settle_s": 0.3,
    "analysis_s": 0.5,
}
QUIET = {"progress": lambda line: None}


def rows(table: pd.DataFrame, section: str, cell: str, signal: str, quantity: str) -> pd.Series:
    """``value`` by ``x`` of one (section, cell, signal, quantity)."""
    chosen = table[
        (table.section == section)
        & (table.cell == cell)
        & (table.signal == signal)
        & (table.quantity == quantity)
    ]
    return chosen.set_index("x").value


@pytest.fixture(scope="module")
def parvo_table() -> pd.DataFrame:
    table, _ = characterise(
        Retina.from_preset("human.parvo", spikes=False), Protocol(**FAST), **QUIET
    )
    return table


def test_a_linear_retina_has_exactly_linear_peak_responses(parvo_table):
    contrasts = np.array(Protocol().contrasts)
    for cell, signal in (("ON", "current"), ("OFF", "current"), ("bipolar", "bipolar")):
        peak = rows(parvo_table, "contrast_response", cell, signal, "peak")
        assert list(peak.index) == list(contrasts)
        assert (peak > 0).all()
        # peak ratio = contrast ratio: 16 times the contrast, 16.00 times the peak
        np.testing.assert_allclose(peak / peak.iloc[0], contrasts / contrasts[0], rtol=1e-9)
        gain = rows(parvo_table, "contrast_response", cell, signal, "relative_gain")
        np.testing.assert_allclose(gain, 1.0, rtol=1e-9)


def test_the_gain_control_preset_is_sublinear_by_a_margin():
    protocol = Protocol(**FAST)
    table, _ = characterise(Retina.from_preset("human.parvo.cgc", spikes=False), protocol, **QUIET)
    for cell, signal, most in (("ON", "current", 0.9), ("bipolar", "bipolar", 0.8)):
        gain = rows(table, "contrast_response", cell, signal, "relative_gain")
        assert gain.iloc[-1] < most  # at contrast 0.8
        assert (np.diff(gain) < 0).all()  # the gain falls with every step of contrast
        peak = rows(table, "contrast_response", cell, signal, "peak")
        assert peak.iloc[-1] / peak.iloc[0] < 0.9 * 16


def test_peaks_equal_a_direct_simulation_of_the_same_spot():
    """The spot, the centre cell and the baseline rebuilt here, run through ``Retina.forward``."""
    protocol = Protocol(**FAST)
    retina = Retina.from_preset("human.parvo.cgc", spikes=False)
    table, _ = characterise(retina, protocol, **QUIET)
    size, onset, frames = 21, 100, 500  # 2 deg at 10 px/deg; 0.1 s + 0.4 s at 1 kHz
    offset = np.arange(size) - size // 2
    inside = np.hypot(*np.meshgrid(offset, offset)) <= 1.5  # 0.15 deg
    signed = np.array([0.05, 0.8, -0.05, -0.8])  # increments for ON, decrements for OFF
    on = np.arange(frames) >= onset
    video = 0.5 * (1 + signed[:, None, None, None, None] * on[:, None, None] * inside)
    retina.initialize_steady_state(0.5, size, size, batch=4, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small frames: faster on one thread
    try:
        with torch.no_grad():
            currents = retina(torch.from_numpy(video))
    finally:
        torch.set_num_threads(threads)
    for cell, polarity in (("ON", slice(0, 2)), ("OFF", slice(2, 4))):
        current = currents[f"ganglion_input_{cell}"][polarity, 0, :, 10, 10]
        expected = (current[:, onset:] - current[:, :onset].mean(1, keepdim=True)).amax(1)
        peak = rows(table, "contrast_response", cell, "current", "peak")[[0.05, 0.8]]
        np.testing.assert_allclose(peak, expected.numpy(), rtol=1e-9)


def test_on_cells_answer_increments_and_off_cells_decrements(parvo_table):
    c = Protocol().reference_contrast
    for signal in ("current", "spikes"):
        on = rows(parvo_table, "polarity", "ON", signal, "peak_increase")
        off = rows(parvo_table, "polarity", "OFF", signal, "peak_increase")
        assert on[c] > 10 and off[-c] > 10  # Hz above baseline
        assert on[-c] < 0.1 * on[c] and off[c] < 0.1 * off[-c]
        assert rows(parvo_table, "polarity", "ON", signal, "polarity_index")[c] > 0.9
        assert rows(parvo_table, "polarity", "OFF", signal, "polarity_index")[c] < -0.9
    on_fall = rows(parvo_table, "polarity", "ON", "current", "peak_decrease")
    assert on_fall[-c] > 10 and on_fall[c] == pytest.approx(0.0, abs=1e-6)


def test_transience_and_half_decay_of_a_single_exponential_stage():
    """Every stage but the ganglion transient passes the luminance straight through, so k frames
    after the onset of a spot of contrast c the current is ``λ_G·a·(1 − w + w·q^k)`` above
    baseline, ``a = λ_OPL·background·c``, ``q = exp(−dt/τ)``: peak λ_G·a, sustained/peak
    ``1 − w + w·m`` (m: the mean of q^k over the sustained window) and half-decay
    ``−τ·ln((1 + m)/2)`` (τ·ln 2 for a long step). The potential rests at V = λ_OPL·background
    = 5, so the OFF cell's input rests at −(1 − w)·5 = −2: its threshold v0 = −3 keeps it on the
    rectifier's linear branch, as the ON cell's v0 = 0 does."""
    tau, weight = 0.05, 0.6
    ganglia = {
        f"{cell}_transient_{key}": value
        for cell in ("on", "off")
        for key, value in (("tau", tau), ("weight", weight))
    }
    retina = Retina(
        spikes=False,
        opl_sigma_center=0.0,
        opl_tau_center=1e-6,
        opl_undershoot_weight=0.0,
        opl_relative_weight=0.0,
        bipolar_g_leak=1e6,
        bipolar_input_amp=1e6,
        off_v_0=-3.0,
        **ganglia,
    )
    protocol = Protocol(**FAST)
    table, _ = characterise(retina, protocol, **QUIET)
    tau, weight = retina.on.transient_tau.item(), retina.on.transient_weight.item()  # float32
    q = math.exp(-1e-3 / tau)
    m = np.mean(q ** np.arange(300, 400))  # the last 0.1 s of the 0.4 s step
    c = protocol.reference_contrast
    for cell in ("ON", "OFF"):
        peak = rows(table, "contrast_response", cell, "current", "peak")
        np.testing.assert_allclose(peak, 100.0 * 10.0 * 0.5 * peak.index.to_numpy(), rtol=1e-9)
        ratio = rows(table, "transience", cell, "current", "sustained_over_peak")[c]
        assert ratio == pytest.approx(1 - weight + weight * m, rel=1e-9)
        half = rows(table, "transience", cell, "current", "half_decay_s")[c]
        assert half == pytest.approx(-tau * math.log((1 + m) / 2), abs=1e-5)
        assert half == pytest.approx(tau * math.log(2), abs=2e-4)


def _lowpass(tau: float, z: np.ndarray, dt: float = 1e-3) -> np.ndarray:
    """Transfer function of ``y_t = e·y_{t−1} + (1 − e)·x_t`` at ``z = exp(iω dt)``."""
    e = math.exp(-dt / tau)
    return (1 - e) / (1 - e / z)


def test_temporal_transfer_matches_the_closed_form_of_a_band_pass_retina():
    """No spatial filtering, a full undershoot (high-pass, τ_U 50 ms) and two 5 ms low-passes:
    the bipolar F1 is ``mean·m·λ_OPL·|LP_τC · (1 − z⁻¹ LP_τU) · LP_bipolar|``."""
    retina = Retina(
        spikes=False,
        opl_sigma_center=0.0,
        opl_tau_center=0.005,
        opl_undershoot_weight=1.0,
        opl_undershoot_tau=0.05,
        opl_relative_weight=0.0,
        bipolar_g_leak=200.0,
        bipolar_input_amp=200.0,
    )
    frequencies = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    protocol = Protocol(**{**FAST, "temporal_frequencies_hz": frequencies, "analysis_s": 1.0})
    table, _ = characterise(retina, protocol, **QUIET)
    f1 = rows(table, "temporal_transfer", "bipolar", "bipolar", "f1_amplitude")
    z = np.exp(2j * np.pi * np.array(frequencies) * 1e-3)
    e_bipolar = math.exp(-1e-3 * 200.0)
    bipolar = (1 - e_bipolar) / (1 - e_bipolar / z)
    gain = _lowpass(0.005, z) * (1 - _lowpass(0.05, z) / z) * bipolar
    expected = 0.5 * 0.2 * 10.0 * np.abs(gain)
    np.testing.assert_allclose(f1.to_numpy(), expected, rtol=2e-3)
    assert f1.idxmax() == frequencies[int(expected.argmax())]
    assert 4.0 <= f1.idxmax() <= 16.0 and f1.iloc[0] < 0.5 * f1.max() > f1.iloc[-1] * 2
    on = rows(table, "temporal_transfer", "ON", "current", "f1_amplitude")
    assert on.idxmax() in (4.0, 8.0, 16.0)


def test_spatial_transfer_of_the_default_retina_peaks_where_its_difference_of_gaussians_does():
    """Bipolar F1 against spatial frequency at 4 Hz, from the closed form with the model's own
    sampled Gaussians: ``λ·Ĝ_C·|LP_τC·T_U·(1 − w·Ĝ_S·LP_τS)·LP_bipolar|``; the continuous
    difference of Gaussians (σ 0.05° and 0.15°) peaks at 2.3 cpd."""
    retina = Retina(spikes=False)
    frequencies = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
    protocol = Protocol(**{**FAST, "spatial_frequencies_cpd": frequencies, "settle_s": 0.8})
    table, _ = characterise(retina, protocol, **QUIET)
    f1 = rows(table, "spatial_transfer", "bipolar", "bipolar", "f1_amplitude")

    def spectrum(sigma_deg: float) -> np.ndarray:
        kernel = gaussian_kernel_1d(torch.tensor(sigma_deg * 10.0, dtype=torch.float64), 1e-3)
        k = np.arange(len(kernel)) - len(kernel) // 2
        return np.cos(2 * np.pi * np.outer(frequencies, k) / 10.0) @ kernel.numpy()

    z = np.exp(2j * np.pi * 4.0 * 1e-3)
    undershoot = 1 - 0.8 * _lowpass(0.1, z) / z
    bipolar = _lowpass(1 / 50.0, z)  # g_leak = input_amp = 50 Hz
    centre = spectrum(0.05) * _lowpass(0.01, z) * undershoot
    expected = (
        0.5 * 0.2 * 10.0 * np.abs(centre * (1 - spectrum(0.15) * _lowpass(0.004, z)) * bipolar)
    )
    np.testing.assert_allclose(f1.to_numpy(), expected, rtol=1e-2)
    assert 2.0 <= f1.idxmax() <= 2.5
    assert f1[0.5] < 0.5 * f1.max()


def test_the_task_writes_the_table_figure_and_parameters(tmp_path, compose_eval):
    cfg = compose_eval(
        "task=retina_report",
        "retina.preset=human.parvo.cgc",
        *(
            f"retina_report.{key}={list(v) if isinstance(v, tuple) else v}"
            for key, v in FAST.items()
        ),
    )
    path, metrics = run_retina_report(cfg, tmp_path)
    table = pd.read_csv(path)
    assert path.name == "retina_report.csv"
    assert list(table.section.unique()) == [
        "polarity",
        "contrast_response",
        "transience",
        "spontaneous",
        "temporal_transfer",
        "spatial_transfer",
    ]
    assert metrics["on_polarity_index"] == 1.0 and metrics["off_polarity_index"] == -1.0
    assert metrics["on_relative_gain"] < 0.9 and metrics["on_peak_sf_cpd"] == 2.0
    assert (tmp_path / "figures" / "retina_report.png").stat().st_size > 20_000
    saved = Retina(spikes=False)
    saved.load_parameters(tmp_path / "retina_parameters.json")
    assert saved.parameter("bipolar.lambda_amp").value == 100.0


def test_the_config_block_holds_the_protocol_defaults(compose_eval):
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(compose_eval("task=retina_report").retina_report)
    assert Protocol.from_settings(settings) == Protocol()


def test_bad_settings_are_refused_with_the_key():
    with pytest.raises(TopoError, match="retina_report.reference_contrast"):
        Protocol(reference_contrast=0.3)
    with pytest.raises(TopoError, match="retina_report.background"):
        Protocol(background=0.6)  # 0.6·(1 + 0.8) > 1
    with pytest.raises(TopoError, match="unknown retina_report setting"):
        Protocol.from_settings({"contrast": [0.1]})
