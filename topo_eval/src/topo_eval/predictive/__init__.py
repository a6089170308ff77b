"""Predictive models of neural responses (Sensorium): the competition's metrics (importable
from here, as ``topo_eval.predictive.correlation`` …), FEVE with a known noise, scores against a
simulated mouse's truth (``ground_truth``), per-neuron and per-session reports, figures,
submission files, and ``task=predictive``."""

from topo_eval.predictive.metrics import (
    FEV_THRESHOLD,
    correlation,
    correlation_to_average,
    explainable_variance,
    explainable_variance_given_rates,
    feve,
    feve_given_rates,
)

__all__ = [
    "FEV_THRESHOLD",
    "correlation",
    "correlation_to_average",
    "explainable_variance",
    "explainable_variance_given_rates",
    "feve",
    "feve_given_rates",
]
