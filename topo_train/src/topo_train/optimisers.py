"""What the loop needs to know of an optimiser and its schedule: parameter groups, closures,
plateau schedulers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(
    model: nn.Module, weight_decay_on_norm: bool, objective: nn.Module | None = None
) -> list[dict[str, Any]]:
    """Parameters split so normalisation layers can skip weight decay (as TDANN's SGD did).

    An objective's own parameters (a regulariser's learned channel positions) train with the
    model's, without weight decay: they are places on the sheet, not weights."""
    params = [p for p in model.parameters() if p.requires_grad]
    own = [] if objective is None else [p for p in objective.parameters() if p.requires_grad]
    if weight_decay_on_norm and not own:
        return [{"params": params}]
    norm_ids = set()
    if not weight_decay_on_norm:
        norm_ids = {
            id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()
        }
    groups = [
        {"params": [p for p in params if id(p) not in norm_ids]},
        {"params": [p for p in params if id(p) in norm_ids] + own, "weight_decay": 0.0},
    ]
    # LBFGS takes exactly one group: a model without norm layers gives it one
    return [group for group in groups if group["params"]] or groups[:1]


def uses_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Optimisers whose ``step`` must re-evaluate the loss (``step(closure)``): LBFGS."""
    return isinstance(optimizer, torch.optim.LBFGS)


def is_plateau(scheduler: Any) -> bool:
    """Schedulers stepped with a validation metric rather than once per optimiser step."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
