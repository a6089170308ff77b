"""VirtualRetina-like retina model (Wohrer & Kornprobst 2009), re-implemented in torch.

``Retina`` assembles the stages; ``Resolution`` fixes px/deg and frames/s for all of them;
VirtualRetina XML files and presets set its parameters. LN-family models and spike-triggered
estimators are the simpler models fitted to recorded responses.
"""

from topo_models.retina.estimators import spike_triggered_average, spike_triggered_covariance
from topo_models.retina.ln import (
    LN,
    LinearFilter3d,
    LNCascade,
    SeparableFilter3d,
    SeparableLN,
    StaticNonlinearity,
    cell_ln,
    memory_frames,
)
from topo_models.retina.parameters import ParameterInfo, PhysicalParameter, PhysicalStage
from topo_models.retina.presets import PRESETS, preset_parameters
from topo_models.retina.resolution import Resolution
from topo_models.retina.retina import Retina
from topo_models.retina.spiking import GanglionSpiking
from topo_models.retina.stages import OPL, Bipolar, GanglionInput, ganglion_nonlinearity
from topo_models.retina.virtualretina_xml import (
    VirtualRetinaConfig,
    read_virtualretina_xml,
    write_virtualretina_xml,
)

__all__ = [
    "LN",
    "OPL",
    "PRESETS",
    "Bipolar",
    "GanglionInput",
    "GanglionSpiking",
    "LNCascade",
    "LinearFilter3d",
    "ParameterInfo",
    "PhysicalParameter",
    "PhysicalStage",
    "Resolution",
    "Retina",
    "SeparableFilter3d",
    "SeparableLN",
    "StaticNonlinearity",
    "VirtualRetinaConfig",
    "cell_ln",
    "ganglion_nonlinearity",
    "memory_frames",
    "preset_parameters",
    "read_virtualretina_xml",
    "spike_triggered_average",
    "spike_triggered_covariance",
    "write_virtualretina_xml",
]
