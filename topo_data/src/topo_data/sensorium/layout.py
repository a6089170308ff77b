"""The Sensorium 2022 static file tree: writing it, naming it and unpacking it.

One session (one mouse scan) is a folder, usually shipped as a zip whose single top-level entry is
that folder::

    static<animal>-<session>-<scan>-GrayImageNet-<hash>/
        data/{images,responses,behavior,pupil_center}/<i>.npy   one file per trial i = 0..N-1
        meta/neurons/*.npy      per neuron: unit_ids, cell_motor_coordinates (n, 3) µm, area, ...
        meta/trials/*.npy       per trial: tiers, frame_image_id, frame_image_class, trial_idx, ...
        meta/statistics/<field>/all/{mean,std,min,max,median}.npy

The writer here produces exactly that tree (the simulator uses it, so synthetic sessions go
through the same reader as the published ones); :class:`SensoriumSession` opens a zip or folder
and validates it, naming the file and field of anything wrong.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
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
_DEFAULT_AREA = "V1"
_DEFAULT_LAYER = "L2/3"


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


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target``, replacing an existing folder as atomically as possible."""
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        os.replace(source, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(source, target)


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


def unpack_session_zip(file: Path, cache_root: Path | None = None) -> Path:
    """Unpack a session zip once; return the folder.

    Like the 2022 loader, the folder goes beside the zip. When the zip's folder is read-only the
    folder goes under ``cache_root`` (default :func:`default_cache_root`) ``/sensorium/``: a
    read-only source is never written into. An already-unpacked folder in either place is reused;
    unpacking goes through a temporary folder, so a folder that exists is complete.
    """
    if not zipfile.is_zipfile(file):
        raise TopoDataError("not a readable zip file", file=file, expected="a session .zip")
    with zipfile.ZipFile(file) as archive:
        top = _zip_top_level(archive, file)
        root = (cache_root or default_cache_root()) / "sensorium"
        candidates = [file.parent / top, root / top]
        for folder in candidates:
            if (folder / "data").is_dir() and (folder / "meta").is_dir():
                return folder
        parent = file.parent if is_writable(file.parent) else root
        parent.mkdir(parents=True, exist_ok=True)
        target = parent / top
        tmp = Path(tempfile.mkdtemp(prefix=f".{top}.", dir=parent))
        try:
            archive.extractall(tmp)
            if not target.exists():
                os.replace(tmp / top, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class NeuronInfo:
    """Per-neuron meta of a session (or of a selection of its neurons), in file order.

    Attributes:
        unit_ids: (n,) published neuron ids (not contiguous).
        cell_motor_coordinates: (n, 3) x, y, z in µm.
        area, layer: (n,) strings; animal_ids, sessions, scan_idx: (n,).
    """

    unit_ids: np.ndarray
    cell_motor_coordinates: np.ndarray
    area: np.ndarray
    layer: np.ndarray
    animal_ids: np.ndarray
    sessions: np.ndarray
    scan_idx: np.ndarray

    def __len__(self) -> int:
        return int(self.unit_ids.shape[0])

    def select(self, index: np.ndarray) -> NeuronInfo:
        """The neurons at rows ``index`` (in that order)."""
        return NeuronInfo(**{f.name: getattr(self, f.name)[index] for f in dataclass_fields(self)})


def _stat_shape_ok(field: str, shape: tuple[int, ...], n_channels: int, n_neurons: int) -> bool:
    if field == "images":
        size = int(np.prod(shape))
        return size == 1 or (size == n_channels and shape in ((n_channels,), (n_channels, 1, 1)))
    widths = {"responses": n_neurons, "behavior": 3, "pupil_center": 2}
    return shape == (widths[field],)


class SensoriumSession:
    """One static session, opened from its zip or unpacked folder and validated up front.

    Opening checks the whole tree so that a bad file fails here, naming it, rather than mid-epoch:
    missing folders and files, trial counts that disagree between meta and data, unknown tiers,
    neuron meta of unequal lengths, and statistics of the wrong shape. Non-finite responses are
    caught when trials are read (reading every file up front would cost a full pass).

    Args:
        path: a session ``.zip`` (unpacked once, see :func:`unpack_session_zip`) or folder.
        cache_root: where a zip in a read-only folder is unpacked (default
            :func:`default_cache_root`).

    Attributes:
        source: the path given; folder: the unpacked folder; data_key: see
            :func:`data_key_from_path` (applied to ``source``); n_trials, n_neurons;
        image_shape: (C, H, W) of one stimulus; fields: the ``data/`` fields present;
        tiers: (N,) str; trials: every ``meta/trials`` array; neurons: :class:`NeuronInfo`;
        statistics: ``{field: {"mean": ..., "std": ..., ...}}`` from ``statistics/<field>/all``.
    """

    def __init__(self, path: str | Path, cache_root: Path | None = None) -> None:
        self.source = Path(path)
        self._fingerprint: str | None = None
        if not self.source.exists():
            raise TopoDataError(
                "session path does not exist",
                file=self.source,
                expected="a static*.zip or its unpacked folder",
            )
        if self.source.is_file():
            self.folder = unpack_session_zip(self.source, cache_root)
        else:
            self.folder = self.source
        self.trials = self._read_trials()
        self.tiers = self.trials["tiers"].astype(str)
        self.n_trials = int(self.tiers.shape[0])
        self.neurons = self._read_neurons()
        self.n_neurons = len(self.neurons)
        self.fields = self._check_data_folders()
        self.image_shape = self._check_sample_shapes()
        self.statistics = self._read_statistics()
        self.data_key = data_key_from_path(
            self.source, self.neurons.animal_ids, self.neurons.sessions, self.neurons.scan_idx
        )

    def __repr__(self) -> str:
        return (
            f"SensoriumSession({self.data_key!r}, trials={self.n_trials}, "
            f"neurons={self.n_neurons}, folder={str(self.folder)!r})"
        )

    # -- validation at open -------------------------------------------------------------------

    def _read_trials(self) -> dict[str, np.ndarray]:
        folder = self.folder / "meta" / "trials"
        if not folder.is_dir():
            raise TopoDataError(
                "missing folder", file=folder, field="trials", expected="meta/trials"
            )
        arrays = {
            f.stem: load_meta_array(f, f"trials.{f.stem}") for f in sorted(folder.glob("*.npy"))
        }
        for key in ("tiers", "frame_image_id", "frame_image_class"):
            if key not in arrays:
                raise TopoDataError(
                    "missing meta file",
                    file=folder / f"{key}.npy",
                    field=key,
                    expected="a .npy file",
                )
        n_trials = arrays["tiers"].shape[0]
        for key, value in arrays.items():
            if value.shape[:1] != (n_trials,):
                raise TopoDataError(
                    "trial count disagrees between meta/trials arrays",
                    file=folder / f"{key}.npy",
                    field=key,
                    expected=f"{n_trials} trials (as in tiers.npy)",
                    found=value.shape,
                )
        unknown = sorted(set(arrays["tiers"].astype(str).tolist()) - set(TIERS))
        if unknown:
            raise TopoDataError(
                "unknown tier",
                file=folder / "tiers.npy",
                field="tiers",
                expected=TIERS,
                found=unknown,
            )
        return arrays

    def _read_neurons(self) -> NeuronInfo:
        folder = self.folder / "meta" / "neurons"
        arrays = {k: load_meta_array(folder / f"{k}.npy", f"neurons.{k}") for k in NEURON_KEYS}
        n = arrays["unit_ids"].shape[0]
        for key, value in arrays.items():
            expected = (n, 3) if key == "cell_motor_coordinates" else (n,)
            if value.shape != expected:
                raise TopoDataError(
                    "neuron meta has the wrong shape",
                    file=folder / f"{key}.npy",
                    field=key,
                    expected=f"{expected} (n from unit_ids.npy)",
                    found=value.shape,
                )
        return NeuronInfo(**arrays)

    def _check_data_folders(self) -> tuple[str, ...]:
        present = []
        expected_names = {f"{i}.npy" for i in range(self.n_trials)}
        for field in DATA_FIELDS:
            folder = self.folder / "data" / field
            if not folder.is_dir():
                if field in REQUIRED_FIELDS:
                    raise TopoDataError(
                        "missing folder", file=folder, field=field, expected=f"data/{field}/<i>.npy"
                    )
                continue
            names = set(os.listdir(folder))
            if names != expected_names:
                missing = sorted(expected_names - names, key=lambda s: int(s[:-4]))
                extra = sorted(names - expected_names)
                raise TopoDataError(
                    "trial count disagrees between meta/trials/tiers.npy and data files",
                    file=folder / missing[0] if missing else folder,
                    field=field,
                    expected=f"{self.n_trials} files 0.npy..{self.n_trials - 1}.npy",
                    found=f"{len(names)} files; missing {missing[:3]}, unexpected {extra[:3]}",
                )
            present.append(field)
        return tuple(present)

    def _check_sample_shapes(self) -> tuple[int, int, int]:
        image = self._load(self.trial_file("images", 0), "images", mmap=True)
        if image.ndim != 3:
            raise TopoDataError(
                "image has the wrong shape",
                file=self.trial_file("images", 0),
                field="images",
                expected="(C, H, W)",
                found=image.shape,
            )
        self._sample_shapes = {
            "images": tuple(image.shape),
            "responses": (self.n_neurons,),
            "behavior": (3,),
            "pupil_center": (2,),
        }
        self._sample_dtypes = {"images": image.dtype}
        for field in self.fields[1:]:
            self._sample_dtypes[field] = self.read_trial(field, 0).dtype
        return tuple(image.shape)  # type: ignore[return-value]

    def _read_statistics(self) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for field in self.fields:
            folder = self.folder / "meta" / "statistics" / field / STATS_SOURCE
            out[field] = {}
            for name in STATISTICS:
                file = folder / f"{name}.npy"
                if not file.is_file() and name not in ("mean", "std"):
                    continue
                value = np.asarray(load_meta_array(file, f"statistics.{field}.{name}"), float)
                if not _stat_shape_ok(field, value.shape, self.image_shape[0], self.n_neurons):
                    expected = {
                        "images": f"a scalar or ({self.image_shape[0]},)",
                        "responses": f"({self.n_neurons},) (one per neuron)",
                        "behavior": "(3,)",
                        "pupil_center": "(2,)",
                    }[field]
                    raise TopoDataError(
                        "statistics have the wrong shape",
                        file=file,
                        field=f"{field}.{name}",
                        expected=expected,
                        found=value.shape,
                    )
                out[field][name] = value
        return out

    # -- reading ------------------------------------------------------------------------------

    def trial_file(self, field: str, trial_id: int) -> Path:
        """Path of ``data/<field>/<trial_id>.npy``."""
        return self.folder / "data" / field / f"{int(trial_id)}.npy"

    def _load(self, file: Path, field: str, mmap: bool = False) -> np.ndarray:
        try:
            return np.load(file, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as exc:
            raise TopoDataError(
                "cannot read data file",
                file=file,
                field=field,
                expected="a numeric .npy array",
                found=f"{type(exc).__name__}: {exc}",
            ) from exc

    def require(self, field: str) -> None:
        """Raise if ``data/<field>`` is absent (behaviour and pupil are optional on disk)."""
        if field not in self.fields:
            raise TopoDataError(
                "session has no such data field",
                file=self.folder / "data" / field,
                field=field,
                expected=f"one of {self.fields}",
            )

    def read_trial(self, field: str, trial_id: int) -> np.ndarray:
        """One trial's raw array, checked for shape (and finiteness, for responses)."""
        self.require(field)
        file = self.trial_file(field, trial_id)
        value = self._load(file, field)
        if value.shape != self._sample_shapes[field]:
            raise TopoDataError(
                "data file has the wrong shape",
                file=file,
                field=field,
                expected=self._sample_shapes[field],
                found=value.shape,
            )
        if field == "responses" and not np.isfinite(value).all():
            bad = np.flatnonzero(~np.isfinite(value))
            raise TopoDataError(
                "responses contain NaN or inf",
                file=file,
                field=field,
                expected="finite values",
                found=f"{bad.size} non-finite, first at neuron row {int(bad[0])}",
            )
        return value

    def read_stack(self, field: str, trial_ids: np.ndarray) -> np.ndarray:
        """Raw arrays of ``trial_ids`` stacked into one (T, ...) array (dtype of trial 0's file)."""
        self.require(field)
        ids = np.asarray(trial_ids, dtype=np.int64)
        out = np.empty((ids.size, *self._sample_shapes[field]), dtype=self._sample_dtypes[field])
        for row, trial_id in enumerate(ids):
            out[row] = self.read_trial(field, int(trial_id))
        return out

    def tier_trials(self, tier: str) -> np.ndarray:
        """(T,) int64 trial ids (file indices) of one tier, ascending."""
        if tier not in TIERS:
            raise TopoDataError("unknown tier", field="tier", expected=TIERS, found=repr(tier))
        return np.flatnonzero(self.tiers == tier).astype(np.int64)

    def fingerprint(self) -> str:
        """Hash of the meta contents and of every data file's name, size and mtime.

        Cheap (stats, no data reads) and changes whenever a file is rewritten, so caches built
        from an older copy of the session are detected as stale. Computed once per opened
        session: files are not expected to change while it is open.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        digest = hashlib.sha256()
        meta = self.folder / "meta"
        for file in sorted(meta.rglob("*.npy")):
            digest.update(str(file.relative_to(meta)).encode())
            digest.update(file.read_bytes())
        for field in self.fields:
            with os.scandir(self.folder / "data" / field) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    info = entry.stat()
                    digest.update(
                        f"{field}/{entry.name}:{info.st_size}:{info.st_mtime_ns};".encode()
                    )
        self._fingerprint = digest.hexdigest()
        return self._fingerprint
