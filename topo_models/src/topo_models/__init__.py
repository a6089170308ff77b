"""topo_models: topographic trunks, cortical-sheet positions, spatial networks and spatial losses.

Depends on torch and torchvision only; imports nothing else of topo.
"""

from topo_models import (
    predictive,  # registers sensorium_cnn / sensorium_ln
    spatial,  # registers spatial_mlp / spatial_cnn
)
from topo_models.errors import TopoError
from topo_models.registry import create_model, list_models, register_model
from topo_models.trunks import ResNet18Spatial, resnet18_spatial

__all__ = [
    "ResNet18Spatial",
    "TopoError",
    "create_model",
    "list_models",
    "predictive",
    "register_model",
    "resnet18_spatial",
    "spatial",
]
