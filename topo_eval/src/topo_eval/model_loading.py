"""Rebuild a trained model (kept here for ``from topo_eval.model_loading import …``; the loader
lives in :mod:`topo_models.trained` so that ``topo_train`` uses the same one)."""

from topo_models.trained import load_trained_model

__all__ = ["load_trained_model"]
