"""Small stand-ins for ``MultiTaskData``: known samples, tasks and targets, no files."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from topo_models.spatial import IGNORE_INDEX


@dataclass(frozen=True)
class FakeTask:
    index: int
    name: str


class FakeSequentialData:
    """Sequential multi-task samples: ``inputs (n, 1, 1, features)``, one task per sample."""

    input_mode = "sequential"

    def __init__(
        self,
        inputs: torch.Tensor,
        tasks: torch.Tensor,
        labels: torch.Tensor,
        n_tasks: int,
        batch_size: int = 5,
        identity: bool = True,
    ) -> None:
        self.inputs, self.task_of, self.label_of = inputs, tasks.long(), labels.long()
        self.n_tasks = n_tasks
        self.tasks = [FakeTask(t, f"task{t}") for t in range(n_tasks)]
        self.batch_size = batch_size
        self.has_task_identity = identity
        if not identity:
            self.input_mode = "mix"

    def targets(self) -> torch.Tensor:
        targets = torch.full((len(self.inputs), self.n_tasks), IGNORE_INDEX, dtype=torch.long)
        targets[torch.arange(len(self.inputs)), self.task_of] = self.label_of
        return targets

    def sample_tasks(self, split: str = "val") -> torch.Tensor:
        return self.task_of

    def loader(self, split: str = "val", batch_size: int | None = None):
        size = batch_size or self.batch_size
        targets = self.targets()
        return [
            (self.inputs[i : i + size], targets[i : i + size])
            for i in range(0, len(self.inputs), size)
        ]

    def val_loader(self):
        return self.loader("val")
