"""Read spacetorch's ``<layer>.pkl`` position files without running foreign code.

spacetorch saved each ``LayerPositions`` dataclass with ``pickle``; unpickling it normally needs
spacetorch installed and would execute whatever a pickle names. Here a restricted unpickler
admits only that one class (as a stand-in that just collects its fields), numpy's array
reconstruction and builtins; a pickle naming any other global is refused with the global's name.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from topo_models.errors import TopoError

PICKLE_FIELDS = ("name", "dims", "coordinates", "neighborhood_indices", "neighborhood_width")
_LAYER_CLASS = ("spacetorch.models.positions", "LayerPositions")


class _PickledLayer:
    """Stand-in for spacetorch's LayerPositions: BUILD fills its ``__dict__``, nothing runs."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array reconstructor
    scalar = np.float64(0).__reduce__()[0]  # numpy's own scalar reconstructor
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5: numpy's buffer reconstructor
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x names
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocols 0-2 use it for bytes; any other encoding is refused."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode used for something else than bytes")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    _LAYER_CLASS: _PickledLayer,
    ("copyreg", "_reconstructor"): None,  # filled below: builds _PickledLayer via object.__new__
    ("builtins", "object"): object,
    ("_codecs", "encode"): _latin1_encode,
    **_numpy_globals(),
}


def _reconstructor(cls: type, base: type, state: object) -> object:
    """copyreg._reconstructor, limited to our stand-in class on plain ``object``."""
    if cls is not _PickledLayer or base is not object:
        raise pickle.UnpicklingError("copyreg._reconstructor used for another class")
    return object.__new__(cls)


_ALLOWED[("copyreg", "_reconstructor")] = _reconstructor
# Protocols 0 and 1 spell these with Python 2 names.
_ALLOWED[("copy_reg", "_reconstructor")] = _reconstructor
_ALLOWED[("__builtin__", "object")] = object


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BufferedIOBase, path: Path) -> None:
        super().__init__(stream)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise TopoError(
            "refusing to load this pickle: it names a global that a position file never needs "
            "(loading it could run code)",
            file=self.path,
            field="pickle global",
            expected=f"{_LAYER_CLASS[0]}.{_LAYER_CLASS[1]}, numpy arrays and builtins",
            found=f"{module}.{name}",
        )


def read_tdann_pickle(path: str | Path) -> dict[str, Any]:
    """The five fields of a spacetorch ``LayerPositions`` pickle, as plain values."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            loaded = _RestrictedUnpickler(stream, path).load()
    except TopoError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
    ) as error:
        raise TopoError(
            "position pickle is truncated or corrupt",
            file=path,
            found=f"{type(error).__name__}: {error}",
        ) from error
    if not isinstance(loaded, _PickledLayer):
        raise TopoError(
            "pickle does not hold a spacetorch LayerPositions",
            file=path,
            expected=".".join(_LAYER_CLASS),
            found=type(loaded).__name__,
        )
    fields = vars(loaded)
    missing = [key for key in PICKLE_FIELDS if key not in fields]
    if missing:
        raise TopoError(
            "position pickle lacks fields",
            file=path,
            field=", ".join(missing),
            expected=list(PICKLE_FIELDS),
            found=sorted(fields),
        )
    return {key: fields[key] for key in PICKLE_FIELDS}
