"""The multi-task head of spatial networks: one ``labels``-way classifier per task.

A spatial network emits ``labels × n_tasks`` logits laid out row-major over (label, task): logit
``label * n_tasks + task`` (as in SpatialNetworks), so ``view(B, labels, n_tasks)`` holds
the heads in its last axis. Targets are ``(B, n_tasks)`` class indices with ``IGNORE_INDEX``
where a sample has no label for a task. That one convention covers both losses of the original:
*sequential* input (one task per sample: every other column ignored) and
*concatenate / mix* input (every task labelled). Training and evaluation share these functions,
so accuracy is exact for any ``labels`` (the original hard-coded 10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from topo_models.errors import TopoError

IGNORE_INDEX = -100  # torch's default ignore_index: "no label for this task"


def task_logits(logits: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """(B, labels * n_tasks) logits → (B, labels, n_tasks) per-task heads (a view)."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
        raise TopoError("bad number of tasks", field="n_tasks", expected=">= 1", found=n_tasks)
    if logits.dim() != 2 or logits.shape[1] % n_tasks != 0:
        raise TopoError(
            "multi-task logits must be (batch, labels * n_tasks)",
            field="logits",
            expected=f"(batch, a multiple of {n_tasks})",
            found=tuple(logits.shape),
        )
    return logits.view(logits.shape[0], logits.shape[1] // n_tasks, n_tasks)


def _heads_and_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dim() != 2 or targets.shape[0] != logits.shape[0]:
        raise TopoError(
            "multi-task targets must be (batch, n_tasks)",
            field="targets",
            expected=f"({logits.shape[0]}, n_tasks)",
            found=tuple(targets.shape),
        )
    if targets.dtype != torch.int64:
        raise TopoError(
            "targets are class indices",
            field="targets.dtype",
            expected="int64",
            found=targets.dtype,
        )
    return task_logits(logits, targets.shape[1])


def multitask_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross entropy over every labelled (sample, task) entry.

    Args:
        logits: (B, labels * T), layout ``label * T + task``.
        targets: (B, T) int64 class indices, ``IGNORE_INDEX`` where there is no label.
        label_smoothing: as in ``torch.nn.functional.cross_entropy``.

    Returns:
        Scalar: Σ CE over labelled entries / their count (0 when nothing is labelled, instead of
        the NaN of an empty mean).
    """
    heads = _heads_and_targets(logits, targets)
    total = F.cross_entropy(
        heads,
        targets,
        ignore_index=IGNORE_INDEX,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


def task_correct_counts(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task (correct, counted) int64 counts over labelled entries, each of shape (T,).

    Accuracy of task t is ``correct[t] / counted[t]``; counts (not means) so batches and
    processes can be summed exactly.
    """
    heads = _heads_and_targets(logits, targets)
    labelled = targets != IGNORE_INDEX
    correct = (heads.argmax(dim=1) == targets) & labelled
    return correct.sum(dim=0), labelled.sum(dim=0)
