"""Losses of topographic models: spatial correlation (TDANN), SimCLR NT-Xent, the proximity /
transport costs of spatial networks (Wołczyk et al. 2019, also on any trunk with learned channel
positions), TopoLoss (Deb et al. 2025), the
wiring cost of interactive topographic networks (Blauch et al. 2022) and the neighbour-cosine
smoothness of all-topographic networks (Lu et al. 2025)."""

from topo_models.losses.channel_costs import ChannelSpatialCosts
from topo_models.losses.neighbour_cosine import (
    NeighbourCosineLoss,
    hypercolumn_sheet,
    neighbour_cosine_loss,
)
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
from topo_models.losses.topoloss import TopoLoss, laplacian_pyramid_loss
from topo_models.losses.wiring_cost import WiringCost, wiring_cost

__all__ = [
    "ChannelSpatialCosts",
    "NTXentLoss",
    "NeighbourCosineLoss",
    "ProximityCost",
    "SpatialCorrelationLoss",
    "SpatialCosts",
    "TopoLoss",
    "TransportCost",
    "WiringCost",
    "batched_spatial_correlation_loss",
    "hypercolumn_sheet",
    "laplacian_pyramid_loss",
    "neighbour_cosine_loss",
    "nt_xent_loss",
    "proximity_cost",
    "spatial_correlation_loss",
    "transport_cost",
    "wiring_cost",
]
