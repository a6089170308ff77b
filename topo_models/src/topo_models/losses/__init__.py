"""Losses of topographic models: spatial correlation (TDANN), SimCLR NT-Xent and the
proximity / transport costs of spatial networks (Wołczyk et al. 2019)."""

from topo_models.losses.simclr import NTXentLoss, nt_xent_loss
from topo_models.losses.spatial_correlation import (
    batched_spatial_correlation_loss,
    spatial_correlation_loss,
)
from topo_models.losses.spatial_costs import (
    ProximityCost,
    SpatialCosts,
    TransportCost,
    proximity_cost,
    transport_cost,
)
from topo_models.losses.spatial_loss import SpatialCorrelationLoss

__all__ = [
    "NTXentLoss",
    "ProximityCost",
    "SpatialCorrelationLoss",
    "SpatialCosts",
    "TransportCost",
    "batched_spatial_correlation_loss",
    "nt_xent_loss",
    "proximity_cost",
    "spatial_correlation_loss",
    "transport_cost",
]
