"""Figures of a retina model: how each stage answers an impulse or a step, spikes, ON/OFF maps.

``stage_responses`` runs a fresh copy of the retina (the caller's state is untouched) on a
centred spot and returns every stage's trace at the spot's centre; the figures draw what it
returns, so what is plotted is what the tests check.
"""

from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from topo_models import TopoError  # noqa: E402

STIMULI = ("impulse", "step")


@torch.no_grad()
def stage_responses(
    retina,
    stimulus: str = "step",
    duration_s: float = 0.3,
    size: int = 9,
    contrast: float = 0.5,
    background: float = 0.25,
) -> dict[str, np.ndarray]:
    """Centre-pixel traces ``(time,)`` of OPL, bipolar and ON/OFF ganglion input to a spot.

    A full-frame spot of ``background + contrast`` from t = 0 (``step``) or for one frame
    (``impulse``) on ``background``; the retina starts at its steady state on the background.
    Keys: ``time_s``, ``opl``, ``bipolar``, ``ganglion_input_ON``, ``ganglion_input_OFF``.
    """
    if stimulus not in STIMULI:
        raise TopoError("unknown stimulus", field="stimulus", expected=STIMULI, found=stimulus)
    model = copy.deepcopy(retina)
    resolution = model.resolution
    frames = max(int(round(duration_s * resolution.steps_per_second)), 2)
    video = torch.full((1, 1, frames, size, size), float(background))
    if stimulus == "step":
        video[:, :, :] += contrast
    else:
        video[:, :, 0] += contrast
    model.initialize_steady_state(background, size, size)
    centre = size // 2
    opl = model.opl(video)
    bipolar = model.bipolar(opl)
    traces = {
        "time_s": np.arange(frames) / resolution.steps_per_second,
        "opl": opl[0, 0, :, centre, centre].numpy(),
        "bipolar": bipolar[0, 0, :, centre, centre].numpy(),
    }
    for name, stage in (("ON", model.on), ("OFF", model.off)):
        traces[f"ganglion_input_{name}"] = stage(bipolar)[0, 0, :, centre, centre].numpy()
    return traces


def plot_stage_responses(traces: dict[str, np.ndarray], title: str = "") -> plt.Figure:
    """One panel per stage: its trace against time (ms)."""
    names = [key for key in traces if key != "time_s"]
    figure, axes = plt.subplots(len(names), 1, figsize=(6, 1.9 * len(names)), sharex=True)
    for axis, name in zip(axes, names, strict=True):
        axis.plot(traces["time_s"] * 1000.0, traces[name], lw=1.2)
        axis.axhline(0.0, color="grey", lw=0.5)
        axis.set_ylabel(name.replace("ganglion_input_", "ganglion "), fontsize=8)
    axes[-1].set_xlabel("time (ms)")
    figure.suptitle(title or "stage responses at the spot centre")
    figure.tight_layout()
    return figure


def plot_spikes(spikes: torch.Tensor | np.ndarray, steps_per_second: float, cells: int = 50):
    """Raster of the first ``cells`` units and the population rate (Hz) of ``(time, H, W)``."""
    spikes = np.asarray(spikes, dtype=bool)
    if spikes.ndim != 3:
        raise TopoError(
            "spikes are one movie's (time, height, width)", field="spikes", found=spikes.shape
        )
    flat = spikes.reshape(spikes.shape[0], -1)[:, :cells]
    times, units = np.nonzero(flat)
    figure, (raster, rate) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    raster.scatter(times / steps_per_second * 1000.0, units, s=2, color="black")
    raster.set_ylabel("unit")
    population = spikes.reshape(spikes.shape[0], -1).mean(1) * steps_per_second
    rate.plot(np.arange(spikes.shape[0]) / steps_per_second * 1000.0, population, lw=1.0)
    rate.set_ylabel("rate (Hz)")
    rate.set_xlabel("time (ms)")
    figure.tight_layout()
    return figure


def plot_on_off_maps(outputs: dict[str, torch.Tensor], steps_per_second: float) -> plt.Figure:
    """Mean rate (Hz) of every ON and OFF unit of the first movie, side by side."""
    keys = [k for k in outputs if k.endswith("_ON")] + [k for k in outputs if k.endswith("_OFF")]
    if len(keys) != 2:
        raise TopoError(
            "need one ON and one OFF output",
            field="outputs",
            expected="…_ON, …_OFF",
            found=sorted(outputs),
        )
    maps = [outputs[k][0, 0].double().mean(0).numpy() for k in keys]
    if keys[0].startswith("ganglion_spikes"):
        maps = [m * steps_per_second for m in maps]
    top = max(float(np.max(m)) for m in maps) or 1.0
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for axis, key, values in zip(axes, keys, maps, strict=True):
        image = axis.imshow(values, cmap="magma", vmin=0.0, vmax=top)
        axis.set_title(key, fontsize=9)
        figure.colorbar(image, ax=axis, label="mean rate (Hz)", fraction=0.046)
    figure.tight_layout()
    return figure
