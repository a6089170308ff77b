"""``task=retina_report``: the classic characterisation of a configured retina.

Spots centred on the field (Weber increments and decrements ``background·(1 ± c)`` after
``baseline_s`` of background) and drifting sine gratings, one condition per batch element, the
retina starting at its steady state on the background. Every measure is taken at the centre
cell. Spikes come from the retina's own spiking stages run on ``trials`` copies of the centre
cell's current (one LIF unit per copy, each with its own seeded noise): their mean is the
cell's PSTH (Hz). The model runs in float64, so a linear stage's ratios are exact to ~1e-12.

``retina_report.csv`` has one row per measure: ``section`` (polarity, contrast_response,
transience, spontaneous, temporal_transfer, spatial_transfer), ``cell`` (ON, OFF, or bipolar:
the potential both share), ``signal`` (current: the ganglion input in Hz; spikes: the PSTH in
Hz; bipolar), ``quantity``, ``x`` with ``x_unit`` (contrast, Hz or cpd), ``value`` with ``unit``.
docs/retina.md defines each quantity.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from topo_eval.figure_files import write_figure
from topo_eval.retina.report_figures import plot_report
from topo_eval.retina.response_measures import f1_amplitude, smooth, step_measures
from topo_eval.retina.run_task import retina_from_config
from topo_models.atomic import atomic_write_bytes
from topo_models.errors import TopoError
from topo_models.retina import Retina

log = logging.getLogger("topo_eval")
TABLE_FILE = "retina_report.csv"
FIGURE_FILE = "figures/retina_report.png"
PARAMETERS_FILE = "retina_parameters.json"
COLUMNS = ("section", "cell", "signal", "quantity", "x", "x_unit", "value", "unit")
CHUNK = 250  # frames per call of the stages: bounds the memory of long, wide movies
Frames = Callable[[int, int], torch.Tensor]  # (start, stop) → (batch, 1, stop − start, H, W)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The stimuli and windows of the report (the ``retina_report:`` block); units in names,
    luminance as a fraction of the retina's ``input_luminance_range``."""

    background: float = 0.5
    contrasts: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8)
    reference_contrast: float = 0.4
    spot_radius_deg: float = 0.15
    field_deg: float = 2.0
    baseline_s: float = 0.2
    step_s: float = 0.6
    sustained_s: float = 0.1
    trials: int = 200
    psth_bin_s: float = 0.01
    grating_contrast: float = 0.2
    temporal_frequencies_hz: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    temporal_sf_cpd: float = 1.0
    spatial_frequencies_cpd: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
    spatial_tf_hz: float = 4.0
    settle_s: float = 0.5
    analysis_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("contrasts", "temporal_frequencies_hz", "spatial_frequencies_cpd"):
            object.__setattr__(self, name, tuple(sorted(float(v) for v in getattr(self, name))))
        b, c = self.background, self.contrasts
        frequencies = (*self.temporal_frequencies_hz, *self.spatial_frequencies_cpd)
        positive = ("spot_radius_deg", "field_deg", "baseline_s", "step_s", "psth_bin_s")
        checks = {
            "contrasts": (c and 0 < c[0] and c[-1] <= 1, "Weber contrasts in (0, 1]"),
            "background": (0 < b and b * (1 + max(c, default=0)) <= 1, "b·(1 + max c) <= 1"),
            "reference_contrast": (self.reference_contrast in c, f"one of {c}"),
            "grating_contrast": (0 < self.grating_contrast <= min(1, 1 / b - 1), "b·(1 + it) <= 1"),
            "trials": (isinstance(self.trials, int) and self.trials >= 1, "an integer >= 1"),
            "sustained_s": (0 < self.sustained_s <= self.step_s, "in (0, step_s]"),
            "temporal_sf_cpd": (self.temporal_sf_cpd > 0 and min(frequencies) > 0, "> 0"),
            "analysis_s": (
                min(*self.temporal_frequencies_hz, self.spatial_tf_hz) * self.analysis_s >= 1,
                "at least one cycle of every temporal frequency",
            ),
            **{name: (getattr(self, name) > 0, "> 0") for name in positive},
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                found = getattr(self, name)
                field = f"retina_report.{name}"
                raise TopoError(
                    "bad retina_report setting", field=field, expected=expected, found=found
                )

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> Protocol:
        """From the config block; an unknown key is an error listing the known ones."""
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TopoError(
                "unknown retina_report setting", field=", ".join(unknown), expected=known
            )
        return cls(**settings)


def field_size(protocol: Protocol, pixels_per_degree: float) -> int:
    """Side of the square field in px: ``field_deg`` rounded, made odd so a cell sits centred."""
    return max(3, round(protocol.field_deg * pixels_per_degree)) | 1


# --------------------------------------------------------------------------- simulation


@torch.no_grad()
def centre_traces(
    retina: Retina, frames: Frames, batch: int, n_frames: int, size: int, background: float
) -> dict[str, torch.Tensor]:
    """(batch, time) float64 traces of the centre cell: ``bipolar``, ``ON`` and ``OFF`` current.

    A copy of ``retina`` starts at its steady state on ``background`` (absolute luminance) and
    runs ``frames`` in chunks of ``CHUNK`` (the stages carry their state across chunks).
    """
    model = copy.deepcopy(retina)
    model.initialize_steady_state(background, size, size, batch=batch, dtype=torch.float64)
    c = size // 2
    pieces: dict[str, list[torch.Tensor]] = {"bipolar": [], "ON": [], "OFF": []}
    for start in range(0, n_frames, CHUNK):
        bipolar = model.bipolar(model.opl(frames(start, min(start + CHUNK, n_frames))))
        pieces["bipolar"].append(bipolar[:, 0, :, c, c])
        pieces["ON"].append(model.on(bipolar)[:, 0, :, c, c])
        pieces["OFF"].append(model.off(bipolar)[:, 0, :, c, c])
    return {name: torch.cat(values, dim=1) for name, values in pieces.items()}


@torch.no_grad()
def spike_rates(retina: Retina, current: dict[str, torch.Tensor], trials: int) -> dict:
    """{cell: (batch, time) Hz}: the PSTH of ``trials`` LIF copies of each centre current.

    The spiking stage is one unit per pixel, so copies laid out along the height axis are
    independent trials of the same cell; seeds are the retina's (ON: seed, OFF: seed + 1).
    """
    rates = {}
    for cell, stage in (("ON", retina.on_spikes), ("OFF", retina.off_spikes)):
        spiking = copy.deepcopy(stage)
        spiking.reset()
        x = current[cell][:, None, :, None, None].expand(-1, 1, -1, trials, 1)
        rates[cell] = spiking(x).mean(dim=(1, 3, 4)) * retina.resolution.steps_per_second
    return rates


def spot_frames(protocol: Protocol, retina: Retina, size: int) -> tuple[Frames, np.ndarray, int]:
    """Spot movies: increments, decrements (signed contrasts) and a blank (contrast 0)."""
    res = retina.resolution
    signed = np.array([*protocol.contrasts, *(-c for c in protocol.contrasts), 0.0])
    onset = round(protocol.baseline_s * res.steps_per_second)
    n_frames = onset + round(protocol.step_s * res.steps_per_second)
    offset = (np.arange(size) - size // 2) / res.pixels_per_degree
    inside = torch.from_numpy(
        offset[:, None] ** 2 + offset[None] ** 2 <= protocol.spot_radius_deg**2
    )
    top = res.input_luminance_range * protocol.background
    change = torch.from_numpy(signed)[:, None, None, None, None] * inside.double() * top

    def frames(start: int, stop: int) -> torch.Tensor:
        on = (torch.arange(start, stop) >= onset).double()[None, None, :, None, None]
        return top + change * on

    return frames, signed, n_frames


def grating_frames(conditions: np.ndarray, protocol: Protocol, retina: Retina, size: int):
    """Gratings drifting along x, one per (spatial cpd, temporal Hz) row of ``conditions``:
    (frames, n_frames)."""
    res = retina.resolution
    x_deg = torch.from_numpy((np.arange(size) - size // 2) / res.pixels_per_degree)
    sf, tf = torch.from_numpy(conditions).T[:, :, None, None, None, None]
    mean = res.input_luminance_range * protocol.background

    def frames(start: int, stop: int) -> torch.Tensor:
        t_s = (torch.arange(start, stop, dtype=torch.float64) / res.steps_per_second)[:, None, None]
        phase = 2 * math.pi * (sf * x_deg - tf * t_s)  # (batch, 1, time, 1, width)
        return mean * (1 + protocol.grating_contrast * torch.cos(phase)).expand(
            -1, -1, -1, size, -1
        )

    return frames, round((protocol.settle_s + protocol.analysis_s) * res.steps_per_second)


# --------------------------------------------------------------------------- the report

X_UNITS = {"temporal_transfer": "Hz", "spatial_transfer": "cpd"}  # others: contrast
UNITS = {"polarity_index": "1", "relative_gain": "1", "sustained_over_peak": "1"}
SIGNAL_UNITS = {"current": "Hz", "spikes": "Hz", "bipolar": "V"}


class _Rows(list):
    """The table's rows; units follow from the section, quantity and signal."""

    def add(self, section: str, key: tuple[str, str], quantity: str, x, values) -> None:
        cell, signal = key
        unit = "s" if quantity.endswith("_s") else UNITS.get(quantity, SIGNAL_UNITS[signal])
        for xi, v in zip(np.atleast_1d(x), np.atleast_1d(values), strict=True):
            x_unit = X_UNITS.get(section, "contrast")
            self.append((section, cell, signal, quantity, float(xi), x_unit, float(v), unit))


def characterise(
    retina: Retina, protocol: Protocol, progress: Callable[[str], None] = log.info
) -> tuple[pd.DataFrame, dict[str, object]]:
    """The report's table and the traces its figure draws (``report_figures.plot_report``).

    Runs on one thread: the stages step through small frames, where threads cost more than
    they give (the whole report takes ~4 s on one core, 20–50 s on two busy ones).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _characterise(retina, protocol, progress)
    finally:
        torch.set_num_threads(threads)


def _characterise(retina: Retina, protocol: Protocol, progress) -> tuple[pd.DataFrame, dict]:
    res = retina.resolution
    size = field_size(protocol, res.pixels_per_degree)
    background = res.input_luminance_range * protocol.background
    rows = _Rows()
    started = time.perf_counter()
    frames, signed, n_frames = spot_frames(protocol, retina, size)
    progress(f"retina_report: {len(signed)} spot movies of {n_frames} frames at {size}×{size} px")
    traces = centre_traces(retina, frames, len(signed), n_frames, size, background)
    rates = spike_rates(retina, traces, protocol.trials)
    progress(f"retina_report: spots, {protocol.trials} trials a cell, {_since(started)}")
    figure_data = _spot_rows(rows, protocol, res.steps_per_second, traces, rates, signed)
    started = time.perf_counter()
    conditions, sections = _grating_conditions(protocol, res, progress)
    frames, n_frames = grating_frames(conditions, protocol, retina, size)
    progress(f"retina_report: {len(conditions)} grating movies of {n_frames} frames")
    traces = centre_traces(retina, frames, len(conditions), n_frames, size, background)
    rates = spike_rates(retina, traces, protocol.trials)
    progress(f"retina_report: gratings, {_since(started)}")
    window = round(protocol.analysis_s * res.steps_per_second)
    signals = {("bipolar", "bipolar"): traces["bipolar"]}
    for cell in ("ON", "OFF"):
        signals[cell, "current"], signals[cell, "spikes"] = traces[cell], rates[cell]
    for key, trace in signals.items():
        f1 = f1_amplitude(trace.numpy(), conditions[:, 1], res.steps_per_second, window)
        for section, column in (("temporal_transfer", 1), ("spatial_transfer", 0)):
            chosen = sections == section
            rows.add(section, key, "f1_amplitude", conditions[chosen, column], f1[chosen])
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    figure_data["transfer"] = table[table.section.str.endswith("_transfer")]
    return table, figure_data


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.1f} s"


def _spot_rows(rows: _Rows, protocol: Protocol, sps: float, traces, rates, signed) -> dict:
    """Polarity, contrast-response, transience and spontaneous rows of the spot responses
    (increments, decrements, blank along the batch); returns what the figure draws."""
    onset = round(protocol.baseline_s * sps)
    bin_frames = max(1, round(protocol.psth_bin_s * sps))
    n = len(protocol.contrasts)
    increments, decrements, blank = slice(0, n), slice(n, 2 * n), 2 * n
    ref, c = protocol.contrasts.index(protocol.reference_contrast), np.array(protocol.contrasts)
    # the LIF's start (V ~ 0.5–0.7 at t = 0) is over after half the baseline
    spontaneous = {cell: float(rates[cell][blank, onset // 2 :].mean()) for cell in ("ON", "OFF")}
    smoothed = {cell: smooth(rates[cell].numpy(), bin_frames) for cell in ("ON", "OFF")}
    signals = {}  # (cell, signal) → (conditions, step frames) above baseline
    for cell, signal in (("ON", "current"), ("OFF", "current"), ("bipolar", "bipolar")):
        values = traces[cell].numpy()
        signals[cell, signal] = values[:, onset:] - values[:, :onset].mean(1, keepdims=True)
        if cell != "bipolar":
            signals[cell, "spikes"] = smoothed[cell][:, onset:] - spontaneous[cell]
    x = [protocol.reference_contrast, -protocol.reference_contrast]
    for key, delta in signals.items():
        if key[0] != "bipolar":
            rise, fall = np.maximum(delta.max(1), 0.0), np.maximum(-delta.min(1), 0.0)
            up, down = rise[increments][ref], rise[decrements][ref]
            rows.add("polarity", key, "peak_increase", x, [up, down])
            rows.add(
                "polarity", key, "peak_decrease", x, [fall[increments][ref], fall[decrements][ref]]
            )
            index = (up - down) / (up + down) if up + down > 0 else np.nan
            rows.add("polarity", key, "polarity_index", x[0], index)
    transience = _Rows()
    for key, delta in signals.items():
        preferred = decrements if key[0] == "OFF" else increments
        m = step_measures(delta[preferred], max(1, round(protocol.sustained_s * sps)), 1 / sps)
        rows.add("contrast_response", key, "peak", c, m["peak"])
        rows.add("contrast_response", key, "sustained", c, m["sustained"])
        gain = m["peak"] / c
        relative = np.full_like(gain, np.nan) if gain[0] == 0 else gain / gain[0]
        rows.add("contrast_response", key, "relative_gain", c, relative)
        ratio = m["sustained"][ref] / m["peak"][ref] if m["peak"][ref] else np.nan
        transience.add("transience", key, "sustained_over_peak", x[0], ratio)
        transience.add("transience", key, "half_decay_s", x[0], m["half_decay_s"][ref])
    rows.extend(transience)
    for cell in ("ON", "OFF"):
        rows.add("spontaneous", (cell, "current"), "rate", 0.0, traces[cell][blank].mean().item())
        rows.add("spontaneous", (cell, "spikes"), "rate", 0.0, spontaneous[cell])
    return {
        "time_s": (np.arange(traces["ON"].shape[1]) - onset) / sps,
        "contrasts": signed,
        "reference": protocol.reference_contrast,
        "current": {cell: traces[cell].numpy() for cell in ("ON", "OFF")},
        "rate": smoothed,
        "spontaneous": spontaneous,
    }


def _grating_conditions(protocol: Protocol, res, progress) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 2) [spatial cpd, temporal Hz] of the gratings and each row's section; those at or
    above the Nyquist frequency of the resolution are left out (with a progress line)."""
    pairs = [
        (protocol.temporal_sf_cpd, tf, "temporal_transfer")
        for tf in protocol.temporal_frequencies_hz
    ]
    pairs += [
        (sf, protocol.spatial_tf_hz, "spatial_transfer") for sf in protocol.spatial_frequencies_cpd
    ]
    ppd, sps = res.pixels_per_degree, res.steps_per_second
    kept = [p for p in pairs if p[0] < ppd / 2 and p[1] < sps / 2]
    if len(kept) < len(pairs):
        dropped = [p[:2] for p in pairs if p not in kept]
        progress(
            f"retina_report: left out (cpd, Hz) {dropped}: at or above Nyquist "
            f"({ppd / 2:g} cpd, {sps / 2:g} Hz)"
        )
    if not kept:
        raise TopoError("no grating below the Nyquist frequency", field="retina_report")
    return np.array([p[:2] for p in kept], dtype=np.float64), np.array([p[2] for p in kept])


def headline_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Of the ON cell's current (and the OFF cell's polarity), for the summary and MLflow."""
    current = table[table.signal == "current"].set_index(["section", "cell", "quantity"]).value

    def peak_x(section: str) -> float:
        rows = table[(table.section == section) & (table.cell == "ON")]
        return float(rows[rows.signal == "current"].set_index("x").value.idxmax())

    spikes = table[(table.signal == "spikes") & (table.section == "spontaneous")]
    return {
        "on_polarity_index": current["polarity", "ON", "polarity_index"].item(),
        "off_polarity_index": current["polarity", "OFF", "polarity_index"].item(),
        "on_relative_gain": float(current["contrast_response", "ON", "relative_gain"].iloc[-1]),
        "on_transience": current["transience", "ON", "sustained_over_peak"].item(),
        "on_half_decay_ms": 1000 * current["transience", "ON", "half_decay_s"].item(),
        "on_spontaneous_hz": spikes[spikes.cell == "ON"].value.item(),
        "on_peak_tf_hz": peak_x("temporal_transfer"),
        "on_peak_sf_cpd": peak_x("spatial_transfer"),
    }


def run_retina_report(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """``python -m topo_eval task=retina_report``: retina_report.csv, figures/retina_report.png
    and retina_parameters.json for the retina of the ``retina:`` block; (table, metrics)."""
    settings = OmegaConf.to_container(cfg.retina, resolve=True)
    retina = retina_from_config({**settings, "spikes": False})
    protocol = Protocol.from_settings(OmegaConf.to_container(cfg.retina_report, resolve=True))
    table, traces = characterise(retina, protocol)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / TABLE_FILE
    atomic_write_bytes(table.to_csv(index=False).encode(), path)
    retina.save_parameters(output_dir / PARAMETERS_FILE)
    name = settings.get("xml") or settings.get("preset") or "defaults"
    write_figure(plot_report(table, traces, title=f"retina: {name}"), output_dir / FIGURE_FILE)
    metrics = headline_metrics(table)
    log.info(
        "retina_report: %d rows → %s; %s",
        len(table),
        path,
        {k: round(v, 4) for k, v in metrics.items()},
    )
    return path, metrics
