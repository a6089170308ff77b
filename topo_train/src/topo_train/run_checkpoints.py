"""Atomic training checkpoints, with a complete one on disk at every instant.

A checkpoint is a plain dict saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (through ``topo_models.safe_load``), so loading one never runs
foreign code. A save writes the new file whole under a temp name and fsyncs it; only then is
``last.pt`` rotated to ``last.prev.pt`` and the temp file renamed to ``last.pt``. A kill at any
instant therefore leaves a complete checkpoint under ``last.pt`` or ``last.prev.pt``, and
:func:`latest_checkpoint` resumes from whichever is intact.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from topo_models import TopoError
from topo_models.atomic import atomic_write
from topo_models.safe_load import read_torch_file

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "last.prev.pt"
DAMAGED_SUFFIX = ".damaged"
TEMP_SUFFIX = ".tmp"
FORMAT = "topo-checkpoint-v1"

# Called with "written" (the temp file is complete) and "rotated" (last.pt moved to
# last.prev.pt, the new file not yet renamed): lets a test kill a run inside the write window.
write_hook: Callable[[str], None] | None = None


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    atomic_write(path, lambda stream: torch.save(obj, stream))


def _fsync_directory(directory: Path) -> None:
    """Make the renames themselves durable (a power cut must not undo them)."""
    with contextlib.suppress(OSError):  # some file systems cannot open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(state: dict[str, Any], run_dir: Path) -> Path:
    """Write ``run_dir/last.pt``, keeping the one before as ``last.prev.pt``."""
    target = run_dir / CHECKPOINT_NAME

    def rotate() -> None:  # the new file is complete on disk by now
        _hook("written")
        if target.exists():
            os.replace(target, run_dir / PREVIOUS_NAME)
        _hook("rotated")

    atomic_write(target, lambda stream: torch.save({"format": FORMAT, **state}, stream), rotate)
    _fsync_directory(run_dir)
    return target


def _hook(phase: str) -> None:
    if write_hook is not None:
        write_hook(phase)


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete temp files a killed write left in ``run_dir`` (call under the run's lock)."""
    stale = sorted(run_dir.glob(f".*{TEMP_SUFFIX}")) if run_dir.is_dir() else []
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if stale:
        log.info("removed %d temp file(s) of an interrupted write in %s", len(stale), run_dir)
    return stale


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a damaged or refused file is
    reported and kept."""
    state = read_torch_file(path, map_location)
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
    """The newest checkpoint file in the run directory (``last.pt``, else ``last.prev.pt``)."""
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def latest_checkpoint(
    run_dir: Path, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """(path, contents) of the checkpoint to resume from; None for a fresh run.

    ``last.pt`` when it is intact; else ``last.prev.pt`` (a kill between the rotation's two
    renames leaves no ``last.pt``; a damaged ``last.pt`` is kept beside as
    ``last.pt.damaged`` so the next rotation cannot overwrite the good previous one).

    Raises:
        TopoError: every checkpoint present is damaged or refused (files kept untouched).
    """
    current, previous = run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_NAME
    if not current.is_file():
        return (previous, load_checkpoint(previous, map_location)) if previous.is_file() else None
    try:
        return current, load_checkpoint(current, map_location)
    except TopoError as error:
        if not previous.is_file():
            raise TopoError(
                f"{str(error).splitlines()[0]}; no {PREVIOUS_NAME} to fall back to. Move it away "
                "(or pick a new run directory) to start over",
                file=current,
                field=error.field,
                expected=error.expected,
                found=error.found,
            ) from error
        state = load_checkpoint(previous, map_location)
        os.replace(current, current.with_name(current.name + DAMAGED_SUFFIX))
        log.warning("%s is damaged (%s); resuming from %s", current, error.found, previous)
        return previous, state
