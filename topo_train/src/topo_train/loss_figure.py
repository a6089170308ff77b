"""The loss curves of a run: ``figures/loss_curves.png``, drawn from ``metrics.jsonl`` at the end.

One panel per group of metrics, against the optimiser step. A key's group is its prefix
(``loss/total`` and ``loss/task`` → ``loss``; ``spatial/layer2_0`` → ``spatial``;
``val/loss/total`` → ``val/loss``), except that a key other keys break down is a group of its
own (``val/accuracy`` with ``val/accuracy/task0``…). Read from the file, not kept in memory
during training, so a run's memory stays flat however long it trains.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from topo_models.atomic import atomic_write_bytes  # noqa: E402
from topo_train.figure_margins import set_margins_in_inches  # noqa: E402

FIGURE = Path("figures") / "loss_curves.png"
NOT_CURVES = ("step", "epoch", "lr")  # the loop's bookkeeping, not losses
MAX_PANELS = 12
MAX_LEGEND = 12
COLUMNS = 3
PANEL_INCHES = (4.2, 3.0)  # width, height of one panel with its share of the margins
OUTER_INCHES = (0.7, 0.15, 0.55, 0.5)  # left, right, bottom, top
BETWEEN_INCHES = (0.75, 0.8)  # between columns (tick labels), between rows (titles)

Series = dict[str, tuple[list[int], list[float]]]


def read_series(metrics_path: Path) -> Series:
    """key → (steps, values) of every numeric metric in a ``metrics.jsonl``, in file order."""
    series: Series = {}
    with open(metrics_path) as stream:
        for line in stream:
            if not line.strip():
                continue
            record = json.loads(line)
            step = int(record["step"])
            for key, value in record.items():
                if key in NOT_CURVES or not isinstance(value, int | float):
                    continue
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def group_of(key: str, keys: set[str]) -> str:
    """The panel ``key`` is drawn in (see the module docstring)."""
    if "/" not in key or any(other.startswith(f"{key}/") for other in keys):
        return key
    return key.rsplit("/", 1)[0]


def metric_groups(keys: list[str]) -> dict[str, list[str]]:
    """Group → its keys: ``loss`` first, then the other loss groups (``val/loss``), then the
    others, each in the order of its first key."""
    groups: dict[str, list[str]] = defaultdict(list)
    every = set(keys)
    for key in keys:
        groups[group_of(key, every)].append(key)
    order = sorted(groups, key=lambda group: (group != "loss", "loss" not in group.split("/")))
    return {group: groups[group] for group in order}


def write_loss_figure(metrics_path: Path, path: Path) -> Path | None:
    """Draw the curves of ``metrics_path`` into ``path`` (PNG, written atomically); None when
    nothing was logged."""
    if not metrics_path.is_file():
        return None
    series = read_series(metrics_path)
    groups = list(metric_groups(list(series)).items())[:MAX_PANELS]
    if not groups:
        return None
    rows = math.ceil(len(groups) / COLUMNS)
    columns = min(COLUMNS, len(groups))
    size = (PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows)
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    set_margins_in_inches(figure, PANEL_INCHES, OUTER_INCHES, BETWEEN_INCHES)
    for ax, (group, keys) in zip(axes.flat, groups, strict=False):
        for key in keys:
            steps, values = series[key]
            label = key[len(group) + 1 :] if key != group else key.rsplit("/", 1)[-1]
            ax.plot(steps, values, marker="o" if len(steps) < 3 else None, ms=4, label=label)
        ax.set_title(group if len(keys) > 1 else keys[0], fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if 1 < len(keys) <= MAX_LEGEND:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    figure.suptitle(f"metrics of {metrics_path.parent.name} (from {metrics_path.name})", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(buffer.getvalue(), path)
    return path
