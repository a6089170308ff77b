"""VirtualRetina-like retina model (reference/retina.md §1), re-implemented in torch.

``Retina`` assembles the stages; ``Resolution`` fixes px/deg and frames/s for all of them.
"""

from topo_models.retina.parameters import PhysicalParameter, PhysicalStage
from topo_models.retina.resolution import Resolution
from topo_models.retina.retina import Retina
from topo_models.retina.stages import (
    OPL,
    Bipolar,
    GanglionInput,
    GanglionSpiking,
    ganglion_nonlinearity,
)

__all__ = [
    "OPL",
    "Bipolar",
    "GanglionInput",
    "GanglionSpiking",
    "PhysicalParameter",
    "PhysicalStage",
    "Resolution",
    "Retina",
    "ganglion_nonlinearity",
]
