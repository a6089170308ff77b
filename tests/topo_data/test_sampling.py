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
