"""Write one session in the exact Sensorium 2022 static file tree (:mod:`.layout`).

The simulator uses this writer, so synthetic sessions go through the same reader
(:class:`~topo_data.sensorium.session.SensoriumSession`) as the published ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from topo_data.errors import TopoDataError
from topo_data.sensorium.layout import (
    NEURON_KEYS,
    STATS_SOURCE,
    TIERS,
    _first,
    replace_dir,
    session_name,
)

_DEFAULT_AREA = "V1"
_DEFAULT_LAYER = "L2/3"


def _stats(values: np.ndarray, per_axis: bool) -> dict[str, np.ndarray]:
    """mean/std/min/max/median over trials (per neuron or dimension), or over everything."""
    axis = 0 if per_axis else None
    data = values.astype(np.float64)
    return {
        "mean": np.asarray(data.mean(axis=axis)),
        "std": np.asarray(data.std(axis=axis)),
        "min": np.asarray(data.min(axis=axis)),
        "max": np.asarray(data.max(axis=axis)),
        "median": np.asarray(np.median(data, axis=axis)),
    }


def _neuron_arrays(neurons: Mapping[str, object], n: int) -> dict[str, np.ndarray]:
    """Validate and broadcast the per-neuron meta (scalars for animal/session/scan allowed)."""
    out: dict[str, np.ndarray] = {}
    defaults = {"area": _DEFAULT_AREA, "layer": _DEFAULT_LAYER}
    for key in NEURON_KEYS:
        if key not in neurons and key not in defaults:
            raise TopoDataError(
                "neuron meta is missing a key", field=f"neurons.{key}", expected=NEURON_KEYS
            )
        value = np.asarray(neurons.get(key, defaults.get(key)))
        if value.ndim == 0:
            value = np.full(n, value.item(), dtype=value.dtype)
        expected = (n, 3) if key == "cell_motor_coordinates" else (n,)
        if value.shape != expected:
            raise TopoDataError(
                "neuron meta has the wrong shape",
                field=f"neurons.{key}",
                expected=expected,
                found=value.shape,
            )
        out[key] = value
    for key, value in neurons.items():
        if key not in out:
            out[key] = np.asarray(value)
    return out


def _trial_arrays(
    tiers: np.ndarray,
    frame_image_id: np.ndarray,
    trials: Mapping[str, object] | None,
    n_trials: int,
) -> dict[str, np.ndarray]:
    out = {"tiers": np.asarray(tiers).astype(str), "frame_image_id": np.asarray(frame_image_id)}
    for key, value in (trials or {}).items():
        out[key] = np.asarray(value)
    out.setdefault("frame_image_class", np.full(n_trials, "imagenet"))
    out.setdefault("trial_idx", np.arange(n_trials))
    for key, value in out.items():
        if value.shape[:1] != (n_trials,):
            raise TopoDataError(
                "trial meta has the wrong length",
                field=f"trials.{key}",
                expected=f"({n_trials}, ...)",
                found=value.shape,
            )
    unknown = sorted(set(out["tiers"].tolist()) - set(TIERS))
    if unknown:
        raise TopoDataError("unknown tier", field="trials.tiers", expected=TIERS, found=unknown)
    return out


def _write_tree(
    root: Path,
    fields: dict[str, np.ndarray],
    neurons: dict[str, np.ndarray],
    trials: dict[str, np.ndarray],
) -> None:
    """Write the per-trial files, meta and statistics of one session into ``root``."""
    for field, values in fields.items():
        folder = root / "data" / field
        folder.mkdir(parents=True)
        for i in range(values.shape[0]):
            np.save(folder / f"{i}.npy", values[i])
    for group, arrays in (("neurons", neurons), ("trials", trials)):
        folder = root / "meta" / group
        folder.mkdir(parents=True)
        for key, value in arrays.items():
            np.save(folder / f"{key}.npy", value)
    # Published statistics: computed over the training trials (README); images pooled to scalars,
    # the other fields per neuron / per dimension. A session without train trials uses all.
    train = trials["tiers"] == "train"
    rows = train if train.any() else np.ones_like(train)
    for field, values in fields.items():
        folder = root / "meta" / "statistics" / field / STATS_SOURCE
        folder.mkdir(parents=True)
        for name, value in _stats(values[rows], per_axis=field != "images").items():
            np.save(folder / f"{name}.npy", value)


def _zip_folder(folder: Path, target: Path) -> None:
    """Zip ``folder`` with itself as the single top-level entry (how the GIN zips are made)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(folder, folder.name + "/")
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            base = Path(dirpath)
            rel = base.relative_to(folder.parent)
            for name in dirnames:
                archive.write(base / name, f"{rel / name}/")
            for name in sorted(filenames):
                archive.write(base / name, str(rel / name))


