"""Old import path of :mod:`topo_eval.retina.runner`, kept so existing imports still work."""

from topo_eval.retina.runner import (
    CHECKPOINT_FILE,
    PARAMETERS_FILE,
    RUN_FILE,
    RUN_FORMAT,
    SUMMARY_FILE,
    RetinaRunner,
    RunProgress,
    RunSummary,
    mean_rates_hz,
    read_outputs,
    retina_identity,
)

__all__ = [
    "CHECKPOINT_FILE",
    "PARAMETERS_FILE",
    "RUN_FILE",
    "RUN_FORMAT",
    "RetinaRunner",
    "RunProgress",
    "RunSummary",
    "SUMMARY_FILE",
    "mean_rates_hz",
    "read_outputs",
    "retina_identity",
]
