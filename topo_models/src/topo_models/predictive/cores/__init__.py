"""Sensorium cores: image → feature stack, each returning ``(output, features)``."""

from topo_models.predictive.cores.attention import AttentionConv2d
from topo_models.predictive.cores.common import AdaptiveELU, Bias2DLayer, Scale2DLayer
from topo_models.predictive.cores.hermite import (
    HermiteConv2D,
    RotationEquivariantBatchNorm2D,
    RotationEquivariantBias2DLayer,
    RotationEquivariantScale2DLayer,
)
from topo_models.predictive.cores.rotation import RotationEquivariant2dCore
from topo_models.predictive.cores.se import SE2dCore, SqueezeExcitationBlock
from topo_models.predictive.cores.stacked import DepthSeparableConv2d, Stacked2dCore
from topo_models.predictive.cores.transfer import TransferLearningCore

__all__ = [
    "AdaptiveELU",
    "AttentionConv2d",
    "Bias2DLayer",
    "DepthSeparableConv2d",
    "HermiteConv2D",
    "RotationEquivariant2dCore",
    "RotationEquivariantBatchNorm2D",
    "RotationEquivariantBias2DLayer",
    "RotationEquivariantScale2DLayer",
    "SE2dCore",
    "Scale2DLayer",
    "SqueezeExcitationBlock",
    "Stacked2dCore",
    "TransferLearningCore",
]
