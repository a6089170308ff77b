"""Old import path of :mod:`topo_eval.predictive.figures`, kept so existing imports still work."""

from topo_eval.predictive.figures import (
    plot_correlation_histograms,
    plot_rf_positions,
    retinotopy_r,
)

__all__ = ["plot_correlation_histograms", "plot_rf_positions", "retinotopy_r"]
