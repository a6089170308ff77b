"""The figure of ``task=retina_report``: drawn from the report's table and the centre-cell
traces ``report.characterise`` returns, so what is plotted is what the table says."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLOURS = {"ON": "tab:red", "OFF": "tab:blue", "bipolar": "0.45"}  # by cell
LINES = {"current": "-", "spikes": "--", "bipolar": ":", "peak": "-", "sustained": "--"}


def plot_report(table: pd.DataFrame, traces: dict[str, object], title: str = "") -> plt.Figure:
    """Six panels: current and PSTH of ON/OFF at the reference contrast (increment: solid,
    decrement: dashed), contrast-response curves (peak and sustained) of current and spikes,
    and the temporal and spatial transfer functions (F1 amplitude over each curve's maximum)."""
    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    time_ms = np.asarray(traces["time_s"]) * 1000.0
    contrasts = np.asarray(traces["contrasts"])
    reference = float(traces["reference"])
    for axis, key, label in (
        (axes[0, 0], "current", "current (Hz)"),
        (axes[0, 1], "rate", "PSTH (Hz)"),
    ):
        for cell in ("ON", "OFF"):
            for sign, line in ((1, "-"), (-1, "--")):
                row = int(np.flatnonzero(np.isclose(contrasts, sign * reference))[0])
                polarity = "increment" if sign > 0 else "decrement"
                axis.plot(
                    time_ms,
                    traces[key][cell][row],
                    line,
                    color=COLOURS[cell],
                    lw=1.0,
                    label=f"{cell}, {polarity}",
                )
        axis.axvline(0.0, color="0.6", lw=0.8)
        axis.set_xlabel("time from spot onset (ms)")
        axis.set_ylabel(label)
        axis.set_title(f"centre cell, spot of contrast ±{reference:g}", fontsize=9)
        axis.legend(fontsize=7)
    panels = [
        (axes[0, 2], "contrast_response", "current", "contrast (preferred polarity)"),
        (axes[1, 0], "contrast_response", "spikes", "contrast (preferred polarity)"),
        (axes[1, 1], "temporal_transfer", None, "temporal frequency (Hz)"),
        (axes[1, 2], "spatial_transfer", None, "spatial frequency (cpd)"),
    ]
    for axis, section, signal, x_label in panels:
        rows = table[table.section == section]
        if signal is None:  # transfer functions: every signal, each over its maximum
            for (cell, name), group in rows.groupby(["cell", "signal"], sort=False):
                top = group.value.max() or 1.0
                axis.plot(
                    group.x,
                    group.value / top,
                    LINES[name],
                    color=COLOURS[cell],
                    marker="o",
                    ms=3,
                    label=f"{cell} {name}",
                )
            axis.set_ylabel("F1 amplitude / its maximum")
            axis.set_title(section.replace("_", " "), fontsize=9)
        else:
            rows = rows[(rows.signal == signal) & rows.quantity.isin(["peak", "sustained"])]
            for (cell, quantity), group in rows.groupby(["cell", "quantity"], sort=False):
                axis.plot(
                    group.x,
                    group.value,
                    LINES[quantity],
                    color=COLOURS[cell],
                    marker="o",
                    ms=3,
                    label=f"{cell} {quantity}",
                )
            axis.set_ylabel(f"{signal} above baseline (Hz)")
            axis.set_title(f"contrast response: {signal}", fontsize=9)
        ticks = np.unique(rows.x)
        axis.set_xscale("log")
        axis.set_xticks(ticks, [f"{x:g}" for x in ticks])
        axis.minorticks_off()
        axis.set_xlabel(x_label)
        axis.legend(fontsize=7)
    figure.suptitle(title or "retina report")
    figure.tight_layout()
    return figure
