"""Where the units of one layer sit on the cortical sheet, in TDANN's ``.npz`` format.

The file layout is spacetorch's ``LayerPositions.save_np``, so TDANN's
released position files load unchanged and ours load in spacetorch. TDANN files carry no scale;
topo keeps it in a ``positions.json`` sidecar (``{"scale": "training"}``) next to the ``.npz``
files, one scale per directory (never mix training and human scale).
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from topo_models.atomic import atomic_write
from topo_models.errors import TopoError
from topo_models.positions.sheets import SCALES

# The npz keys, in spacetorch's field order, with the numpy dtype kinds each may have.
_KEY_KINDS: dict[str, tuple[str, str]] = {
    "name": ("US", "a 0-d string array"),
    "dims": ("iu", "a 1-d integer array"),
    "coordinates": ("f", "an (N, 2) float array"),
    "neighborhood_indices": ("iu", "a (P, Q) integer array"),
    "neighborhood_width": ("fiu", "a 0-d float array"),
}
NPZ_KEYS: tuple[str, ...] = tuple(_KEY_KINDS)
SIDECAR_NAME = "positions.json"
_READ_ERRORS = (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error)


@dataclass(eq=False)
class LayerPositions:
    """Unit positions and precomputed neighbourhoods of one layer.

    Args:
        name: layer name in torchvision dotted form, e.g. ``"layer2.0"``; also the file stem.
        dims: the layer's output shape without batch, ``(C, H, W)`` for conv layers.
        coordinates: (N, 2) mm, column 0 = x, column 1 = y, rows in ``torch.flatten(feat, 1)``
            order (channel-major over C, H, W).
        neighborhood_indices: (P, Q) unit indices; each row is one neighbourhood.
        neighborhood_width: side length (mm) of the square windows the rows were drawn from.
        scale: ``"training"``, ``"human"`` or None (unspecified); a label, never inferred.
    """

    name: str
    dims: tuple[int, ...]
    coordinates: np.ndarray
    neighborhood_indices: np.ndarray
    neighborhood_width: float
    scale: str | None = None

    def __post_init__(self) -> None:
        where = f"LayerPositions({self.name!r})"
        if isinstance(self.name, np.ndarray) and self.name.ndim == 0:
            self.name = self.name[()]
        if not isinstance(self.name, str) or not self.name:
            raise TopoError("bad layer name", file=where, field="name", found=repr(self.name))
        self.name = str(self.name)
        dims = tuple(np.asarray(self.dims).reshape(-1).tolist())
        if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
            raise TopoError(
                "bad dims", file=where, field="dims", expected="positive ints", found=self.dims
            )
        self.dims = dims
        n_units = math.prod(dims)
        coords = np.asarray(self.coordinates)
        if coords.shape != (n_units, 2):
            raise TopoError(
                "coordinates do not match dims",
                file=where,
                field="coordinates",
                expected=f"shape ({n_units}, 2) for dims {dims}",
                found=f"shape {coords.shape}",
            )
        if coords.dtype.kind not in "fiu" or not np.isfinite(coords).all():
            raise TopoError(
                "coordinates must be finite numbers",
                file=where,
                field="coordinates",
                found=coords.dtype,
            )
        self.coordinates = np.ascontiguousarray(coords, dtype=np.float32)
        self.neighborhood_indices = _check_indices(self.neighborhood_indices, n_units, where)
        width = self.neighborhood_width
        if isinstance(width, np.ndarray) and width.size == 1:
            width = width.reshape(())[()]
        is_real = isinstance(width, (int, float, np.integer, np.floating))
        if isinstance(width, bool) or not is_real or not (math.isfinite(width) and width > 0):
            raise TopoError(
                "neighbourhood width must be a positive number of mm",
                file=where,
                field="neighborhood_width",
                found=width,
            )
        self.neighborhood_width = float(width)
        if self.scale is not None and self.scale not in SCALES:
            raise TopoError(
                "unknown scale label",
                file=where,
                field="scale",
                expected=f"None or one of {sorted(SCALES)}",
                found=repr(self.scale),
            )

    def __len__(self) -> int:
        return len(self.coordinates)

    def __repr__(self) -> str:
        p, q = self.neighborhood_indices.shape
        return (
            f"LayerPositions(name={self.name!r}, dims={self.dims}, units={len(self)}, "
            f"neighborhoods={p}x{q}, width={self.neighborhood_width:g} mm, scale={self.scale!r})"
        )

    def to_torch(
        self, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(coordinates float32 (N, 2), neighborhood_indices int64 (P, Q)) as tensors."""
        coords = torch.as_tensor(self.coordinates, dtype=torch.float32, device=device)
        indices = torch.as_tensor(self.neighborhood_indices, dtype=torch.int64, device=device)
        return coords, indices

    @classmethod
    def load(cls, path: str | Path) -> LayerPositions:
        """Read a TDANN ``.npz`` (or, safely, a spacetorch ``.pkl``) file; the scale comes from
        ``positions.json`` beside it."""
        path = Path(path)
        if not path.is_file():
            raise TopoError(
                "position file not found", file=path, expected="a TDANN .npz or .pkl file"
            )
        if path.suffix == ".pkl":
            from topo_models.positions.tdann_pickle import read_tdann_pickle

            arrays = {k: np.asarray(v) for k, v in read_tdann_pickle(path).items()}
        else:
            arrays = _read_npz(path)
        scale = read_scale_sidecar(path.parent)
        try:
            return cls(
                name=str(arrays["name"][()]),
                dims=tuple(int(d) for d in arrays["dims"].reshape(-1)),
                coordinates=arrays["coordinates"],
                neighborhood_indices=arrays["neighborhood_indices"],
                neighborhood_width=float(arrays["neighborhood_width"].reshape(())[()]),
                scale=scale,
            )
        except TopoError as err:
            raise TopoError(
                "invalid position file: " + str(err).split("\n")[0],
                file=path,
                field=err.field,
                expected=err.expected,
                found=err.found,
            ) from err

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/<name>.npz`` atomically, plus the scale sidecar if scale is set.

        Raises TopoError, before writing anything, if the directory's sidecar has another scale.
        """
        directory = Path(directory)
        if Path(self.name).name != self.name or self.name in (".", ".."):
            raise TopoError("layer name cannot be a file name", field="name", found=self.name)
        check_scale_sidecar(directory, self.scale)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{self.name}.npz"
        arrays = {
            "name": np.array(self.name),
            "dims": np.asarray(self.dims, dtype=np.int64),
            "coordinates": np.asarray(self.coordinates, dtype=np.float32),
            "neighborhood_indices": np.asarray(self.neighborhood_indices, dtype=np.int64),
            "neighborhood_width": np.array(self.neighborhood_width, dtype=np.float64),
        }
        atomic_write(target, lambda fh: np.savez(fh, **arrays))
        if self.scale is not None:
            write_scale_sidecar(directory, self.scale)
        return target


def _check_indices(indices: object, n_units: int, where: str) -> np.ndarray:
    """Neighbourhood rows must be integer unit indices in [0, N), at least 1 row of 2 units."""
    arr = np.asarray(indices)
    if arr.dtype.kind not in "iu":
        raise TopoError(
            "neighbourhood indices must be integers",
            file=where,
            field="neighborhood_indices",
            expected="an integer array",
            found=arr.dtype,
        )
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 2:
        raise TopoError(
            "neighbourhood indices must be a (P, Q) array with P >= 1 and Q >= 2",
            file=where,
            field="neighborhood_indices",
            found=f"shape {arr.shape}",
        )
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= n_units:
        raise TopoError(
            "neighbourhood indices out of range",
            file=where,
            field="neighborhood_indices",
            expected=f"in [0, {n_units})",
            found=f"[{low}, {high}]",
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The five arrays of a TDANN npz, dtype-checked; extra keys are ignored."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise TopoError("not an .npz archive", file=path, expected="an .npz file")
            for key in NPZ_KEYS:
                if key not in data.files:
                    raise TopoError(
                        f"position file lacks the key {key!r}",
                        file=path,
                        field=key,
                        expected=f"keys {list(NPZ_KEYS)}",
                        found=f"keys {sorted(data.files)}",
                    )
                arrays[key] = data[key]
    except TopoError:
        raise
    except _READ_ERRORS as err:
        raise TopoError(
            "position file is truncated, corrupt or needs pickle",
            file=path,
            expected="an .npz written by np.savez without object arrays",
            found=f"{type(err).__name__}: {err}",
        ) from err
    for key, (kinds, expected) in _KEY_KINDS.items():
        arr = arrays[key]
        shape_ok = key not in ("name", "neighborhood_width") or arr.size == 1
        if arr.dtype.kind not in kinds or not shape_ok:
            raise TopoError(
                f"position file has a bad {key!r}",
                file=path,
                field=key,
                expected=expected,
                found=f"dtype {arr.dtype}, shape {arr.shape}",
            )
    if arrays["name"].dtype.kind == "S":
        arrays["name"] = np.array(arrays["name"].reshape(())[()].decode())
    arrays["name"] = arrays["name"].reshape(())
    return arrays


def _read_sidecar(directory: Path) -> dict[str, object] | None:
    path = directory / SIDECAR_NAME
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TopoError(
            "unreadable positions sidecar", file=path, expected='JSON like {"scale": "training"}'
        ) from err
    if not isinstance(content, dict):
        raise TopoError(
            "positions sidecar must be a JSON object", file=path, found=type(content).__name__
        )
    scale = content.get("scale")
    if scale is not None and scale not in SCALES:
        raise TopoError(
            "unknown scale in positions sidecar",
            file=path,
            field="scale",
            expected=f"null or one of {sorted(SCALES)}",
            found=repr(scale),
        )
    return content


def read_scale_sidecar(directory: str | Path) -> str | None:
    """The scale label of a position directory, None when it has no sidecar (TDANN's files)."""
    content = _read_sidecar(Path(directory))
    return None if content is None else content.get("scale")  # type: ignore[return-value]


def check_scale_sidecar(directory: str | Path, scale: str | None) -> None:
    """Refuse to put positions of ``scale`` in a directory labelled with another scale.

    An unlabelled save (scale None) into a labelled directory is refused too: on load the file
    would silently take the directory's label.
    """
    current = read_scale_sidecar(directory) if Path(directory).is_dir() else None
    if current is not None and current != scale:
        raise TopoError(
            "directory already holds positions of another scale; do not mix scales",
            file=Path(directory) / SIDECAR_NAME,
            field="scale",
            expected=repr(current),
            found=repr(scale),
        )


def write_scale_sidecar(directory: str | Path, scale: str) -> None:
    """Set ``scale`` in ``positions.json`` (atomically), keeping any other keys."""
    directory = Path(directory)
    check_scale_sidecar(directory, scale)
    content = _read_sidecar(directory) or {}
    if content.get("scale") == scale:
        return
    content["scale"] = scale
    text = json.dumps(content, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / SIDECAR_NAME, lambda fh: fh.write(text.encode()))
