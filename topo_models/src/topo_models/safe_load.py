"""``read_torch_file``: ``torch.load`` that reads data only and says why a file was refused.

``weights_only=True`` already refuses to unpickle foreign objects; this wrapper turns its
refusal, and every way a file can be damaged, into a ``TopoError`` that tells the two apart:
a file that names a Python global (``posix.system``, a class of some package) was *refused*,
which is not the same as a file that is truncated or corrupt.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from topo_models.errors import TopoError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> object:
    """The contents of a ``torch.save`` file, read with ``weights_only=True``.

    Raises:
        TopoError: missing file; a file that holds a foreign Python global (refused, never
            executed); a truncated or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise TopoError("file not found", file=path, expected="a torch.save file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        foreign = _GLOBAL.search(str(error))
        if foreign is not None:
            raise TopoError(
                "refused: the file holds non-tensor Python objects (a foreign global: a class or "
                "function of some module), which topo never unpickles. It was not loaded and "
                "nothing in it ran",
                file=path,
                field="pickled global",
                expected="tensors, numbers, strings, lists and dicts only",
                found=foreign.group(1),
            ) from error
        raise _corrupt(path, error) from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise _corrupt(path, error) from error


def _corrupt(path: Path, error: BaseException) -> TopoError:
    first_line = str(error).splitlines()[0][:200] if str(error) else ""
    return TopoError(
        "file is truncated, corrupt or not a torch.save file (or needs a device this machine "
        "lacks); it was kept untouched",
        file=path,
        found=f"{type(error).__name__}: {first_line}",
    )
