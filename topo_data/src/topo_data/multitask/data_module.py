"""``data=multitask``: several image data sets as one multi-task problem, for ``topo_train``.

SpatialNetworks (Wołczyk et al. 2019) trains one network on several MNIST-like tasks at once,
in one of three input modes (see :mod:`topo_data.multitask.batches`), with ``labels`` classes
per task (see :mod:`topo_data.multitask.tasks`). Everything is held in memory; every training
batch is a pure function of (seed, epoch, batch index), so a run resumed at (epoch, batch)
sees exactly the batches of an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from topo_data.errors import TopoDataError
from topo_data.multitask.batches import (
    ORDERS,
    MultiTaskBatch,
    SplitSamples,
    generator_for,
    joined_batch,
    joined_draw,
    sequential_batch,
    sequential_order,
    shard,
)
from topo_data.multitask.sources import load_source
from topo_data.multitask.tasks import TaskInfo, split_into_tasks
from topo_data.sampling import _check_int, check_replica, sample_seed

INPUT_MODES = ("sequential", "concatenate", "mix")
SPLITS = ("train", "val")
# independent streams of sample_seed(seed, stream, index)
_EPOCH_STREAM = 0  # index: epoch
_FRACTION_STREAM = 1  # index: data set
_EVAL_STREAM = 2  # index: split; seeded with _EVAL_SEED, not the run seed
_EVAL_SEED = 0  # fixed, so runs of every seed evaluate on the same concatenate/mix pairs


class _Batches:
    """A re-iterable sequence of batches over a fixed index order (evaluation loaders)."""

    def __init__(
        self, make: Callable[[torch.Tensor], MultiTaskBatch], index: torch.Tensor, size: int
    ) -> None:
        self._make, self._index, self._size = make, index, size

    def __len__(self) -> int:
        return -(-len(self._index) // self._size)

    def __iter__(self) -> Iterator[MultiTaskBatch]:
        for start in range(0, len(self._index), self._size):
            yield self._make(self._index[start : start + self._size])


def _check_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise TopoDataError(f"unknown {field}", field=field, expected=choices, found=repr(value))
    return str(value)


def _check_names(datasets: object) -> list[str]:
    if isinstance(datasets, str) or not isinstance(datasets, Sequence) or not datasets:
        raise TopoDataError(
            "datasets must be a non-empty list of data set names",
            field="datasets",
            expected="e.g. [Digits, DigitsFlipped] or [MNIST, FashionMNIST, KMNIST, QMNIST]",
            found=repr(datasets),
        )
    names = [str(name) for name in datasets]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise TopoDataError(
            "a data set is listed twice (its tasks would share a name); for two 8×8 sets "
            "use Digits and DigitsFlipped",
            field="datasets",
            found=repeated,
        )
    return names


class MultiTaskData:
    """Multi-task image data (SpatialNetworks' ``--datasets/--labels/--input``) for training.

    Args:
        datasets: data set names (:data:`topo_data.multitask.SOURCE_NAMES`), all with the
            same image shape.
        labels: classes per task ``K``; a data set with more classes is split into
            ``ceil(C / K)`` tasks by label modulo ``K``.
        input_mode: ``"sequential"``, ``"concatenate"`` or ``"mix"``.
        order: sequential epoch order, ``"random"`` (interleaved) or ``"task"`` (blocked).
        root: directory holding torchvision's ``<Class>/raw/`` files (not needed for Digits).
        batch_size: training samples per batch (per replica).
        eval_batch_size: samples per batch of :meth:`loader`.
        train_fraction: keep this seeded fraction of each data set's training samples.
        seed: fixes the training fraction and every epoch's order.
        num_workers: accepted for config compatibility; unused, batches are built in memory.
        rank: this replica's index under DDP; it takes every ``world_size``-th sample.
        world_size: replicas sharing each epoch.

    Attributes:
        tasks: every task, in column order of ``MultiTaskBatch.targets``.
        image_shape: ``(H, W)`` shared by all data sets.
    """

    tasks: list[TaskInfo]
    image_shape: tuple[int, int]

    def __init__(
        self,
        datasets: Sequence[str] = ("Digits",),
        labels: int = 5,
        input_mode: str = "sequential",
        order: str = "random",
        root: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        train_fraction: float = 1.0,
        seed: int = 0,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.sources = _check_names(datasets)
        self.labels = _check_int(labels, "labels", minimum=2)
        self.input_mode = _check_choice(input_mode, "input_mode", INPUT_MODES)
        self.order = _check_choice(order, "order", ORDERS)
        if self.order == "task" and self.input_mode != "sequential":
            raise TopoDataError(
                "order='task' blocks samples by task, but in this input mode every sample "
                "carries all tasks; use order='random'",
                field="order",
                expected="random",
                found=f"order={order!r} with input_mode={input_mode!r}",
            )
        self.batch_size = _check_int(batch_size, "batch_size", minimum=1)
        self.eval_batch_size = _check_int(eval_batch_size, "eval_batch_size", minimum=1)
        if isinstance(train_fraction, bool) or not isinstance(train_fraction, int | float):
            raise TopoDataError(
                "train_fraction must be a number",
                field="train_fraction",
                found=repr(train_fraction),
            )
        if not 0 < train_fraction <= 1:
            raise TopoDataError(
                "train_fraction out of range",
                field="train_fraction",
                expected="0 < train_fraction <= 1",
                found=train_fraction,
            )
        self.train_fraction = float(train_fraction)
        self.seed = _check_int(seed, "seed")
        self.num_workers = _check_int(num_workers, "num_workers", minimum=0)
        self.rank, self.world_size = check_replica(rank, world_size)
        self.root = None if root is None else str(root)
        self._parts = self._load()
        if self.input_mode == "sequential":
            self._chained = {s: SplitSamples.chain(self._parts[s]) for s in SPLITS}
        if self.epoch_length < 1:
            raise TopoDataError(
                "fewer training samples than replicas",
                field="world_size",
                expected=f"<= {self._full_length('train')}",
                found=self.world_size,
            )

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> dict[str, list[SplitSamples]]:
        """Every data set's splits, with tasks assigned, shapes checked and fraction kept."""
        loaded = {
            s: [load_source(n, self.root, s == "train") for n in self.sources] for s in SPLITS
        }
        shapes = [tuple(images.shape[1:]) for images, _ in loaded["train"]]
        for split in SPLITS:
            for name, (images, _) in zip(self.sources, loaded[split], strict=True):
                if tuple(images.shape[1:]) != shapes[0]:
                    raise TopoDataError(
                        f"all data sets need one image shape: {self.sources[0]} is "
                        f"{shapes[0]} but {name} is {tuple(images.shape[1:])}",
                        field="datasets",
                        expected=f"{self.sources[0]}: {shapes[0]}",
                        found=f"{name}: {tuple(images.shape[1:])}",
                    )
                if len(images) == 0:
                    raise TopoDataError(f"{name} has no {split} samples", field="datasets")
        class_values = [
            torch.unique(torch.cat([train_targets, val_targets]))
            for (_, train_targets), (_, val_targets) in zip(
                loaded["train"], loaded["val"], strict=True
            )
        ]
        self.tasks, layouts = split_into_tasks(self.sources, class_values, self.labels)
        parts: dict[str, list[SplitSamples]] = {}
        for split in SPLITS:
            parts[split] = []
            for layout, (images, targets) in zip(layouts, loaded[split], strict=True):
                parts[split].append(SplitSamples(images, *layout.task_and_label(targets)))
        if self.train_fraction < 1:
            parts["train"] = [self._keep_fraction(d, p) for d, p in enumerate(parts["train"])]
        self.image_shape = shapes[0]
        return parts

    def _keep_fraction(self, index: int, part: SplitSamples) -> SplitSamples:
        """A seeded ``train_fraction`` of one data set's training samples (at least one)."""
        keep = max(1, round(self.train_fraction * len(part)))
        generator = generator_for(sample_seed(self.seed, _FRACTION_STREAM, index))
        chosen = torch.randperm(len(part), generator=generator)[:keep]
        return part.subset(torch.sort(chosen).values)

    # -- what the model and training loop need ---------------------------------------------
    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_classes(self) -> int:
        """Classes per task head (``labels``)."""
        return self.labels

    @property
    def image_size(self) -> int:
        """Image height in pixels."""
        return int(self.image_shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``: C is the number of data sets for concatenate, else 1."""
        channels = len(self.sources) if self.input_mode == "concatenate" else 1
        return (channels, *self.image_shape)

    @property
    def has_task_identity(self) -> bool:
        """True only in sequential mode, where each sample belongs to exactly one task."""
        return self.input_mode == "sequential"

    def model_config_values(self) -> dict[str, object]:
        """The model config values this data fixes (plain ints, for the trainer to fill in)."""
        return {
            "input_shape": [int(v) for v in self.input_shape],
            "n_tasks": int(self.n_tasks),
            "labels": int(self.labels),
        }

    def model_kwargs(self) -> dict[str, object]:
        return {}

    def objective_kwargs(self) -> dict[str, object]:
        return {}

    # -- training order --------------------------------------------------------------------
    def _full_length(self, split: str) -> int:
        if self.input_mode == "sequential":
            return len(self._chained[split])
        return max(len(p) for p in self._parts[split])

    @property
    def epoch_length(self) -> int:
        """Training samples per epoch per replica (the longest data set for concat/mix)."""
        return self._full_length("train") // self.world_size

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch per replica; the last, partial batch is kept."""
        return -(-self.epoch_length // self.batch_size)

    def train_indices(self, epoch: int) -> torch.Tensor:
        """This replica's sample order of ``epoch``, a pure function of (seed, epoch).

        Returns:
            sequential: ``(epoch_length,)`` indices into the chained training samples
            (``loader("train")`` order); concatenate/mix: ``(epoch_length, D)`` index of
            each data set's training sample.
        """
        epoch = _check_int(epoch, "epoch", minimum=0)
        generator = generator_for(sample_seed(self.seed, _EPOCH_STREAM, epoch))
        if self.input_mode == "sequential":
            full = sequential_order(self._chained["train"].tasks, self.order, generator)
        else:
            full = joined_draw([len(p) for p in self._parts["train"]], generator)
        return shard(full, self.rank, self.world_size)

    def _make_batch(self, split: str) -> Callable[[torch.Tensor], MultiTaskBatch]:
        if self.input_mode == "sequential":
            samples = self._chained[split]
            return lambda index: sequential_batch(samples, index, self.n_tasks)
        parts, mix = self._parts[split], self.input_mode == "mix"
        return lambda index: joined_batch(parts, index, self.n_tasks, mix)

    def train_loader(self, epoch: int, start_batch: int = 0) -> Iterator[MultiTaskBatch]:
        """The batches of ``epoch`` from batch ``start_batch`` on (resume mid-epoch)."""
        start_batch = _check_int(start_batch, "start_batch", minimum=0)
        if start_batch > self.steps_per_epoch:
            raise TopoDataError(
                "start_batch lies past the end of the epoch",
                field="start_batch",
                expected=f"0 <= start_batch <= {self.steps_per_epoch}",
                found=start_batch,
            )
        order = self.train_indices(epoch)
        make = self._make_batch("train")
        for step in range(start_batch, self.steps_per_epoch):
            yield make(order[step * self.batch_size : (step + 1) * self.batch_size])

    # -- evaluation ------------------------------------------------------------------------
    def _check_split(self, split: str) -> str:
        return _check_choice(split, "split", SPLITS)

    def eval_indices(self, split: str) -> torch.Tensor:
        """The fixed evaluation order of a split (every sample; not sharded across replicas).

        Returns:
            sequential: ``arange(n)`` over the chained samples, data sets in order;
            concatenate/mix: ``(L, D)`` fixed pairing (seeded independently of the run
            seed), ``L`` the longest data set of the split, drawn as in training.
        """
        split = self._check_split(split)
        if self.input_mode == "sequential":
            return torch.arange(len(self._chained[split]))
        generator = generator_for(sample_seed(_EVAL_SEED, _EVAL_STREAM, SPLITS.index(split)))
        return joined_draw([len(p) for p in self._parts[split]], generator)

    def loader(self, split: str, batch_size: int | None = None) -> Iterable[MultiTaskBatch]:
        """Re-iterable batches over every sample of ``split`` ("train" or "val"), fixed order."""
        size = self.eval_batch_size if batch_size is None else batch_size
        size = _check_int(size, "batch_size", minimum=1)
        return _Batches(self._make_batch(self._check_split(split)), self.eval_indices(split), size)

    def val_loader(self) -> Iterable[MultiTaskBatch]:
        """``loader("val")``."""
        return self.loader("val")

    def sample_tasks(self, split: str) -> torch.Tensor:
        """``(n,)`` task index of every sample of ``loader(split)``, in that order.

        Only sequential samples have one task each; in concatenate/mix every sample carries
        a label for several tasks.
        """
        split = self._check_split(split)
        if not self.has_task_identity:
            raise TopoDataError(
                f"input_mode={self.input_mode!r} has no per-sample task identity: every "
                "sample carries one image (and label) of every data set",
                field="input_mode",
                expected="sequential",
                found=self.input_mode,
            )
        return self._chained[split].tasks.clone()
