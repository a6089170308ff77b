"""Topographic trunks: every one returns ``(output, features)``."""

from topo_models.trunks.resnet_spatial import (
    BLOCK_NAMES,
    RESNET18_AREAS,
    ResNet18Spatial,
    resnet18_spatial,
)

__all__ = ["BLOCK_NAMES", "RESNET18_AREAS", "ResNet18Spatial", "resnet18_spatial"]
