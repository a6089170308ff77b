"""Figures written as PNG files, atomically: what every task's ``figures/`` folder holds."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from topo_models.atomic import atomic_write_bytes  # noqa: E402


def write_figure(figure: plt.Figure, path: Path) -> None:
    """PNG written atomically (temp file + rename); the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(buffer.getvalue(), path)
