"""Predictive models of neural responses (Sensorium): the competition's metrics (importable
from here, as ``topo_eval.predictive.correlation`` …), per-neuron and per-session reports,
figures, submission files, and ``task=predictive``."""

from topo_eval.predictive.metrics import (
    FEV_THRESHOLD,
    correlation,
    correlation_to_average,
    explainable_variance,
    feve,
)

__all__ = [
    "FEV_THRESHOLD",
    "correlation",
    "correlation_to_average",
    "explainable_variance",
    "feve",
]
