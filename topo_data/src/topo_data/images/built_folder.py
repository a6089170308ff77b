"""Image folders written once from their parameters (the embedded photo set, the category set).

Each is built in a temp folder beside its place and renamed in whole, so a reader never sees
half a folder; its ``manifest.json`` records the parameters, and a folder whose manifest holds
the same ones is reused as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from topo_data.errors import TopoDataError


def check_integers(**checks: tuple[object, int]) -> None:
    """Each ``name=(value, minimum)`` must be an int (not a bool) of at least ``minimum``."""
    for field, (value, minimum) in checks.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise TopoDataError(
                f"bad {field}", field=field, expected=f"int >= {minimum}", found=repr(value)
            )


def read_manifest(root: Path) -> dict | None:
    """The folder's manifest, or None when there is none (or it cannot be read)."""
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def is_built(root: Path, parameters: dict, kind: str) -> bool:
    """True when ``root`` already holds the folder of these parameters; refuses to replace a
    path that is not one of ours (``kind`` names what was expected)."""
    manifest = read_manifest(root) if root.is_dir() else None
    if manifest is not None and manifest.get("parameters") == parameters:
        return True
    if root.exists() and manifest is None and (not root.is_dir() or any(root.iterdir())):
        raise TopoDataError(
            f"refusing to overwrite a path that is not {kind}",
            file=root,
            expected="a missing or empty directory, or one holding our manifest.json",
        )
    return False


def build_in_place(root: Path, parameters: dict, build: Callable[[Path], None]) -> None:
    """``build(staging)`` (which writes the manifest last), then rename ``staging`` to
    ``root``, moving an empty or older folder aside; a concurrent writer that finished the
    same folder first wins."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        build(staging)
        existing = read_manifest(root) if root.is_dir() else None
        if existing is not None and existing.get("parameters") == parameters:
            return  # another process wrote the same folder meanwhile: keep it (readers may use it)
        if root.is_dir():
            retired = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            with contextlib.suppress(FileNotFoundError):  # another process moved it already
                os.replace(root, retired)  # replaces the empty placeholder directory
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.replace(staging, root)
        except OSError:
            manifest = read_manifest(root)
            if manifest is None or manifest.get("parameters") != parameters:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
