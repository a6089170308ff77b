"""Open one Sensorium 2022 static session (zip or folder), validate it and read its trials.

:class:`SensoriumSession` checks the whole tree (:mod:`.layout`) at open, naming the file and
field of anything wrong; :class:`NeuronInfo` is its per-neuron meta.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np

from topo_data.errors import TopoDataError
from topo_data.sensorium.layout import (
    DATA_FIELDS,
    NEURON_KEYS,
    REQUIRED_FIELDS,
    STATISTICS,
    STATS_SOURCE,
    TIERS,
    data_key_from_path,
    load_meta_array,
    unpack_session_zip,
)


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
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
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
