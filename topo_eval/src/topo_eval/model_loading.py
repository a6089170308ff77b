"""Rebuild a trained topo model from its ``model.pt`` (weights + the model's own config)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from topo_models import TopoError


def load_trained_model(path: str | Path, map_location: str = "cpu") -> nn.Module:
    """Model in eval mode from a ``model.pt`` written by ``topo_train`` (weights_only loading)."""
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
    for key in ("model", "model_config"):
        if not isinstance(saved, dict) or key not in saved:
            raise TopoError(
                "not a topo model file", file=path, field=key, expected="keys model, model_config"
            )
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
