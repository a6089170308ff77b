"""Run and sweep directory names derived from the command-line overrides.

Derived, not random, so that running a command again finds its directory and resumes.
"""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

MAX_DIRNAME = 120


def short_dirname(overrides: str) -> str:
    """Run directory name from the overrides ("default" without any), hashed when too long for
    a file name (255 bytes)."""
    if not overrides:
        return "default"
    if len(overrides) <= MAX_DIRNAME:
        return overrides
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:12]
    return f"{overrides[: MAX_DIRNAME - 13]}-{digest}"


OmegaConf.register_new_resolver("topo_dirname", short_dirname, replace=True)
