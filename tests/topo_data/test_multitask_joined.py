"""Concatenate and mix modes: one image per data set per sample, checked against the sources.

Pixel [0, 0] of each tiny image is its data set's tag and [0, 1] its sample index, so the
concatenated channels tell which sample of every data set a row holds.
"""

from __future__ import annotations

import pytest
import torch

from tests.topo_data.idx_files import write_tiny_sets
from topo_data import MultiTaskData, TopoDataError
from topo_data.multitask import IGNORE_INDEX, MultiTaskBatch

SETS = ["MNIST", "FashionMNIST", "KMNIST"]  # 30 / 20 / 12 training, 10 / 8 / 6 validation
FIRST_TASK = [0, 2, 4]  # labels=5: two tasks per ten-class set


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_sets(tmp_path_factory.mktemp("idx"))


def make(tiny, mode: str = "concatenate", **kwargs) -> MultiTaskData:
    options = {"datasets": SETS, "labels": 5, "root": str(tiny.root), "batch_size": 7}
    return MultiTaskData(input_mode=mode, **(options | kwargs))


def joined(batches) -> MultiTaskBatch:
    batches = list(batches)
    return MultiTaskBatch(
        torch.cat([b.inputs for b in batches]), torch.cat([b.targets for b in batches])
    )


def drawn(inputs: torch.Tensor) -> torch.Tensor:
    """``(n, D)`` sample index of every channel, read from pixel [0, 1]."""
    return torch.round(inputs[:, :, 0, 1] * 255).to(torch.int64)


