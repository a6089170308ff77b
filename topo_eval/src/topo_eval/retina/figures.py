"""Figures of a retina model: how each stage answers an impulse or a step, spikes, ON/OFF maps,
and what a ``task=retina_run`` run made (built from its chunk files, in bounded memory).

``stage_responses`` runs a fresh copy of the retina (the caller's state is untouched) on a
centred spot and returns every stage's trace at the spot's centre; the figures draw what it
returns, so what is plotted is what the tests check.
"""

from __future__ import annotations

import copy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from topo_data.retina.video import VideoSource  # noqa: E402
from topo_eval.retina.runner import CHECKPOINT_FILE  # noqa: E402
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


def run_output_traces(
    output_dir: str | Path,
    source: VideoSource,
    steps_per_second: float,
    cells: int = 40,
    max_bins: int = 600,
    seed: int = 0,
) -> dict[str, object]:
    """Binned rates of a sample of cells, the population rate and the input's luminance of a
    ``RetinaRunner`` run, read back one chunk file (and one chunk of the movie) at a time, so
    memory stays flat in the movie's length.

    Cells are ``cells`` pixel positions of the first movie and channel, drawn without
    replacement with ``seed``; the same positions are read from every output (ON, OFF). Frames
    are pooled into at most ``max_bins`` equal time bins (one frame per bin for short movies:
    a spiking output is then its raster). Rates are in Hz: spikes per step × steps per second,
    or the ganglion current (Hz) itself.

    Returns:
        ``time_s`` (bins,) bin starts; ``bin_s``; ``cells`` (k, 2) (row, column) of the
        sampled cells; ``rates`` {output: (k, bins)}; ``population`` {output: (bins,)} mean
        over every cell; ``luminance`` (bins,) mean over the frame and ``luminance_range``
        (2, bins) its min and max; ``spikes``; ``frames``; ``grid`` (height, width).
    """
    output_dir = Path(output_dir)
    checkpoint = torch.load(output_dir / CHECKPOINT_FILE, weights_only=True)
    frames, chunks = int(checkpoint["frames_done"]), int(checkpoint["chunks_done"])
    if frames == 0:
        raise TopoError("the run has no frames yet", file=output_dir, field="frames_done")
    n_bins = min(frames, max_bins)
    rates: dict[str, np.ndarray] = {}  # output -> (bins, k)
    population: dict[str, np.ndarray] = {}
    frames_per_bin = np.zeros(n_bins)
    picked, start = None, 0
    for index in range(chunks):
        with np.load(output_dir / f"chunk_{index:06d}.npz") as data:
            arrays = {name: data[name][0, 0] for name in sorted(data.files)}  # (t, H, W)
        length, height, width = next(iter(arrays.values())).shape
        bins = np.arange(start, start + length) * n_bins // frames
        if picked is None:
            rng = np.random.default_rng(seed)
            picked = np.sort(rng.choice(height * width, min(cells, height * width), False))
            spikes = next(iter(arrays.values())).dtype == bool
        for name, values in arrays.items():
            flat = values.reshape(length, -1).astype(np.float64)
            np.add.at(
                rates.setdefault(name, np.zeros((n_bins, len(picked)))), bins, flat[:, picked]
            )
            np.add.at(population.setdefault(name, np.zeros(n_bins)), bins, flat.mean(axis=1))
        np.add.at(frames_per_bin, bins, np.ones(length))
        start += length
    luminance, low, high = np.zeros(n_bins), np.full(n_bins, np.inf), np.full(n_bins, -np.inf)
    start = 0
    for video in source.chunks(min(frames, 1000)):
        frame = video[0].transpose(0, 1).flatten(1).double().numpy()[: frames - start]
        bins = np.arange(start, start + len(frame)) * n_bins // frames
        np.add.at(luminance, bins, frame.mean(axis=1))
        np.minimum.at(low, bins, frame.min(axis=1))
        np.maximum.at(high, bins, frame.max(axis=1))
        start += len(frame)
        if start >= frames:
            break
    scale = steps_per_second if spikes else 1.0
    return {
        "time_s": np.arange(n_bins) * frames / n_bins / steps_per_second,
        "bin_s": frames / n_bins / steps_per_second,
        "cells": np.column_stack(np.divmod(picked, width)),
        "rates": {k: (v / frames_per_bin[:, None] * scale).T for k, v in rates.items()},
        "population": {k: v / frames_per_bin * scale for k, v in population.items()},
        "luminance": luminance / frames_per_bin,
        "luminance_range": np.stack([low, high]),
        "spikes": spikes,
        "frames": frames,
        "grid": (height, width),
    }


def plot_run_output(traces: dict[str, object], steps_per_second: float) -> plt.Figure:
    """What a run made, against time: each output's sampled cells (a raster when a bin is one
    spiking frame, else their rates), the population rate, and the input's luminance."""
    names = sorted(traces["rates"], key=lambda name: (not name.endswith("_ON"), name))
    time_s, bin_s = traces["time_s"], traces["bin_s"]
    end = time_s[-1] + bin_s
    raster = traces["spikes"] and bin_s * steps_per_second == 1
    figure, axes = plt.subplots(
        len(names) + 2,
        1,
        figsize=(9, 1.9 * len(names) + 4.2),
        sharex=True,
        gridspec_kw={"height_ratios": [2] * len(names) + [1.2, 1.2]},
    )
    for axis, name in zip(axes, names, strict=False):
        rates = traces["rates"][name]
        image = axis.imshow(
            rates,
            aspect="auto",
            interpolation="nearest",
            extent=(0.0, end, len(rates) - 0.5, -0.5),
            cmap="Greys" if raster else "magma",
            vmin=0.0 if traces["spikes"] else None,
        )
        axis.set_ylabel("cell", fontsize=8)
        axis.set_title(
            f"{name}: {'spikes' if raster else 'rate'} of {len(rates)} sampled cells",
            fontsize=9,
        )
        figure.colorbar(image, cax=axis.inset_axes((1.01, 0.0, 0.015, 1.0)), label="Hz")
    rate_axis, light_axis = axes[-2], axes[-1]
    for name in names:
        rate_axis.plot(time_s + bin_s / 2, traces["population"][name], lw=1.0, label=name)
    rate_axis.set_ylabel("mean of all\ncells (Hz)", fontsize=8)
    rate_axis.legend(fontsize=7, loc="upper right")
    low, high = traces["luminance_range"]
    middle = time_s + bin_s / 2
    light_axis.fill_between(middle, low, high, color="0.85", step="mid", label="min–max in a bin")
    light_axis.plot(middle, traces["luminance"], color="black", lw=1.0, label="frame mean")
    light_axis.set_ylabel("input\nluminance", fontsize=8)
    light_axis.set_xlabel("time (s)")
    light_axis.legend(fontsize=7, loc="upper right")
    height, width = traces["grid"]
    figure.suptitle(
        f"{traces['frames']} frames ({traces['frames'] / steps_per_second:.3g} s), "
        f"{len(traces['cells'])} of {height}×{width} cells of movie 0 sampled, "
        f"bins of {bin_s * 1000:.3g} ms",
        fontsize=10,
    )
    figure.tight_layout()
    return figure
