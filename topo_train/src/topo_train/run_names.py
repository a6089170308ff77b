"""Run and sweep directory names derived from the command-line overrides.

Derived, not random, so that running a command again finds its directory and resumes. Safe to
paste as an override value: ``python -m topo_eval checkpoint=runs/topo_train/<name>/model.pt``
parses as written, so a name holds only letters, digits and ``_ . + -`` (no ``=``, ``,``,
quotes, spaces or brackets, which Hydra's override parser or a shell would read). Each
``key=value`` becomes ``key-value``, items are joined with ``__`` and a sweep's value list
``a,b`` becomes ``a+b``:

    experiment=spatial_multitask trainer.max_epochs=2
        → experiment-spatial_multitask__trainer.max_epochs-2

A name that had to drop characters (``data.paths=[a/b]``) or is too long for a file name ends in
a hash of the overrides, so distinct commands keep distinct directories. Directories named the
old way (``experiment=spatial_multitask,trainer.max_epochs=2``) are still found and resumed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

MAX_DIRNAME = 120
DEFAULT_NAME = "default"
KEY_VALUE = "-"
ITEMS = "__"
VALUES = "+"  # a sweep's comma-separated values
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+\-]+")
_MAX_MLFLOW_NAME = 250  # MLflow's limit on a run name


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _bounded(name: str, source: str, lossy: bool) -> str:
    """``name``, with a hash of ``source`` appended when characters were dropped or it is too
    long for a file name (then cut to :data:`MAX_DIRNAME`)."""
    if not lossy and len(name) <= MAX_DIRNAME:
        return name
    return f"{name[: MAX_DIRNAME - 13]}-{_digest(source)}"


def run_dirname(overrides: Sequence[str]) -> str:
    """The paste-safe directory name of a run (or sweep) with these overrides (``key=value``
    lines as typed, sorted by the caller); ``default`` without any."""
    if not overrides:
        return DEFAULT_NAME
    items, lossy = [], False
    for line in overrides:
        key, sep, value = line.partition("=")
        value = value.replace(",", VALUES)
        safe_key, safe_value = _UNSAFE.sub("_", key), _UNSAFE.sub("_", value)
        lossy = lossy or safe_key != key or safe_value != value
        items.append(f"{safe_key}{KEY_VALUE}{safe_value}" if sep else safe_key)
    return _bounded(ITEMS.join(items), ",".join(overrides), lossy)


def legacy_dirname(overrides: str) -> str:
    """The name topo gave the same overrides before names were paste-safe: Hydra's
    ``override_dirname`` (``a=1,b=2``), hashed when longer than :data:`MAX_DIRNAME`."""
    return _bounded(overrides, overrides, lossy=False) if overrides else DEFAULT_NAME


def resolve_dirname(overrides: str, parent: str | None = None) -> str:
    """The ``topo_dirname`` resolver: the name of the run whose Hydra ``override_dirname`` is
    ``overrides`` (``a=1,b=2``). With ``parent`` (the directory the name lives in), an existing
    old-style directory is kept when the new one does not exist yet, so that it resumes."""
    name = run_dirname(overrides.split(",") if overrides else [])
    if parent is None:
        return name
    legacy = legacy_dirname(overrides)
    if legacy != name and not (Path(parent) / name).exists() and (Path(parent) / legacy).is_dir():
        return legacy
    return name


def is_paste_safe(path: str | Path) -> bool:
    """True when ``path`` can be pasted unquoted as an override value (``checkpoint=<path>``):
    letters, digits and ``_ . + - /`` only."""
    return re.fullmatch(r"[A-Za-z0-9_.+\-/]+", str(path)) is not None


def override(key: str, value: str | Path) -> str:
    """``key=value`` as it must be typed on a command line: quoted when ``value`` holds a
    character the override parser or the shell would read (an old-style run directory)."""
    value = str(value)
    if is_paste_safe(value):
        return f"{key}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return "'" + f'{key}="{escaped}"'.replace("'", "'\\''") + "'"


def readable_run_name(overrides: Sequence[str]) -> str:
    """An MLflow run name: the overrides as typed, space-separated (``default`` without any),
    cut only at MLflow's limit."""
    name = " ".join(overrides) or DEFAULT_NAME
    return name if len(name) <= _MAX_MLFLOW_NAME else name[: _MAX_MLFLOW_NAME - 1] + "…"


OmegaConf.register_new_resolver("topo_dirname", resolve_dirname, replace=True)
