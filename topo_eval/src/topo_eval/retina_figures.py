"""Old import path of :mod:`topo_eval.retina.figures`, kept so existing imports still work."""

from topo_eval.retina.figures import (
    STIMULI,
    plot_on_off_maps,
    plot_spikes,
    plot_stage_responses,
    stage_responses,
)

__all__ = ["STIMULI", "plot_on_off_maps", "plot_spikes", "plot_stage_responses", "stage_responses"]