def write_static_session(
    path: str | Path,
    images: np.ndarray,
    responses: np.ndarray,
    behavior: np.ndarray,
    pupil_center: np.ndarray,
    tiers: np.ndarray,
    frame_image_id: np.ndarray,
    neurons: Mapping[str, object],
    trials: Mapping[str, object] | None = None,
    zip: bool = True,
) -> Path:
    """Write one session in the exact Sensorium static layout; return the zip (or folder) path.

    Args:
        path: an existing directory (the published name is derived from ``neurons``'
            animal_ids/sessions/scan_idx and the session is written inside it), a ``.zip`` path
            (its stem is the folder name), or the session folder path itself.
        images: (N, C, H, W) stimuli, saved as given (one ``data/images/<i>.npy`` per trial).
        responses: (N, n) responses; behavior: (N, 3); pupil_center: (N, 2).
        tiers: (N,) tier strings from ``TIERS``; frame_image_id: (N,) image ids.
        neurons: per-neuron arrays for ``NEURON_KEYS`` (area/layer default to V1, L2/3;
            animal_ids/sessions/scan_idx may be scalars).
        trials: extra ``meta/trials`` arrays of length N; ``frame_image_class`` defaults to
            ``"imagenet"`` and ``trial_idx`` to ``arange(N)``.
        zip: write the zip (the folder is then not kept) or only the folder.

    Everything is written into a temporary folder beside the target and renamed into place, so
    an interrupted write leaves no partial session.
    """
    images, responses = np.asarray(images), np.asarray(responses)
    n_trials = images.shape[0]
    fields = {
        "images": images,
        "responses": responses,
        "behavior": np.asarray(behavior),
        "pupil_center": np.asarray(pupil_center),
    }
    shapes = {"images": 4, "responses": 2, "behavior": 2, "pupil_center": 2}
    widths = {"behavior": 3, "pupil_center": 2}
    for field, values in fields.items():
        bad_width = field in widths and values.shape[-1:] != (widths[field],)
        if values.ndim != shapes[field] or values.shape[0] != n_trials or bad_width:
            raise TopoDataError(
                "session array has the wrong shape",
                field=field,
                expected=f"{shapes[field]}-d with {n_trials} trials first"
                + (f" and {widths[field]} columns" if field in widths else ""),
                found=values.shape,
            )
    neuron_meta = _neuron_arrays(neurons, responses.shape[1])
    trial_meta = _trial_arrays(tiers, frame_image_id, trials, n_trials)

    path = Path(path)
    if path.is_dir() and not (path / "data").is_dir():
        name = session_name(*(_first(neuron_meta[k]) for k in NEURON_KEYS[4:]))
        folder_target, zip_target = path / name, path / f"{name}.zip"
    elif path.suffix == ".zip":
        folder_target, zip_target = path.with_suffix(""), path
    else:
        folder_target, zip_target = path, path.with_name(path.name + ".zip")
    parent = folder_target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder_target.name}.", dir=parent))
    try:
        staged = tmp / folder_target.name
        staged.mkdir()
        _write_tree(staged, fields, neuron_meta, trial_meta)
        if not zip:
            replace_dir(staged, folder_target)
            return folder_target
        staged_zip = tmp / zip_target.name
        _zip_folder(staged, staged_zip)
        os.replace(staged_zip, zip_target)
        return zip_target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
