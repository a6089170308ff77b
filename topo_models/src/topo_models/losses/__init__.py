"""Losses of topographic models: spatial correlation (TDANN) and SimCLR NT-Xent."""

from topo_models.losses.simclr import NTXentLoss, nt_xent_loss
from topo_models.losses.spatial_correlation import (
    batched_spatial_correlation_loss,
    spatial_correlation_loss,
)
from topo_models.losses.spatial_loss import SpatialCorrelationLoss

__all__ = [
    "NTXentLoss",
    "SpatialCorrelationLoss",
    "batched_spatial_correlation_loss",
    "nt_xent_loss",
    "spatial_correlation_loss",
]
