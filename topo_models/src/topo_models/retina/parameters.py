"""Physical parameters of the retina stages: one spec per parameter, with unit, doc and domain.

A stage declares ``PARAMETERS`` (a tuple of ``PhysicalParameter``) and stores each value as a
scalar ``nn.Parameter`` of the same name, so optimisers and autograd see them. Kernels and
coefficients are recomputed from these values at every call, so loading new values is enough.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.retina.resolution import Resolution

DOMAINS = ("real", "positive", "nonnegative")


@dataclass(frozen=True)
class PhysicalParameter:
    """Declaration of one physical parameter of a stage.

    Args:
        name: attribute name on the stage (``sigma_center``).
        default: effective default (VirtualRetina's ``human.parvo``).
        unit: unit string (``deg``, ``s``, ``Hz``, ``1``).
        doc: one line saying what it does.
        domain: ``real``, ``positive`` (> 0, time constants) or ``nonnegative`` (σ, weights ≥ 0).
        trainable: whether gradients are wanted (False for the non-differentiable spiking).
    """

    name: str
    default: float
    unit: str
    doc: str
    domain: str = "real"
    trainable: bool = True


class ParameterInfo(NamedTuple):
    """One row of the parameter tree: a plain tuple, so ``path, value, unit, doc = row`` works."""

    path: str
    value: float
    unit: str
    doc: str


def check_value(spec: PhysicalParameter, value: float, path: str) -> float:
    """``value`` as a float, or TopoError when it is not finite or outside ``spec.domain``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TopoError(
            "a physical parameter must be a number", field=path, expected="float", found=value
        ) from None
    bad = not math.isfinite(number)
    bad |= spec.domain == "positive" and number <= 0
    bad |= spec.domain == "nonnegative" and number < 0
    if bad:
        expected = {"real": "a finite number", "positive": "> 0", "nonnegative": ">= 0"}
        raise TopoError(
            f"invalid value for {path} ({spec.unit})",
            field=path,
            expected=expected[spec.domain],
            found=value,
        )
    return number


class PhysicalStage(nn.Module, metaclass=abc.ABCMeta):
    """Base of a retina stage: registers ``PARAMETERS`` and offers streaming-state hooks.

    Subclasses set ``PARAMETERS``, call ``super().__init__(resolution, values)`` with the values
    of their keyword arguments, and implement ``reset()``.
    """

    PARAMETERS: tuple[PhysicalParameter, ...] = ()
    # Attributes holding the streaming state (tensors, or None before the first chunk) and, of
    # those, the ones that are plain integer counters.
    STATE: tuple[str, ...] = ()
    COUNTERS: tuple[str, ...] = ()

    def __init__(self, resolution: Resolution | None, values: Mapping[str, float]) -> None:
        super().__init__()
        self.resolution = Resolution() if resolution is None else resolution
        for spec in self.PARAMETERS:
            number = check_value(spec, values[spec.name], spec.name)
            tensor = torch.tensor(number, dtype=torch.float32)
            self.register_parameter(spec.name, nn.Parameter(tensor, requires_grad=spec.trainable))

    def physical_parameters(self) -> Iterator[tuple[PhysicalParameter, nn.Parameter]]:
        """(spec, scalar parameter) pairs in declaration order."""
        for spec in self.PARAMETERS:
            yield spec, getattr(self, spec.name)

    def set_physical(self, name: str, value: float, path: str | None = None) -> None:
        """Set one parameter in place (keeps the ``nn.Parameter`` object an optimiser holds)."""
        specs = {spec.name: spec for spec in self.PARAMETERS}
        if name not in specs:
            raise TopoError(
                "unknown physical parameter",
                field=path or name,
                expected=sorted(specs),
                found=name,
            )
        number = check_value(specs[name], value, path or name)
        with torch.no_grad():
            getattr(self, name).fill_(number)

    def check_parameters(self) -> None:
        """Re-check every domain (an optimiser may have pushed a τ below 0)."""
        for spec, param in self.physical_parameters():
            check_value(spec, param.item(), spec.name)

    def value(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Parameter ``name`` on ``like``'s device and dtype (differentiable)."""
        return getattr(self, name).to(like)

    def streaming_state(self) -> dict[str, torch.Tensor]:
        """The ``STATE`` attributes that are set, as detached copies (counters as 0-d int64)."""
        state = {}
        for name in self.STATE:
            value = getattr(self, name)
            if value is None:
                continue
            if name in self.COUNTERS:
                state[name] = torch.tensor(int(value), dtype=torch.int64)
            else:
                state[name] = value.detach().clone()
        return state

    def load_streaming_state(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        """Start from ``state`` (as ``streaming_state`` returns it); absent keys start fresh."""
        unknown = sorted(set(state) - set(self.STATE))
        if unknown:
            raise TopoError(
                "unknown streaming-state entry",
                field=", ".join(prefix + name for name in unknown),
                expected=[prefix + name for name in self.STATE],
                found=unknown,
            )
        self.reset()
        for name, value in state.items():
            if name in self.COUNTERS:
                setattr(self, name, int(value))
            else:
                setattr(self, name, torch.as_tensor(value).detach().clone())

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the streaming state (start of a new movie)."""
