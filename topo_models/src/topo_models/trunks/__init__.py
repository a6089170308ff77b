"""Topographic trunks: every one returns ``(output, features)``."""

from topo_models.trunks.all_tnn import AllTNN, all_tnn
from topo_models.trunks.locally_connected import LocallyConnected2d
from topo_models.trunks.resnet_spatial import (
    BLOCK_NAMES,
    RESNET18_AREAS,
    ResNet18Spatial,
    resnet18_spatial,
)

__all__ = [
    "BLOCK_NAMES",
    "RESNET18_AREAS",
    "AllTNN",
    "LocallyConnected2d",
    "ResNet18Spatial",
    "all_tnn",
    "resnet18_spatial",
]
