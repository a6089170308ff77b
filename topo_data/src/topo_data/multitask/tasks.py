"""Data sets → tasks by "label modulo K" (SpatialNetworks, Wołczyk et al. 2019, ``--labels``).

Every task has one ``K``-way head (``K = labels``). A data set with ``C > K`` classes becomes
``ceil(C / K)`` tasks: its classes, sorted and renumbered ``0 .. C-1`` (so EMNIST letters'
1..26 become 0..25), go to task ``c // K`` of that data set with label ``c % K``. The original
documented this but implemented it only for concatenate/mix (and never split a data set in
sequential mode); here one rule serves every input mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from topo_data.errors import TopoDataError

IGNORE_INDEX = -100  # targets value "no label for this task" (torch cross_entropy's default)


@dataclass(frozen=True)
class TaskInfo:
    """One ``labels``-way classification task.

    Attributes:
        index: column of the task in ``MultiTaskBatch.targets``.
        name: the data set name, with ``[first:stop]`` renumbered-class bounds when the data
            set is split into several tasks (``"Digits[5:10]"``).
        source: the data set the task's samples come from.
        classes: the original class values of the task; label ``i`` is ``classes[i]``.
    """

    index: int
    name: str
    source: str
    classes: tuple[int, ...]


@dataclass(frozen=True)
class SourceTasks:
    """How one data set's classes map onto task columns and labels.

    Attributes:
        source: the data set name.
        classes: ``(C,)`` sorted unique original class values over train ∪ validation.
        first_task: task index of the data set's classes ``0 .. K-1``.
        n_tasks: ``ceil(C / K)``.
        labels: ``K``.
    """

    source: str
    classes: torch.Tensor
    first_task: int
    n_tasks: int
    labels: int

    def task_and_label(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``targets: (n,)`` original classes → (global task ``(n,)``, label ``(n,)``), int64."""
        renumbered = torch.searchsorted(self.classes, targets)
        inside = renumbered.clamp(max=len(self.classes) - 1)
        if len(targets) and not bool((self.classes[inside] == targets).all()):
            raise TopoDataError(
                f"{self.source}: targets outside the data set's classes",
                expected=self.classes.tolist(),
                found=sorted(set(targets.tolist()) - set(self.classes.tolist())),
            )
        return self.first_task + renumbered // self.labels, renumbered % self.labels


def split_into_tasks(
    sources: Sequence[str], class_values: Sequence[torch.Tensor], labels: int
) -> tuple[list[TaskInfo], list[SourceTasks]]:
    """The tasks of ``sources`` in order (data sets in the given order, tasks in class order).

    Args:
        sources: data set names.
        class_values: per data set, its ``(C,)`` sorted unique original class values.
        labels: ``K``, classes per task; must not exceed any data set's class count.

    Returns:
        The task list and, per data set, its :class:`SourceTasks`.
    """
    tasks: list[TaskInfo] = []
    layouts: list[SourceTasks] = []
    for source, classes in zip(sources, class_values, strict=True):
        count = len(classes)
        if labels > count:
            raise TopoDataError(
                f"{source} has {count} classes, fewer than labels={labels} (classes per task); "
                "lower labels",
                field="labels",
                expected=f"<= {count} (class count of {source})",
                found=labels,
            )
        n_tasks = -(-count // labels)
        layouts.append(SourceTasks(source, classes, len(tasks), n_tasks, labels))
        for part in range(n_tasks):
            start, stop = part * labels, min((part + 1) * labels, count)
            name = source if n_tasks == 1 else f"{source}[{start}:{stop}]"
            values = tuple(int(v) for v in classes[start:stop])
            tasks.append(TaskInfo(index=len(tasks), name=name, source=source, classes=values))
    return tasks, layouts
