"""The one table of model constructors: a short name for ``create_model`` and the dotted path
a config's ``_target_`` uses, both for the same constructor.

Every registered constructor returns a module whose ``forward`` gives ``(output, features)``,
``features`` mapping layer names to activations, so losses and analyses work on any trunk.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from topo_models.errors import TopoError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_TARGETS: dict[str, Callable[..., nn.Module]] = {}


def register_model(
    name: str | None, target: str | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model constructor under ``name`` (for ``create_model``: a
    trunk returning ``(output, features)``) and, for configs, under ``target``: the public
    dotted path their ``_target_`` names (a model of another kind has a target only)."""

    def decorator(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY or (target is not None and target in _TARGETS):
            raise TopoError("a model of this name is already registered", field=name or target)
        if name is not None:
            _REGISTRY[name] = constructor
        if target is not None:
            _TARGETS[target] = constructor
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
    """Every constructor a saved ``model_config`` may name as its ``_target_``: the registered
    names and config paths. :func:`topo_models.rebuild.build_from_config` builds nothing
    outside this table."""
    import topo_models.predictive
    import topo_models.retina
    import topo_models.spatial
    import topo_models.trunks  # noqa: F401  (each family registers its models on import)

    return {**_REGISTRY, **_TARGETS}
