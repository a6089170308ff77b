"""Fixed margins, in inches, for the figures a run draws at its end."""

from __future__ import annotations

from matplotlib.figure import Figure


def set_margins_in_inches(
    figure: Figure,
    panel_inches: tuple[float, float],
    outer: tuple[float, float, float, float],
    between: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Place a figure's grid of panels with margins in inches instead of a layout engine.

    A layout engine (constrained or tight) measures every label before drawing: about half of a
    small figure's time, paid at the end of every run.

    Args:
        figure: a figure whose size is a whole number of panels of ``panel_inches``.
        panel_inches: (width, height) of one panel with its share of the margins.
        outer: left, right, bottom and top margins of the figure.
        between: the gaps between columns and between rows (tick labels, titles, colour bars).
    """
    width, height = figure.get_size_inches()
    left, right, bottom, top = outer
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=between[0] / (panel_inches[0] - between[0]),
        hspace=between[1] / (panel_inches[1] - between[1]),
    )
