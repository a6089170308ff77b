"""Rebuild a trained model: topo's ``model.pt`` (weights + the model's own config), or a
TDANN/VISSL checkpoint or torchvision ResNet-18 state dict (through ``topo_models.checkpoints``).
Neural predictive models are rebuilt from their weights (``topo_models.predictive``).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from topo_models import TopoError


def load_trained_model(path: str | Path, map_location: str = "cpu") -> nn.Module:
    """Model in eval mode from a ``model.pt`` written by ``topo_train``, a TDANN/VISSL
    checkpoint or a torchvision ResNet-18 state dict (weights_only loading throughout)."""
    path = Path(path)
    if not path.is_file():
        raise TopoError(
            "no such model file", file=path, expected="a model.pt written by topo_train"
        )
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise TopoError(
            "model file is corrupt or truncated",
            file=path,
            found=f"{type(error).__name__}: {error}",
        ) from error
    if not (isinstance(saved, dict) and "model_config" in saved and "model" in saved):
        from topo_models.checkpoints import load_tdann_checkpoint

        return load_tdann_checkpoint(path, map_location=map_location)  # TDANN / torchvision
    if str(saved["model_config"].get("_target_", "")).startswith("topo_models.predictive."):
        from topo_models.predictive import load_checkpoint  # sizes come from the weights

        return load_checkpoint(path, map_location=map_location)
    model = instantiate(saved["model_config"])
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
