"""Spatial networks (Wołczyk et al. 2019): layers whose neurons have learnable positions.

Importing this package registers ``spatial_mlp`` and ``spatial_cnn`` with ``create_model``.
The spatial costs that act on the positions live in ``topo_models.losses.spatial_costs``.
"""

from topo_models.spatial.layers import SpatialConv2d, SpatialLinear, is_spatial
from topo_models.spatial.multitask_head import (
    IGNORE_INDEX,
    multitask_cross_entropy,
    task_correct_counts,
    task_logits,
)
from topo_models.spatial.networks import SpatialCNN, SpatialMLP, make_activation

__all__ = [
    "IGNORE_INDEX",
    "SpatialCNN",
    "SpatialConv2d",
    "SpatialLinear",
    "SpatialMLP",
    "is_spatial",
    "make_activation",
    "multitask_cross_entropy",
    "task_correct_counts",
    "task_logits",
]
