"""Old import path of :mod:`topo_eval.predictive.report`, kept so existing imports still work."""

from topo_eval.predictive.report import (
    NEURON_COLUMNS,
    Loader,
    image_ids_of,
    model_predictions,
    neuron_table,
    readout_positions,
    session_scores,
    session_table,
    write_tables,
)

__all__ = [
    "Loader",
    "NEURON_COLUMNS",
    "image_ids_of",
    "model_predictions",
    "neuron_table",
    "readout_positions",
    "session_scores",
    "session_table",
    "write_tables",
]
