"""topo_eval: analyses of trained topographic models (imports topo_models and topo_data only)."""

from topo_eval.model_loading import load_trained_model
from topo_eval.responses import plot_layer, registered_responses

__all__ = ["load_trained_model", "plot_layer", "registered_responses"]
