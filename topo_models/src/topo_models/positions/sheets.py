"""Cortical sheet presets: how large each area is and how wide its neighbourhoods are.

TDANN has two scales that must never be mixed: the released models
were *trained* on macaque-like sheet sizes, while the paper's figures use *human* sizes, larger
by a per-area factor. The spatial loss uses ``1 / (d + 1)`` with ``d`` in mm, so its value depends
on the scale; every position set therefore carries a scale label.

Neighbourhood widths are the side length (mm) of the square windows for a 224-px input
(``NEIGHBORHOOD_WIDTHS`` of spacetorch, human scale); the training widths are the human ones
divided by the same factors that map the sheet sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from topo_models.errors import TopoError

# Human scale / training scale, per area (spacetorch analyses/core.py::get_positions).
HUMAN_OVER_TRAINING: Mapping[str, float] = MappingProxyType(
    {"retina": 0.6, "V1": 1.5, "V2": 1.75, "V4": 1.4, "VTC": 7.0}
)

_HUMAN_SIZES_MM = {"retina": 2.4, "V1": 36.75, "V2": 35.0, "V4": 22.4, "VTC": 70.0}
_HUMAN_WIDTHS_MM = {"retina": 0.0475, "V1": 1.626, "V2": 3.977, "V4": 2.545, "VTC": 31.818}
_TRAINING_SIZES_MM = {"retina": 4.0, "V1": 24.5, "V2": 20.0, "V4": 16.0, "VTC": 10.0}


@dataclass(frozen=True)
class SheetScale:
    """One scale of the cortical sheet.

    Args:
        name: the label stored with positions made at this scale (``"training"``, ``"human"``).
        sizes_mm: side length of each area's square sheet, in mm.
        neighborhood_widths_mm: side length of each area's neighbourhood window at a 224-px input.
    """

    name: str
    sizes_mm: Mapping[str, float] = field(hash=False)
    neighborhood_widths_mm: Mapping[str, float] = field(hash=False)

    def __post_init__(self) -> None:
        # Read-only copies: a preset shared by every run must not be edited in place.
        object.__setattr__(self, "sizes_mm", MappingProxyType(dict(self.sizes_mm)))
        widths = MappingProxyType(dict(self.neighborhood_widths_mm))
        object.__setattr__(self, "neighborhood_widths_mm", widths)
        if set(self.sizes_mm) != set(self.neighborhood_widths_mm):
            raise TopoError(
                "a sheet scale needs a size and a neighbourhood width for the same areas",
                field=f"SheetScale({self.name!r})",
                expected=sorted(self.sizes_mm),
                found=sorted(self.neighborhood_widths_mm),
            )

    def size_mm(self, area: str) -> float:
        """Side length (mm) of ``area``'s sheet; TopoError for an area the preset lacks."""
        return self._lookup(self.sizes_mm, area, "sizes_mm")

    def width_mm(self, area: str) -> float:
        """Neighbourhood window side (mm) of ``area`` at a 224-px input."""
        return self._lookup(self.neighborhood_widths_mm, area, "neighborhood_widths_mm")

    def _lookup(self, table: Mapping[str, float], area: str, what: str) -> float:
        if area not in table:
            raise TopoError(
                f"the {self.name!r} sheet scale has no area {area!r}",
                field=what,
                expected=sorted(table),
                found=area,
            )
        return float(table[area])


SCALES: Mapping[str, SheetScale] = MappingProxyType(
    {
        "training": SheetScale(
            name="training",
            sizes_mm=_TRAINING_SIZES_MM,
            neighborhood_widths_mm={
                area: width / HUMAN_OVER_TRAINING[area] for area, width in _HUMAN_WIDTHS_MM.items()
            },
        ),
        "human": SheetScale(
            name="human", sizes_mm=_HUMAN_SIZES_MM, neighborhood_widths_mm=_HUMAN_WIDTHS_MM
        ),
    }
)


def get_scale(name: str) -> SheetScale:
    """The preset called ``name``; TopoError listing the known presets otherwise."""
    if not isinstance(name, str) or name not in SCALES:
        raise TopoError(
            "unknown sheet scale", field="scale", expected=sorted(SCALES), found=repr(name)
        )
    return SCALES[name]
