"""Reproducible sample order and augmentation, with exact resume mid-epoch.

A training run must give the same batches whatever ``num_workers`` is, and a run resumed from a
checkpoint at (epoch, batch) must see exactly the batches the uninterrupted run would have seen.
Two pieces make that true:

* :class:`EpochSampler` draws each epoch's order from its own generator seeded by (seed, epoch)
  and can start part-way through it, so a resumed run skips the batches already seen without
  loading them. It yields *tickets* ``epoch * num_samples + index`` rather than bare indices,
  so the epoch travels with every sample into the worker process.
* :class:`SeededSamples` decodes a ticket and runs the wrapped data set's ``__getitem__`` under
  RNGs seeded by (seed, epoch, index), so every augmentation is a pure function of those three.
"""

from __future__ import annotations

import hashlib
import operator
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from topo_data.errors import TopoDataError


def _check_int(value: object, field: str, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int (numpy/torch integers accepted), checking the minimum."""
    if isinstance(value, bool):
        raise TopoDataError(f"{field} must be an integer", field=field, found=repr(value))
    try:
        value = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TopoDataError(f"{field} must be an integer", field=field, found=repr(value)) from None
    if minimum is not None and value < minimum:
        raise TopoDataError(
            f"{field} is too small", field=field, expected=f">= {minimum}", found=value
        )
    return value


def check_replica(rank: object, world_size: object) -> tuple[int, int]:
    """``(rank, world_size)`` of a DDP replica as ints, refusing a rank outside the world."""
    world_size = _check_int(world_size, "world_size", minimum=1)
    rank = _check_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise TopoDataError(
            "rank must be below world_size", field="rank", expected=f"< {world_size}", found=rank
        )
    return rank, world_size


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, index), stable across platforms.

    Python's ``hash`` is not used: it is an implementation detail and differs between builds.
    """
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class EpochSampler(Sampler[int]):
    """Per-epoch permutation from a generator seeded by (seed, epoch); resumable mid-epoch.

    Iterating yields tickets ``epoch * num_samples + index`` for the indices of this epoch's
    order from ``start_index`` on. Decode them with :class:`SeededSamples` (whose data set must
    have exactly ``num_samples`` items). The global RNGs are neither read nor changed.

    Args:
        num_samples: size of the data set.
        seed: run seed; together with the epoch it fixes the order.
        shuffle: permute each epoch; if False the order is ``0 .. num_samples - 1``.
        drop_last_batch_size: if given, each epoch is cut to a whole number of batches of this
            size (per replica), so ``len(self)`` and resume positions count only samples that
            are trained on.
        rank: this replica's index under DDP; it takes every ``world_size``-th sample of the
            epoch's order, starting at ``rank``.
        world_size: number of replicas sharing each epoch.

    Under DDP with batch B per replica, step k's batches of all replicas are together step k's
    batch of one process with batch ``world_size`` × B (rank r holds its rows r::world_size),
    and no sample is dealt twice in an epoch. The last ``num_samples mod (world_size × B)``
    samples of the epoch's order are left out, as one such process leaves them out; the order
    changes every epoch, and so do they (docs/distributed.md).
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        shuffle: bool = True,
        drop_last_batch_size: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples = _check_int(num_samples, "num_samples", minimum=1)
        self.rank, self.world_size = check_replica(rank, world_size)
        self.seed = _check_int(seed, "seed")
        self.shuffle = bool(shuffle)
        if drop_last_batch_size is not None:
            drop_last_batch_size = _check_int(drop_last_batch_size, "drop_last_batch_size", 1)
        self.drop_last_batch_size = drop_last_batch_size
        self.epoch = 0
        self.start_index = 0

    @property
    def epoch_length(self) -> int:
        """This replica's samples per epoch (after cutting to whole batches, if asked)."""
        per_replica = self.num_samples // self.world_size
        if self.drop_last_batch_size is None:
            return per_replica
        return per_replica // self.drop_last_batch_size * self.drop_last_batch_size

    def set_position(self, epoch: int, start_index: int = 0) -> None:
        """Choose the epoch to draw and how many of its samples to skip (already trained on)."""
        epoch = _check_int(epoch, "epoch", minimum=0)
        start_index = _check_int(start_index, "start_index", minimum=0)
        if start_index > self.epoch_length:
            raise TopoDataError(
                "start index lies past the end of the epoch",
                field="start_index",
                expected=f"0 <= start_index <= {self.epoch_length}",
                found=start_index,
            )
        self.epoch = epoch
        self.start_index = start_index

    def order(self, epoch: int) -> torch.Tensor:
        """This replica's full index order of ``epoch``: ``(epoch_length,)`` int64."""
        if not self.shuffle:
            full = torch.arange(self.num_samples)
        else:
            generator = torch.Generator()
            generator.manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
            full = torch.randperm(self.num_samples, generator=generator)
        return full[self.rank :: self.world_size][: self.epoch_length]

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * self.num_samples
        for index in self.order(self.epoch)[self.start_index :].tolist():
            yield offset + index

    def __len__(self) -> int:
        return self.epoch_length - self.start_index


class SeededSamples(Dataset):
    """Wraps a map-style data set so each sample's randomness depends only on its ticket.

    ``self[ticket]`` returns ``dataset[ticket % len(dataset)]`` computed with ``torch``,
    ``random`` and ``numpy`` seeded from ``sample_seed(seed, epoch, index)`` where
    ``epoch = ticket // len(dataset)``; the caller's RNG states are restored afterwards. The
    result therefore does not depend on worker count, process or resume point.

    Args:
        dataset: a map-style data set whose random transforms use those global RNGs.
        seed: run seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = _check_int(seed, "seed")
        if len(dataset) < 1:  # type: ignore[arg-type]
            raise TopoDataError("cannot wrap an empty data set", field="dataset", found=0)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, ticket: int) -> Any:
        ticket = _check_int(ticket, "ticket", minimum=0)
        epoch, index = divmod(ticket, len(self))
        seed = sample_seed(self.seed, epoch, index)
        python_state = random.getstate()
        numpy_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
