"""TDANN-style networks: responses to an image, registered on the cortical sheet."""

from topo_eval.tdann.responses import plot_layer, registered_responses

__all__ = ["plot_layer", "registered_responses"]
