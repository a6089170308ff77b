"""A small model registry: configs and users name models, ``create_model`` builds them.

Every registered constructor returns a module whose ``forward`` gives ``(output, features)``,
``features`` mapping layer names to activations, so losses and analyses work on any trunk.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from topo_models.errors import TopoError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model constructor under ``name``."""

    def decorator(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise TopoError("a model of this name is already registered", field=name)
        _REGISTRY[name] = constructor
        return constructor

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kwargs``.

    Unknown keyword arguments fail in the constructor (there are no ``**kwargs`` sinks).
    """
    if name not in _REGISTRY:
        raise TopoError("unknown model name", field="name", expected=list_models(), found=name)
    return _REGISTRY[name](**kwargs)


def model_constructors() -> dict[str, Callable[..., nn.Module]]:
    """Every constructor a saved ``model_config`` may name as its ``_target_``.

    Registry names plus the dotted paths topo's own model configs use (``conf/model/*.yaml``);
    :func:`topo_models.rebuild.build_from_config` builds nothing outside this table.
    """
    from topo_models.predictive import sensorium_cnn, sensorium_ln
    from topo_models.retina import cell_ln
    from topo_models.spatial import SpatialCNN, SpatialMLP
    from topo_models.trunks import ResNet18Spatial

    return {
        **_REGISTRY,
        "topo_models.ResNet18Spatial": ResNet18Spatial,
        "topo_models.spatial.SpatialMLP": SpatialMLP,
        "topo_models.spatial.SpatialCNN": SpatialCNN,
        "topo_models.predictive.sensorium_cnn": sensorium_cnn,
        "topo_models.predictive.sensorium_ln": sensorium_ln,
        "topo_models.retina.cell_ln": cell_ln,
    }
