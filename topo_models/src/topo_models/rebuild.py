"""Objects rebuilt from a file's config only through an allowlist that topo owns.

A checkpoint stores the config its model was built from (``{"_target_": …, kwargs…}``). Handing
that dict to Hydra's ``instantiate`` would let the file choose what is imported and called — a
``model.pt`` naming ``sympy.sympify`` runs any command. Here the ``_target_`` must be one of the
constructors a table names (a registry name or a declared dotted path), and every other value
must be plain data (numbers, strings, booleans, None, lists and dicts of them, with no nested
``_target_``). Anything else is refused before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from topo_models.errors import TopoError

_PLAIN = (str, int, float, bool, type(None))


def build_from_config(
    config: object,
    allowed: Mapping[str, Callable[..., Any]],
    *,
    file: str | Path | None,
    field: str,
    **runtime: Any,
) -> Any:
    """Call the allowed constructor ``config["_target_"]`` names with the config's values.

    Args:
        config: a plain dict read from a file (e.g. a checkpoint's ``model_config``).
        allowed: ``_target_`` → constructor; nothing outside it is ever called.
        file: the file the config came from (named in errors).
        field: where in the file the config sits (named in errors).
        runtime: keyword arguments that are not config values (arrays from the data).

    Raises:
        TopoError: a refused target, a Hydra special key, or a value that is not plain data.
    """
    if not isinstance(config, Mapping):
        raise TopoError(
            "expected a config dict", file=file, field=field, found=type(config).__name__
        )
    target = config.get("_target_")
    constructor = allowed.get(target) if isinstance(target, str) else None
    if constructor is None:
        raise TopoError(
            "refused to build what the file names: only topo's own constructors are built "
            "from a file, and nothing was constructed",
            file=file,
            field=f"{field}._target_",
            expected=", ".join(sorted(allowed)),
            found=repr(target),
        )
    kwargs = {key: value for key, value in config.items() if key != "_target_"}
    for key, value in kwargs.items():
        if not (isinstance(key, str) and key.isidentifier()) or key.startswith("_"):
            raise TopoError(
                "refused a config key that is not a plain keyword argument; nothing was "
                "constructed",
                file=file,
                field=f"{field}.{key}",
                expected="keyword names (no _args_, _partial_ or other special keys)",
                found=repr(key),
            )
        _check_plain(value, file, f"{field}.{key}")
    return constructor(**kwargs, **runtime)


def _check_plain(value: object, file: str | Path | None, field: str) -> None:
    """Refuse anything but plain data, at any depth (a nested ``_target_`` included)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, file, f"{field}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise TopoError(
                    "refused a nested config key (no nested objects are built from a file); "
                    "nothing was constructed",
                    file=file,
                    field=f"{field}.{key}",
                    expected="plain keys",
                    found=repr(key),
                )
            _check_plain(item, file, f"{field}.{key}")
        return
    raise TopoError(
        "refused a config value that is not plain data; nothing was constructed",
        file=file,
        field=field,
        expected="numbers, strings, booleans, None, lists and dicts of them",
        found=type(value).__name__,
    )