def test_concatenate_stacks_one_source_image_per_data_set_with_all_its_labels(tiny):
    batch = joined(make(tiny).train_loader(0))
    assert batch.inputs.shape == (30, 3, 6, 6) and batch.targets.shape == (30, 6)
    tags = torch.round(batch.inputs[:, :, 0, 0] * 255)
    assert (tags == torch.tensor([1.0, 2.0, 3.0])).all()  # channel d holds data set d
    index = drawn(batch.inputs)
    expected_targets = torch.full((30, 6), IGNORE_INDEX)
    for d, name in enumerate(SETS):
        train = tiny.splits[name][0]
        images = torch.from_numpy(train.images)[index[:, d]].to(torch.float32) / 255
        assert torch.equal(batch.inputs[:, d], images)
        labels = torch.from_numpy(train.labels)[index[:, d]]
        expected_targets[torch.arange(30), FIRST_TASK[d] + labels // 5] = labels % 5
    assert torch.equal(batch.targets, expected_targets)
    assert ((batch.targets != IGNORE_INDEX).sum(dim=1) == 3).all()  # one label per data set


def test_mix_is_the_pixel_sum_of_the_same_draw(tiny):
    concat = joined(make(tiny, seed=4).train_loader(1))
    mix = joined(make(tiny, "mix", seed=4).train_loader(1))
    assert mix.inputs.shape == (30, 1, 6, 6)
    index = drawn(concat.inputs)
    sources = [torch.from_numpy(tiny.splits[name][0].images) for name in SETS]
    pixel_sum = sum(s[index[:, d]].to(torch.float32) for d, s in enumerate(sources)) / 255
    torch.testing.assert_close(mix.inputs[:, 0], pixel_sum, rtol=0, atol=1e-6)
    torch.testing.assert_close(mix.inputs, concat.inputs.sum(dim=1, keepdim=True))
    assert torch.equal(mix.targets, concat.targets)
    assert float(mix.inputs.max()) > 1  # a sum of three images is not clipped


def test_epoch_is_as_long_as_the_longest_set_and_shorter_sets_repeat(tiny):
    data = make(tiny, seed=7)
    assert data.epoch_length == 30 and data.steps_per_epoch == 5  # ceil(30 / 7)
    index = drawn(joined(data.train_loader(0)).inputs)
    assert sorted(index[:, 0].tolist()) == list(range(30))  # MNIST: a permutation
    for d, size in ((1, 20), (2, 12)):
        column = index[:, d]
        assert int(column.min()) >= 0 and int(column.max()) < size
        assert len(set(column.tolist())) < 30  # with replacement: repeats
    assert torch.equal(data.train_indices(0), index)


def test_sets_of_equal_longest_length_are_each_drawn_as_permutations():
    data = MultiTaskData(datasets=["Digits", "DigitsFlipped"], labels=10, input_mode="mix")
    index = data.train_indices(0)
    assert index.shape == (1438, 2)
    for d in range(2):
        assert torch.equal(torch.sort(index[:, d]).values, torch.arange(1438))
    assert not torch.equal(index[:, 0], index[:, 1])  # drawn independently


def test_targets_of_a_split_set_fill_one_of_its_task_columns(tiny):
    data = MultiTaskData(
        datasets=["EMNIST:letters", "MNIST"],
        labels=10,
        input_mode="concatenate",
        root=str(tiny.root),
    )
    assert data.n_tasks == 4 and data.input_shape == (2, 6, 6)
    batch = joined(data.train_loader(0))
    assert len(batch.targets) == 52  # the 52 letters are the longer set
    index = drawn(batch.inputs)
    letters = torch.from_numpy(tiny.splits["EMNIST:letters"][0].labels)[index[:, 0]]
    digits = torch.from_numpy(tiny.splits["MNIST"][0].labels)[index[:, 1]]
    expected = torch.full((52, 4), IGNORE_INDEX)
    expected[torch.arange(52), (letters - 1) // 10] = (letters - 1) % 10
    expected[:, 3] = digits
    assert torch.equal(batch.targets, expected)


def test_validation_pairs_are_fixed_and_cover_the_longest_validation_set(tiny):
    one = joined(make(tiny, seed=0).val_loader())
    two = joined(make(tiny, seed=11).val_loader())  # the pairing ignores the run seed
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.targets, two.targets)
    data = make(tiny)
    assert torch.equal(joined(data.loader("val")).inputs, joined(data.loader("val")).inputs)
    index = drawn(one.inputs)
    assert index.shape == (10, 3)  # MNIST's 10 validation images, each once
    assert sorted(index[:, 0].tolist()) == list(range(10))
    assert int(index[:, 1].max()) < 8 and int(index[:, 2].max()) < 6
    tags = torch.round(one.inputs[:, :, 0, 0] * 255)
    assert (tags == torch.tensor([101.0, 102.0, 103.0])).all()  # validation images


def test_ddp_replicas_partition_the_epoch_rows(tiny):
    full = drawn(joined(make(tiny, seed=2).train_loader(3)).inputs)
    shards = [
        drawn(joined(make(tiny, seed=2, rank=r, world_size=4).train_loader(3)).inputs)
        for r in range(4)
    ]
    for rank, shard in enumerate(shards):
        assert torch.equal(shard, full[rank:28:4])  # 30 rows: 28 usable, 7 per replica
    assert make(tiny, world_size=4).steps_per_epoch == 1


def test_resume_mid_epoch_matches_the_uninterrupted_batches(tiny):
    full = list(make(tiny, "mix", seed=6).train_loader(2))
    resumed = list(make(tiny, "mix", seed=6).train_loader(2, start_batch=3))
    assert len(full) == 5 and len(resumed) == 2
    for a, b in zip(full[3:], resumed, strict=True):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)


def test_joined_modes_have_no_per_sample_task_identity(tiny):
    for mode, channels in (("concatenate", 3), ("mix", 1)):
        data = make(tiny, mode)
        assert not data.has_task_identity
        assert data.model_config_values() == {
            "input_shape": [channels, 6, 6],
            "n_tasks": 6,
            "labels": 5,
        }
        with pytest.raises(TopoDataError, match="no per-sample task identity"):
            data.sample_tasks("val")
