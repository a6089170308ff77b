"""The Sensorium 2022 static file tree: its names, constants and zip unpacking.

One session (one mouse scan) is a folder, usually shipped as a zip whose single top-level entry is
that folder::

    static<animal>-<session>-<scan>-GrayImageNet-<hash>/
        data/{images,responses,behavior,pupil_center}/<i>.npy   one file per trial i = 0..N-1
        meta/neurons/*.npy      per neuron: unit_ids, cell_motor_coordinates (n, 3) µm, area, ...
        meta/trials/*.npy       per trial: tiers, frame_image_id, frame_image_class, trial_idx, ...
        meta/statistics/<field>/all/{mean,std,min,max,median}.npy

:func:`~topo_data.sensorium.writer.write_static_session` produces exactly that tree (the simulator
uses it, so synthetic sessions go through the same reader as the published ones);
:class:`~topo_data.sensorium.session.SensoriumSession` opens a zip or folder and validates it,
naming the file and field of anything wrong.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from topo_data.errors import TopoDataError
from topo_data.sensorium.safe_npy import load_npy

DATA_FIELDS: tuple[str, ...] = ("images", "responses", "behavior", "pupil_center")
REQUIRED_FIELDS: tuple[str, ...] = ("images", "responses")
TIERS: tuple[str, ...] = ("train", "validation", "test", "final_test")
STATISTICS: tuple[str, ...] = ("mean", "std", "min", "max", "median")
NEURON_KEYS: tuple[str, ...] = (
    "unit_ids",
    "cell_motor_coordinates",
    "area",
    "layer",
    "animal_ids",
    "sessions",
    "scan_idx",
)
STATS_SOURCE = "all"
GRAY_SUFFIX = "-GrayImageNet-94c6ff995dac583098847cfecd43e7b6"
log = logging.getLogger(__name__)


def default_cache_root() -> Path:
    """Where unpacked zips and caches go when the session's own folder is read-only."""
    env = os.environ.get("TOPO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "topo"


def is_writable(folder: Path) -> bool:
    """True if ``folder`` exists and may be written to.

    A folder whose write bits are all cleared counts as read-only even for root (for whom
    ``os.access`` always says yes): a chmod'ed source must never be written into.
    """
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    has_bits = bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return folder.is_dir() and has_bits and os.access(folder, os.W_OK)


def session_name(animal_id: object, session: object, scan_idx: object) -> str:
    """Published folder name ``static<animal>-<session>-<scan>-GrayImageNet-<hash>``."""
    return f"static{animal_id}-{session}-{scan_idx}{GRAY_SUFFIX}"


def data_key_from_path(
    path: str | Path,
    animal_ids: object = None,
    sessions: object = None,
    scan_idx: object = None,
) -> str:
    """The data_key of a session path, by the 2022 loader's four rules (checked in this order).

    1. ``"preproc"`` in the path: the text after the last ``"static"``, cut at the first ``"."``,
       with ``"preproc"`` and ``"_nobehavior"`` removed.
    2. ``"ColorImageNet"``: the text between the last ``"static"`` and ``"-ColorImageNet"``.
    3. ``"GrayImageNet"``: the text between the last ``"static"`` and ``"-GrayImageNet"``.
    4. Otherwise ``f"{animal_ids[0]}-{sessions[0]}-{scan_idx[0]}"`` from ``meta/neurons``: taken
       from the arguments when given, else read from the unpacked folder at ``path``.
    """
    text = str(path)
    if "preproc" in text:
        return (
            text.split("static")[-1].split(".")[0].replace("preproc", "").replace("_nobehavior", "")
        )
    if "ColorImageNet" in text:
        return text.split("static")[-1].split("-ColorImageNet")[0]
    if "GrayImageNet" in text:
        return text.split("static")[-1].split("-GrayImageNet")[0]
    if animal_ids is None or sessions is None or scan_idx is None:
        folder = Path(path)
        loaded = [
            load_meta_array(folder / "meta" / "neurons" / f"{k}.npy", k) for k in NEURON_KEYS[4:]
        ]
        animal_ids, sessions, scan_idx = loaded
    return f"{_first(animal_ids)}-{_first(sessions)}-{_first(scan_idx)}"


def _first(values: object) -> object:
    array = np.asarray(values)
    item = array.reshape(-1)[0] if array.size else ""
    return item.item() if hasattr(item, "item") else item


def load_meta_array(file: Path, field: str) -> np.ndarray:
    """Load one meta ``.npy``; object arrays (hashed competition ids) are unpickled through a
    restricted unpickler (``safe_npy``), so a foreign zip can never run code."""
    if not file.is_file():
        raise TopoDataError("missing meta file", file=file, field=field, expected="a .npy file")
    try:
        return load_npy(file, field)  # object arrays without running their pickles
    except (OSError, ValueError) as exc:
        if isinstance(exc, TopoDataError):
            raise
        raise TopoDataError(
            "cannot read meta file", file=file, field=field, found=f"{type(exc).__name__}: {exc}"
        ) from exc


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target``, replacing an existing folder as atomically as possible."""
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        os.replace(source, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(source, target)


def _zip_top_level(archive: zipfile.ZipFile, file: Path) -> str:
    """The single top-level folder of a session zip, refusing unsafe member names."""
    tops = set()
    for name in archive.namelist():
        parts = Path(name).parts
        if not parts or name.startswith("/") or ".." in parts:
            raise TopoDataError(
                "unsafe member in session zip", file=file, field=name, expected="relative paths"
            )
        tops.add(parts[0])
    if len(tops) != 1:
        raise TopoDataError(
            "session zip must hold exactly one top-level folder",
            file=file,
            expected="one folder static<animal>-<session>-<scan>-...",
            found=sorted(tops)[:5],
        )
    return tops.pop()


def _extract_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, into: Path, file: Path
) -> None:
    """Extract one member, turning a damaged one (bad CRC, bad header, cut-off or undecodable
    data) into an error naming the zip and the member."""
    try:
        archive.extract(member, into)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise TopoDataError(
            "session zip has a damaged member; download the zip again (nothing was unpacked)",
            file=file,
            field=member.filename,
            expected="a member that reads back with its recorded CRC-32",
            found=f"{type(exc).__name__}: {exc}",
        ) from exc


def unpack_session_zip(file: Path, cache_root: Path | None = None) -> Path:
    """Unpack a session zip once; return the folder.

    Like the 2022 loader, the folder goes beside the zip. When the zip's folder is read-only the
    folder goes under ``cache_root`` (default :func:`default_cache_root`) ``/sensorium/``: a
    read-only source is never written into. An already-unpacked folder in either place is reused;
    unpacking goes through a temporary folder, so a folder that exists is complete; a damaged
    member raises :class:`TopoDataError` naming the zip and member, and leaves nothing behind.
    """
    if not zipfile.is_zipfile(file):
        raise TopoDataError("not a readable zip file", file=file, expected="a session .zip")
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise TopoDataError(
            "not a readable zip file (damaged directory); download it again",
            file=file,
            expected="a session .zip",
            found=f"{type(exc).__name__}: {exc}",
        ) from exc
    with archive:
        top = _zip_top_level(archive, file)
        root = (cache_root or default_cache_root()) / "sensorium"
        candidates = [file.parent / top, root / top]
        for folder in candidates:
            if (folder / "data").is_dir() and (folder / "meta").is_dir():
                return folder
        parent = file.parent if is_writable(file.parent) else root
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / top
        log.info("unpacking %s once into %s (%d files)", file, target, len(archive.infolist()))
        tmp = Path(tempfile.mkdtemp(prefix=f".{top}.", dir=parent))
        try:
            for member in archive.infolist():
                _extract_member(archive, member, tmp, file)
            if not target.exists():
                os.replace(tmp / top, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
