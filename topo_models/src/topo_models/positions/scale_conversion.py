"""Explicit conversion between the training (macaque) and human sheet scales.

TDANN's released models were trained on macaque-scale sheets and analysed on human-scale ones,
rescaled by a per-area factor whenever a file lacked ``version.txt``.
Here nothing is inferred: the source scale is the positions' label or an explicit argument, and
the result carries the new label. Coordinates and neighbourhood widths scale by the area's factor;
neighbourhoods keep their units (a scaled window holds the same units).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from topo_models.errors import TopoError
from topo_models.positions.network_positions import NetworkPositions
from topo_models.positions.sheets import HUMAN_OVER_TRAINING, get_scale


def convert_scale(
    positions: NetworkPositions,
    to: str,
    areas: Mapping[str, str],
    from_scale: str | None = None,
) -> NetworkPositions:
    """``positions`` rescaled to the sheet scale ``to`` ("training" or "human").

    Args:
        positions: the positions to convert.
        to: the target scale.
        areas: layer name → cortical area (e.g. ``model.cortical_areas``).
        from_scale: the source scale when ``positions`` carry no label; must agree with the
            label when they do.
    """
    get_scale(to)
    source = positions.scale if from_scale is None else get_scale(from_scale).name
    if source is None:
        raise TopoError(
            "these positions carry no scale label; say which scale they are in",
            field="from_scale",
            expected="training or human",
            found=None,
        )
    if positions.scale is not None and positions.scale != source:
        raise TopoError(
            "from_scale contradicts the positions' own label",
            field="from_scale",
            expected=positions.scale,
            found=from_scale,
        )
    converted = {}
    for name, layer in positions.items():
        if name not in areas or areas[name] not in HUMAN_OVER_TRAINING:
            raise TopoError(
                "no cortical area for a layer, so no scale factor",
                field=name,
                expected=sorted(HUMAN_OVER_TRAINING),
                found=areas.get(name),
            )
        factor = HUMAN_OVER_TRAINING[areas[name]]
        if source == to:
            factor = 1.0
        elif to == "training":
            factor = 1.0 / factor
        converted[name] = replace(
            layer,
            coordinates=layer.coordinates * factor,
            neighborhood_width=layer.neighborhood_width * factor,
            scale=to,
        )
    return NetworkPositions(converted, scale=to)
