"""Each family's objective: what one training step computes and what validation measures.

The loop (:mod:`topo_train.trainer`) knows only the :class:`topo_train.contracts.Objective`
contract; everything particular to a family lives in its module here.
"""

from topo_train.objectives.multitask import MultiTaskObjective
from topo_train.objectives.predictive import PoissonObjective
from topo_train.objectives.retina import RetinaPoissonObjective
from topo_train.objectives.tdann import (
    SimCLRObjective,
    SupervisedObjective,
    config_key,
    resolve_layer_weights,
)

__all__ = [
    "MultiTaskObjective",
    "PoissonObjective",
    "RetinaPoissonObjective",
    "SimCLRObjective",
    "SupervisedObjective",
    "config_key",
    "resolve_layer_weights",
]
