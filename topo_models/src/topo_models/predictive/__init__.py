"""Neural predictive models of mouse V1 (the Sensorium 2022 baselines).

Vocabulary of neuralpredictors: a shared *core* turns images into feature maps, a *readout* per
data key (recording session) maps them to neurons, an optional *shifter* moves all readout
positions with the eye. ``sensorium_cnn`` / ``sensorium_ln`` build the published baselines
(also through ``topo_models.create_model``); ``load_checkpoint`` reads their weights.
State-dict names follow neuralpredictors 0.3.0, so the published checkpoints load.
"""

from topo_models.predictive.builders import (
    BASELINE_CNN,
    core_output_shape,
    sensorium_cnn,
    sensorium_ln,
    stacked_core_full_gauss_readout,
)
from topo_models.predictive.cores import (
    DepthSeparableConv2d,
    RotationEquivariant2dCore,
    SE2dCore,
    Stacked2dCore,
    TransferLearningCore,
)
from topo_models.predictive.encoder import FiringRateEncoder
from topo_models.predictive.readouts import (
    FullGaussian2d,
    MultipleFullGaussian2d,
    grid_mean_predictor_mlp,
    normalize_source_grid,
)
from topo_models.predictive.regularizers import (
    GaussianLaplaceL2,
    Laplace,
    LaplaceL1,
    LaplaceL2,
    LaplaceL2norm,
    group_sparsity,
    laplace_filter,
)
from topo_models.predictive.saved_weights import infer_architecture, load_checkpoint
from topo_models.predictive.shifters import MLP, MLPShifter, StaticAffine2d, StaticAffine2dShifter

__all__ = [
    "BASELINE_CNN",
    "MLP",
    "DepthSeparableConv2d",
    "FiringRateEncoder",
    "FullGaussian2d",
    "GaussianLaplaceL2",
    "Laplace",
    "LaplaceL1",
    "LaplaceL2",
    "LaplaceL2norm",
    "MLPShifter",
    "MultipleFullGaussian2d",
    "RotationEquivariant2dCore",
    "SE2dCore",
    "Stacked2dCore",
    "StaticAffine2d",
    "StaticAffine2dShifter",
    "TransferLearningCore",
    "core_output_shape",
    "grid_mean_predictor_mlp",
    "group_sparsity",
    "infer_architecture",
    "laplace_filter",
    "load_checkpoint",
    "normalize_source_grid",
    "sensorium_cnn",
    "sensorium_ln",
    "stacked_core_full_gauss_readout",
]
