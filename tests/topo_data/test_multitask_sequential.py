"""Sequential mode: epoch orders, batch contents, determinism, resume, DDP shards, evaluation.

Each tiny image carries its identity (pixel [0, 0]: data set tag, [0, 1]: sample index), so a
batch is checked against the written ground truth, never against the code under test.
"""

from __future__ import annotations

import pytest
import torch

from tests.topo_data.idx_files import write_tiny_sets
from topo_data import MultiTaskData, TopoDataError
from topo_data.multitask import IGNORE_INDEX, MultiTaskBatch, load_source

SETS = ["MNIST", "FashionMNIST", "KMNIST"]  # 30 + 20 + 12 training images, tags 1, 2, 3
TAGS = {1: "MNIST", 2: "FashionMNIST", 3: "KMNIST"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_sets(tmp_path_factory.mktemp("idx"))


def make(tiny, **kwargs) -> MultiTaskData:
    options = {"datasets": SETS, "labels": 5, "root": str(tiny.root), "batch_size": 7}
    return MultiTaskData(**(options | kwargs))


def identities(batches: list[MultiTaskBatch]) -> list[tuple[int, int]]:
    """(data set tag, sample index) of every sample, read from its pixels."""
    inputs = torch.cat([b.inputs for b in batches])
    pixels = torch.round(inputs[:, 0, 0, :2] * 255).to(torch.int64)
    return [tuple(p) for p in pixels.tolist()]


def task_sequence(batches: list[MultiTaskBatch]) -> list[int]:
    targets = torch.cat([b.targets for b in batches])
    assert ((targets != IGNORE_INDEX).sum(dim=1) == 1).all()  # one task per sample
    return (targets != IGNORE_INDEX).to(torch.int64).argmax(dim=1).tolist()


def test_an_epoch_holds_every_training_sample_once_with_its_image_and_label(tiny):
    data = make(tiny)
    batches = list(data.train_loader(epoch=0))
    ids = identities(batches)
    expected = {
        (tag, i) for tag, name in TAGS.items() for i in range(len(tiny.splits[name][0].labels))
    }
    assert len(ids) == 62 and set(ids) == expected
    inputs = torch.cat([b.inputs for b in batches])
    targets = torch.cat([b.targets for b in batches])
    assert inputs.dtype == torch.float32 and inputs.shape == (62, 1, 6, 6)
    first_task = {"MNIST": 0, "FashionMNIST": 2, "KMNIST": 4}
    for row, (tag, index) in enumerate(ids):
        truth = tiny.splits[TAGS[tag]][0]
        image = torch.from_numpy(truth.images[index]).to(torch.float32) / 255
        assert torch.equal(inputs[row, 0], image)
        label = int(truth.labels[index])
        expected_row = torch.full((6,), IGNORE_INDEX)
        expected_row[first_task[TAGS[tag]] + label // 5] = label % 5
        assert torch.equal(targets[row], expected_row)


def test_random_order_interleaves_tasks_and_task_order_blocks_them(tiny):
    random_tasks = task_sequence(list(make(tiny).train_loader(0)))
    switches = sum(a != b for a, b in zip(random_tasks, random_tasks[1:], strict=False))
    assert switches > 30  # 62 samples of 6 tasks: about 50 switches expected, 5 if blocked
    for epoch in (0, 1):
        batches = list(make(tiny, order="task").train_loader(epoch))
        tasks = task_sequence(batches)
        assert tasks == sorted(tasks) and len(set(tasks)) == 6  # blocked, in task order
        ids = identities(batches)
        assert len(set(ids)) == 62
        mnist_block = [index for tag, index in ids[: tasks.count(0)]]
        assert mnist_block != sorted(mnist_block)  # shuffled inside the block
    first, second = (identities(list(make(tiny, order="task").train_loader(e))) for e in (0, 1))
    assert first != second


def test_batches_are_a_pure_function_of_seed_and_epoch(tiny):
    state = torch.get_rng_state()
    one = list(make(tiny, seed=3).train_loader(2))
    two = list(make(tiny, seed=3).train_loader(2))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never used
    assert all(
        torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
        for a, b in zip(one, two, strict=True)
    )
    assert identities(one) != identities(list(make(tiny, seed=3).train_loader(3)))
    assert identities(one) != identities(list(make(tiny, seed=4).train_loader(2)))


@pytest.mark.parametrize("start_batch", [0, 1, 4, 8, 9])
def test_resuming_at_a_batch_gives_the_rest_of_the_uninterrupted_epoch(tiny, start_batch):
    data = make(tiny, seed=5)
    full = list(data.train_loader(1))
    resumed = list(make(tiny, seed=5).train_loader(1, start_batch=start_batch))
    assert len(full) == 9 and len(resumed) == 9 - start_batch
    for a, b in zip(full[start_batch:], resumed, strict=True):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    with pytest.raises(TopoDataError, match="past the end"):
        next(data.train_loader(1, start_batch=10))


def test_ddp_replicas_take_every_world_size_th_sample_of_the_epoch(tiny):
    full = identities(list(make(tiny, seed=1).train_loader(0)))
    shards = [
        identities(list(make(tiny, seed=1, rank=r, world_size=3).train_loader(0))) for r in range(3)
    ]
    # 62 samples: 60 usable, 20 per replica, replica r has samples r, r + 3, r + 6, …
    for rank, shard in enumerate(shards):
        assert shard == full[rank:60:3]
    assert sorted(sum(shards, [])) == sorted(full[:60])
    assert make(tiny, rank=2, world_size=3).steps_per_epoch == 3  # ceil(20 / 7)


def test_steps_per_epoch_keeps_the_last_partial_batch(tiny):
    data = make(tiny)
    sizes = [len(b.targets) for b in data.train_loader(0)]
    assert data.steps_per_epoch == 9 and sizes == [7] * 8 + [6]
    digits = MultiTaskData()  # 1438 training digits, batches of 256
    assert digits.steps_per_epoch == 6
    assert [len(b.targets) for b in digits.train_loader(0)] == [256] * 5 + [158]


def test_validation_is_every_sample_in_data_set_order_and_re_iterable(tiny):
    data = make(tiny, eval_batch_size=5)
    loader = data.val_loader()
    first, again = list(loader), list(loader)
    assert len(loader) == 5 and [len(b.targets) for b in first] == [5, 5, 5, 5, 4]
    expected = torch.cat([load_source(name, tiny.root, False)[0] for name in SETS])
    inputs = torch.cat([b.inputs for b in first])
    assert torch.equal(inputs[:, 0], expected.to(torch.float32) / 255)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(first, again, strict=True))
    tasks = data.sample_tasks("val")
    assert tasks.tolist() == task_sequence(first)
    train = list(data.loader("train", batch_size=31))
    assert [len(b.targets) for b in train] == [31, 31]
    assert identities(train) == [(t, i) for t, n in ((1, 30), (2, 20), (3, 12)) for i in range(n)]


def test_train_fraction_keeps_a_seeded_subset_of_each_training_set(tiny):
    data = make(tiny, train_fraction=0.5, seed=2)
    ids = identities(list(data.loader("train")))
    counts = {tag: sum(1 for t, _ in ids if t == tag) for tag in TAGS}
    assert counts == {1: 15, 2: 10, 3: 6}
    assert data.epoch_length == 31 and data.steps_per_epoch == 5
    assert set(identities(list(data.train_loader(0)))) == set(ids)
    same = identities(list(make(tiny, train_fraction=0.5, seed=2).loader("train")))
    other = identities(list(make(tiny, train_fraction=0.5, seed=9).loader("train")))
    assert same == ids and other != ids
    assert len(list(data.loader("val"))[0].targets) == 24  # validation is untouched


def test_shapes_and_model_config_values(tiny):
    data = make(tiny)
    assert data.has_task_identity and data.input_mode == "sequential"
    assert data.input_shape == (1, 6, 6) and data.image_size == 6 and data.num_classes == 5
    assert data.model_config_values() == {"input_shape": [1, 6, 6], "n_tasks": 6, "labels": 5}
    values = MultiTaskData().model_config_values()
    assert values == {"input_shape": [1, 8, 8], "n_tasks": 2, "labels": 5}
    assert all(type(v) is int for v in values["input_shape"]) and type(values["n_tasks"]) is int
