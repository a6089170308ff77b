"""The one exception type of topo_models.

Bad input must say *what* is wrong and *where*: the file (or object), the field, the value that
was expected and the value that was found. ``TopoError`` builds that message from keywords so
every raise site reads the same way.
"""

from __future__ import annotations

from pathlib import Path


class TopoError(ValueError):
    """Bad input to a topo model, position set or loss.

    Args:
        message: what went wrong, in one sentence.
        file: the file or directory involved, if any.
        field: the config key, array key or attribute involved.
        expected: what a valid value looks like.
        found: what was actually there.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.field = field
        self.expected = expected
        self.found = found
        parts = [message]
        if self.file is not None:
            parts.append(f"file: {self.file}")
        if field is not None:
            parts.append(f"field: {field}")
        if expected is not None:
            parts.append(f"expected: {expected}")
        if found is not None:
            parts.append(f"found: {found}")
        super().__init__("\n  ".join(parts))
