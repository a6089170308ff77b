"""The one check of a regulariser's ``layer_weights``: which layers it covers, how strongly."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

from topo_models.errors import TopoError


def checked_layer_weights(layer_weights: object, what: str) -> dict[str, float]:
    """``{layer name: weight}`` as plain floats; TopoError unless it is a non-empty mapping of
    names to finite numbers >= 0. ``what`` names the loss in the error (e.g. "TopoLoss")."""
    if not isinstance(layer_weights, Mapping) or not layer_weights:
        raise TopoError(
            f"{what} needs at least one layer",
            field="layer_weights",
            expected="a non-empty {layer name: weight >= 0} dict",
            found=layer_weights,
        )
    for name, weight in layer_weights.items():
        number = isinstance(weight, Real) and not isinstance(weight, bool)
        if not (isinstance(name, str) and number and math.isfinite(weight) and weight >= 0):
            raise TopoError(
                "a layer weight is a finite number >= 0 keyed by a layer name",
                field=f"layer_weights.{name}",
                expected=">= 0",
                found=weight,
            )
    return {name: float(weight) for name, weight in layer_weights.items()}
