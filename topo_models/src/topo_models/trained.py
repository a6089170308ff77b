"""Rebuild a trained model from a file: topo's ``model.pt`` (weights + the model's own config),
a TDANN/VISSL checkpoint, a torchvision ResNet-18 state dict, or a Sensorium encoder.

The saved config never chooses what is called: its ``_target_`` must be one of
:func:`topo_models.registry.model_constructors` (see :mod:`topo_models.rebuild`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from topo_models.errors import TopoError
from topo_models.rebuild import build_from_config
from topo_models.registry import model_constructors
from topo_models.safe_load import read_torch_file


def load_trained_model(path: str | Path, map_location: str = "cpu") -> nn.Module:
    """Model in eval mode from a ``model.pt`` written by ``topo_train``, a TDANN/VISSL
    checkpoint or a torchvision ResNet-18 state dict (weights-only loading throughout)."""
    path = Path(path)
    saved = read_torch_file(path, map_location)
    if not (isinstance(saved, dict) and "model_config" in saved and "model" in saved):
        from topo_models.checkpoints import load_tdann_checkpoint

        return load_tdann_checkpoint(path, map_location=map_location)  # TDANN / torchvision
    config = saved["model_config"]
    target = config.get("_target_") if isinstance(config, dict) else None
    if isinstance(target, str) and target.startswith("topo_models.predictive."):
        from topo_models.predictive import load_checkpoint  # sizes come from the weights

        return load_checkpoint(path, map_location=map_location)
    model = build_from_config(config, model_constructors(), file=path, field="model_config")
    missing, unexpected = model.load_state_dict(saved["model"], strict=False)
    if missing or unexpected:
        raise TopoError(
            "weights do not fit the model",
            file=path,
            field="model",
            expected=f"no missing keys (missing: {missing[:5]})",
            found=f"unexpected: {unexpected[:5]}",
        )
    return model.eval()
