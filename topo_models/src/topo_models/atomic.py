"""Atomic file writes: a temp file in the target's directory, fsync, then ``os.replace``.

A crash or kill leaves either the old file or the new one, never half a file. Every package
that may import topo_models writes its outputs (positions, checkpoints, tables, figures) here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(
    target: Path,
    write: Callable[[IO[bytes]], object],
    before_replace: Callable[[], object] | None = None,
) -> None:
    """Call ``write`` on a temp file beside ``target`` (directories created), then rename.

    ``before_replace`` runs once the temp file is complete and synced, just before the rename
    (a checkpoint rotates the previous file there).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(data: bytes, target: Path) -> None:
    """Write ``data`` to ``target`` atomically."""
    atomic_write(target, lambda fh: fh.write(data))
