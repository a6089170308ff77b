"""Old import path of :mod:`topo_eval.tdann.responses`, kept so existing imports still work."""

from topo_eval.figure_files import write_figure
from topo_eval.tdann.responses import plot_layer, registered_responses

__all__ = ["plot_layer", "registered_responses", "write_figure"]
