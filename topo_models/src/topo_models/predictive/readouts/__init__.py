"""Readouts: core feature maps → neuron responses, one Gaussian readout per data key.

``gaussian`` holds ``FullGaussian2d`` (Lurz et al. 2021), ``grid`` the cortical-coordinate
position predictor, ``multi`` the per-data-key container ``MultipleFullGaussian2d``.
"""

from topo_models.predictive.readouts.gaussian import FullGaussian2d
from topo_models.predictive.readouts.grid import grid_mean_predictor_mlp, normalize_source_grid
from topo_models.predictive.readouts.multi import MultipleFullGaussian2d

__all__ = [
    "FullGaussian2d",
    "MultipleFullGaussian2d",
    "grid_mean_predictor_mlp",
    "normalize_source_grid",
]
