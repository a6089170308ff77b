"""Sampling: per-epoch seeded order, exact mid-epoch resume, augmentation as f(seed, epoch, i)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from topo_data import EpochSampler, SeededSamples, TopoDataError


class RandomItems(Dataset):
    """Item i is (i, torch noise, python random, numpy random): exposes every RNG used."""

    def __init__(self, size: int = 10) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        return (
            torch.tensor(index),
            torch.rand(3),
            torch.tensor(random.random()),
            torch.tensor(np.random.rand()),
        )


def _batches(loader: DataLoader) -> list[list[torch.Tensor]]:
    return [list(batch) for batch in loader]


def _assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b, strict=True):
        for x, y in zip(batch_a, batch_b, strict=True):
            assert torch.equal(x, y)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    sampler = EpochSampler(20, seed=3)
    sampler.set_position(2)
    tickets = list(sampler)
    assert sorted(t - 2 * 20 for t in tickets) == list(range(20))
    again = EpochSampler(20, seed=3)
    again.set_position(2)
    assert list(again) == tickets
    other_epoch = EpochSampler(20, seed=3)
    other_epoch.set_position(3)
    assert [t - 60 for t in other_epoch] != [t - 40 for t in tickets]
    other_seed = EpochSampler(20, seed=4)
    other_seed.set_position(2)
    assert list(other_seed) != tickets


def test_epoch_order_ignores_and_keeps_global_rng():
    torch.manual_seed(0)
    first = list(EpochSampler(30, seed=1))
    state = torch.get_rng_state()
    torch.manual_seed(999)
    second = list(EpochSampler(30, seed=1))
    assert first == second
    torch.manual_seed(0)
    list(EpochSampler(30, seed=1))
    assert torch.equal(torch.get_rng_state(), state)


def test_start_index_skips_the_head_and_len_counts_the_rest():
    sampler = EpochSampler(17, seed=0)
    sampler.set_position(1)
    full = list(sampler)
    sampler.set_position(1, start_index=5)
    assert list(sampler) == full[5:]
    assert len(sampler) == 12


def test_drop_last_batch_size_cuts_epoch_to_whole_batches():
    sampler = EpochSampler(10, seed=0, drop_last_batch_size=4)
    assert len(sampler) == 8 and len(list(sampler)) == 8
    with pytest.raises(TopoDataError, match="start_index"):
        sampler.set_position(0, start_index=9)


def test_no_shuffle_yields_folder_order():
    sampler = EpochSampler(5, seed=0, shuffle=False)
    sampler.set_position(2)
    assert list(sampler) == [10, 11, 12, 13, 14]


def test_same_ticket_gives_identical_sample():
    data = SeededSamples(RandomItems(), seed=7)
    for x, y in zip(data[23], data[23], strict=True):
        assert torch.equal(x, y)


def test_ticket_decodes_epoch_and_index():
    data = SeededSamples(RandomItems(10), seed=7)
    assert data[23][0].item() == 3
    epoch0, epoch2 = data[3], data[23]
    assert not torch.equal(epoch0[1], epoch2[1])
    assert epoch0[2].item() != epoch2[2].item() and epoch0[3].item() != epoch2[3].item()


def test_different_seed_gives_different_augmentation():
    a = SeededSamples(RandomItems(), seed=1)[4]
    b = SeededSamples(RandomItems(), seed=2)[4]
    assert not torch.equal(a[1], b[1])


def test_call_leaves_global_rng_states_unchanged():
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    torch_state, python_state, numpy_state = (
        torch.get_rng_state(),
        random.getstate(),
        np.random.get_state(),
    )
    SeededSamples(RandomItems(), seed=0)[12]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == python_state
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )


def test_negative_ticket_is_rejected():
    with pytest.raises(TopoDataError, match="ticket"):
        SeededSamples(RandomItems(), seed=0)[-1]


def _loader(epoch: int, start_index: int, num_workers: int = 0) -> DataLoader:
    sampler = EpochSampler(22, seed=11, drop_last_batch_size=4)
    sampler.set_position(epoch, start_index)
    return DataLoader(
        SeededSamples(RandomItems(22), seed=11),
        batch_size=4,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
    )


def test_resumed_loader_equals_tail_of_full_epoch():
    full = _batches(_loader(epoch=3, start_index=0))
    assert len(full) == 5
    resumed = _batches(_loader(epoch=3, start_index=2 * 4))
    _assert_same_batches(resumed, full[2:])


def test_worker_count_does_not_change_batches():
    _assert_same_batches(_batches(_loader(1, 0, num_workers=2)), _batches(_loader(1, 0)))


def test_replicas_split_each_epoch_into_disjoint_shards():
    from topo_data import EpochSampler

    shards = [
        EpochSampler(20, seed=3, drop_last_batch_size=4, rank=r, world_size=2) for r in range(2)
    ]
    for shard in shards:
        shard.set_position(epoch=1)
    tickets = [list(shard) for shard in shards]
    assert len(tickets[0]) == len(tickets[1]) == 8  # 20 // 2 = 10 → two whole batches of 4
    assert not set(tickets[0]) & set(tickets[1])
    single = EpochSampler(20, seed=3)
    single.set_position(epoch=1)
    full = list(single)
    assert tickets[0] == full[0::2][:8] and tickets[1] == full[1::2][:8]


@pytest.mark.parametrize("size", [23, 24, 40])
def test_two_replicas_see_each_sample_at_most_once_and_all_but_the_remainder(size):
    """Across both ranks an epoch holds every sample once, but the remainder of the epoch's
    permutation past ``size // (2B) * 2B`` samples — a different set each epoch."""
    batch = 4
    kept = size // (2 * batch) * 2 * batch
    remainders = []
    for epoch in range(3):
        shards = []
        for rank in range(2):
            sampler = EpochSampler(
                size, seed=5, drop_last_batch_size=batch, rank=rank, world_size=2
            )
            sampler.set_position(epoch)
            shards.append([t - epoch * size for t in sampler])
        seen = shards[0] + shards[1]
        assert len(shards[0]) == len(shards[1]) == kept // 2  # replicas step together
        counts = np.bincount(seen, minlength=size)
        assert counts.max() == 1 and counts.sum() == kept
        remainders.append(frozenset(np.flatnonzero(counts == 0).tolist()))
    assert all(len(r) == size - kept for r in remainders)
    if size > kept:
        assert len(set(remainders)) > 1  # the dropped samples change from epoch to epoch


def test_replica_batches_together_are_the_single_process_batch_at_every_step():
    """Step k of two replicas with batch B trains on the images of step k of one process with
    batch 2B: rank r's batch is rows r::2 of it, so sums and means over the batch agree."""
    size, batch = 37, 3
    single = EpochSampler(size, seed=2, drop_last_batch_size=2 * batch)
    shards = [
        EpochSampler(size, seed=2, drop_last_batch_size=batch, rank=r, world_size=2)
        for r in range(2)
    ]
    for epoch in (0, 4):
        for sampler in (single, *shards):
            sampler.set_position(epoch)
        whole = list(single)
        parts = [list(shard) for shard in shards]
        assert len(whole) == len(parts[0]) + len(parts[1]) == 36
        for step in range(len(whole) // (2 * batch)):
            global_batch = whole[step * 2 * batch : (step + 1) * 2 * batch]
            for rank in range(2):
                assert parts[rank][step * batch : (step + 1) * batch] == global_batch[rank::2]
