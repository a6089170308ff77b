"""Atomic training checkpoints and the resume check.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, so loading one never runs foreign code. Writes go to a temp
file beside the target and are renamed into place; the previous checkpoint is kept as
``last.prev.pt``, so a run killed mid-write (or a file damaged later) always leaves one intact.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from topo_models import TopoError
from topo_models.atomic import atomic_write

CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "last.prev.pt"
FORMAT = "topo-checkpoint-v1"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    atomic_write(path, lambda stream: torch.save(obj, stream))


def save_checkpoint(state: dict[str, Any], run_dir: Path) -> Path:
    """Write ``run_dir/last.pt`` atomically, keeping the one before as ``last.prev.pt``."""
    target = run_dir / CHECKPOINT_NAME
    if target.exists():
        os.replace(target, run_dir / PREVIOUS_NAME)
    atomic_torch_save({"format": FORMAT, **state}, target)
    return target


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged file is reported, kept."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
    ) as error:
        previous = path.parent / PREVIOUS_NAME
        hint = (
            f"the previous checkpoint {previous} may be intact: move {path.name} away and rename "
            f"{previous.name} to {path.name} to resume from it"
            if previous.exists() and previous != path
            else "move it away (or pick a new run directory) to start over"
        )
        raise TopoError(
            f"checkpoint is corrupt or truncated; it was kept untouched. To continue, {hint}",
            file=path,
            found=f"{type(error).__name__}: {error}",
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TopoError(
            "not a topo training checkpoint",
            file=path,
            field="format",
            expected=FORMAT,
            found=state.get("format") if isinstance(state, dict) else type(state).__name__,
        )
    return state


def find_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume from, if the run directory holds one."""
    path = run_dir / CHECKPOINT_NAME
    return path if path.exists() else None
