"""The three input modes of SpatialNetworks (Wołczyk et al. 2019): epoch orders and batches.

* **sequential** — the data sets chained into one index space; a sample is one image of one
  data set (1 channel) and carries a label for its own task only. Orders: ``"random"`` (one
  permutation, tasks interleaved) or ``"task"`` (task 0's samples shuffled, then task 1's, …:
  a blocked, continual-learning-like curriculum).
* **concatenate** — one image of every data set, stacked along channels (D channels).
* **mix** — the same draw of one image per data set, summed pixel-wise (1 channel, can
  exceed 1).

For concatenate/mix an epoch is as long as the longest data set: data sets of that length are
drawn as permutations, shorter ones with replacement. Every order is a pure function of the
generator passed in, and batches are built by tensor indexing, never per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from topo_data.multitask.tasks import IGNORE_INDEX

ORDERS = ("random", "task")


class MultiTaskBatch(NamedTuple):
    """A batch for every task at once.

    Attributes:
        inputs: ``(B, C, H, W)`` float32, pixels / 255 (mix mode sums can exceed 1).
        targets: ``(B, T)`` int64 label of each sample for each task, ``IGNORE_INDEX``
            (-100) where the sample has no label for that task.
    """

    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True)
class SplitSamples:
    """One split of one data set (or of the chained data sets) with each sample's task.

    Attributes:
        images: ``(n, H, W)`` uint8.
        tasks: ``(n,)`` int64 global task index of each sample.
        labels: ``(n,)`` int64 label of each sample within its task (``0 .. K-1``).
    """

    images: torch.Tensor
    tasks: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> SplitSamples:
        return SplitSamples(self.images[index], self.tasks[index], self.labels[index])

    @staticmethod
    def chain(parts: Sequence[SplitSamples]) -> SplitSamples:
        """The parts in one index space, in the given order (sequential mode)."""
        return SplitSamples(
            torch.cat([p.images for p in parts]),
            torch.cat([p.tasks for p in parts]),
            torch.cat([p.labels for p in parts]),
        )


def generator_for(seed: int) -> torch.Generator:
    """A private generator, so no order ever reads or moves the global RNG."""
    return torch.Generator().manual_seed(seed)


def sequential_order(tasks: torch.Tensor, order: str, generator: torch.Generator) -> torch.Tensor:
    """An epoch over the chained samples: ``(N,)`` indices, each sample exactly once.

    Args:
        tasks: ``(N,)`` task of every chained sample.
        order: ``"random"`` (tasks interleaved) or ``"task"`` (blocked by task, in task order,
            shuffled within each block).
        generator: the epoch's generator.
    """
    permutation = torch.randperm(len(tasks), generator=generator)
    if order == "random":
        return permutation
    # a stable sort by task keeps the random order inside each task's block
    return permutation[torch.sort(tasks[permutation], stable=True).indices]


def joined_draw(sizes: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Concatenate/mix epoch: ``(L, D)`` sample index of each data set, ``L = max(sizes)``.

    Columns of the longest length are permutations; shorter ones are drawn with replacement.
    """
    length = max(sizes)
    columns = [
        torch.randperm(size, generator=generator)
        if size == length
        else torch.randint(size, (length,), generator=generator)
        for size in sizes
    ]
    return torch.stack(columns, dim=1)


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This replica's share: every ``world_size``-th entry from ``rank``, all shares equal.

    The last ``len(order) % world_size`` entries are dropped so replicas run the same number
    of steps (DDP would hang otherwise).
    """
    usable = len(order) // world_size * world_size
    return order[:usable][rank::world_size]


def _targets(batch_size: int, n_tasks: int) -> torch.Tensor:
    return torch.full((batch_size, n_tasks), IGNORE_INDEX, dtype=torch.int64)


def sequential_batch(samples: SplitSamples, index: torch.Tensor, n_tasks: int) -> MultiTaskBatch:
    """Chained samples ``index: (B,)`` → inputs ``(B, 1, H, W)``, one label per row."""
    inputs = samples.images[index].unsqueeze(1).to(torch.float32) / 255
    targets = _targets(len(index), n_tasks)
    targets[torch.arange(len(index)), samples.tasks[index]] = samples.labels[index]
    return MultiTaskBatch(inputs, targets)


def joined_batch(
    parts: Sequence[SplitSamples], index: torch.Tensor, n_tasks: int, mix: bool
) -> MultiTaskBatch:
    """One sample per data set, ``index: (B, D)`` → concatenated or mixed inputs.

    Each data set labels the column of its sample's task; its other task columns stay
    ``IGNORE_INDEX``. Inputs are ``(B, D, H, W)`` (concatenate) or their channel sum
    ``(B, 1, H, W)`` (mix).
    """
    rows = torch.arange(len(index))
    images = torch.stack([p.images[index[:, d]] for d, p in enumerate(parts)], dim=1)
    inputs = images.to(torch.float32) / 255
    if mix:
        inputs = inputs.sum(dim=1, keepdim=True)
    targets = _targets(len(index), n_tasks)
    for d, part in enumerate(parts):  # a loop over data sets, not samples
        targets[rows, part.tasks[index[:, d]]] = part.labels[index[:, d]]
    return MultiTaskBatch(inputs, targets)
