"""Old import path of :mod:`topo_data.retina.responses`, kept because the configs saved inside
existing checkpoints name ``topo_data.retina_responses.RetinaResponseData`` (an alias of the same
class in :func:`topo_data.catalog.data_module_constructors`)."""

from topo_data.retina.responses import (
    REQUIRED,
    TRUTH,
    RetinaBatch,
    RetinaResponseData,
    causal_drive,
    planted_kernels,
    read_recording,
    simulate_recording,
    softplus,
    write_recording,
)

__all__ = [
    "REQUIRED",
    "TRUTH",
    "RetinaBatch",
    "RetinaResponseData",
    "causal_drive",
    "planted_kernels",
    "read_recording",
    "simulate_recording",
    "softplus",
    "write_recording",
]
