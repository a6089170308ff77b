"""Read ``.npy`` files that hold object arrays (strings, mixed ids) without running pickles.

``np.load(allow_pickle=True)`` unpickles whatever the file says, which can execute code from a
downloaded zip. Sensorium's meta files are plain string or number arrays, but some sessions
store them as object arrays; those are read here through an unpickler that admits only numpy's
array reconstructors and builtin scalars, and refuses everything else, naming the global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from topo_data.errors import TopoDataError


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("builtins", "str"): str,
        ("builtins", "int"): int,
        ("builtins", "float"): float,
        ("builtins", "bytes"): bytes,
        ("builtins", "bool"): bool,
        ("builtins", "complex"): complex,
        ("codecs", "encode"): __import__("codecs").encode,  # how protocol 2 stores bytes
    }
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    scalar = np.float64(0).__reduce__()[0]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


_ALLOWED = _allowed_globals()


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name}")


def load_npy(file: Path, field: str) -> np.ndarray:
    """The array in ``file``; object arrays through the restricted unpickler above."""
    with open(file, "rb") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(stream)
        if not dtype.hasobject:
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
        try:
            array = _ArrayUnpickler(io.BytesIO(stream.read())).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as error:
            raise TopoDataError(
                "meta file holds a pickle that is not a plain array; it was not run",
                file=file,
                field=field,
                expected="numbers or strings (numpy arrays and builtin scalars only)",
                found=str(error),
            ) from error
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise TopoDataError(
            "meta file does not hold the array its header describes",
            file=file,
            field=field,
            expected=shape,
            found=getattr(array, "shape", type(array)),
        )
    return array
