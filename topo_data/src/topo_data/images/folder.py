"""ImageNet-style image folders (``root/<class>/<image>``) and the config-facing data module.

Uses torchvision's own ``ImageFolder``; this module adds clear errors (which path, what was
expected) and the reproducible, resumable loaders of :mod:`topo_data.sampling`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader

from topo_data.errors import TopoDataError
from topo_data.sampling import EpochSampler, SeededSamples
from topo_data.transforms import TwoViews, eval_transform, simclr_transform, supervised_transform

if TYPE_CHECKING:  # imported where used: torchvision's import costs ~2 s
    from torchvision.datasets import ImageFolder

VIEWS = ("simclr", "supervised")
CHECK_IMAGES_AUTO_MAX = 20_000
"""``check_images=None`` scans the folders when train and val together hold at most this many
images (seconds, up to about a minute for ImageNet-sized JPEGs on one core)."""


def load_rgb_image(path: str) -> Image.Image:
    """Open an image as RGB, naming the file if it cannot be read.

    Module-level (not a lambda) so DataLoader worker processes can pickle it.
    """
    try:
        with open(path, "rb") as file:
            return Image.open(file).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise TopoDataError(
            "cannot read image (corrupt, truncated or not an image)",
            file=path,
            expected="a readable image file",
            found=f"{type(exc).__name__}: {exc}",
        ) from exc


def _decode_error(path: str) -> str | None:
    """None if ``path`` decodes as :func:`load_rgb_image` would, else what went wrong.

    A full decode, not ``Image.verify()``: verify does not read JPEG data, so it passes a
    truncated JPEG that fails mid-training. JPEGs decode at 1/8 scale (``draft``), which still
    reads every byte of the compressed stream but costs less.
    """
    try:
        with open(path, "rb") as file, Image.open(file) as image:
            image.draft("RGB", (1, 1))
            image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _progress(samples: list[tuple[str, int]], description: str) -> Iterable[tuple[str, int]]:
    """``samples`` wrapped in a tqdm bar that shows only if the scan takes over 2 s."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # topo_data does not depend on tqdm
        return samples
    return tqdm(samples, desc=description, unit="image", delay=2.0)


def check_image_files(dataset: ImageFolder, shown: int = 5) -> None:
    """Decode every image of ``dataset`` once, so a corrupt file fails now, not mid-training.

    Raises:
        TopoDataError: naming the folder, the count of unreadable images and the first
            ``shown`` of them with their errors.
    """
    bad = []
    for path, _ in _progress(dataset.samples, f"checking images in {dataset.root}"):
        error = _decode_error(path)
        if error is not None:
            bad.append(f"{path} ({error})")
    if bad:
        listed = "\n    ".join(bad[:shown]) + ("\n    ..." if len(bad) > shown else "")
        raise TopoDataError(
            f"{len(bad)} of {len(dataset.samples)} images cannot be read (corrupt, truncated "
            "or not images); remove or replace them",
            file=dataset.root,
            field="check_images",
            expected="every file a readable image",
            found=f"{len(bad)} unreadable:\n    {listed}",
        )


def load_image_folder(
    root: str | Path, transform: Callable | None = None, min_classes: int = 1
) -> ImageFolder:
    """Load ``root/<class>/<image>`` as a torchvision ``ImageFolder`` of RGB images.

    Args:
        root: directory with one sub-folder per class.
        transform: applied to each PIL image.
        min_classes: fewest class folders accepted (supervised training needs 2).

    Raises:
        TopoDataError: root missing or not a directory, no class folders or images, too few
            classes; reading an unreadable image later raises it too, naming the image.
    """
    root = Path(root)
    expected = "a directory with one sub-folder of images per class"
    if not root.exists():
        raise TopoDataError("image folder does not exist", file=root, expected=expected)
    if not root.is_dir():
        raise TopoDataError("image folder is not a directory", file=root, expected=expected)
    from torchvision.datasets import ImageFolder

    try:
        dataset = ImageFolder(str(root), transform=transform, loader=load_rgb_image)
    except FileNotFoundError as exc:
        raise TopoDataError(
            "image folder has no class sub-folders or no valid images",
            file=root,
            expected=expected,
            found=str(exc),
        ) from exc
    if len(dataset.classes) < min_classes:
        raise TopoDataError(
            "image folder has too few classes",
            file=root,
            field="classes",
            expected=f">= {min_classes} class sub-folders",
            found=f"{len(dataset.classes)} {dataset.classes}",
        )
    return dataset


def _check_options(image_size: int, batch_size: int, num_workers: int, views: str) -> None:
    """Validate the options shared by all image-folder data modules (before any disk work)."""
    if views not in VIEWS:
        raise TopoDataError("unknown views", field="views", expected=VIEWS, found=repr(views))
    checks = (("image_size", image_size, 16), ("batch_size", batch_size, 2))
    for field, value, minimum in (*checks, ("num_workers", num_workers, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise TopoDataError(
                f"bad {field}", field=field, expected=f"int >= {minimum}", found=repr(value)
            )


class ImageFolderData:
    """Train/val image folders with SimCLR or supervised views and resumable loaders.

    ``views="simclr"``: every item is ``(views (2, 3, S, S), label)``, for train *and* val, so
    the validation SimCLR loss is computed like the training one (val augmentation is seeded,
    hence the same every call). ``views="supervised"``: train items are augmented
    ``(3, S, S)`` images, val items eval-transformed; at least 2 classes are required.

    Args:
        train_dir: training folder, ``train_dir/<class>/<image>``.
        val_dir: validation folder with the same class folders, or None.
        image_size: side S of the images fed to the model, pixels.
        batch_size: images per batch (SimCLR: 2 views each).
        num_workers: DataLoader worker processes; results do not depend on it.
        views: "simclr" or "supervised".
        seed: fixes sample order and augmentation (see :mod:`topo_data.sampling`).
        rank: this replica's index under DDP (set by the training loop, not by configs).
        world_size: replicas sharing each epoch; ``batch_size`` is per replica.
        check_images: decode every image at construction so a corrupt one fails now, naming
            it, rather than mid-training. None: only when train and val together hold at
            most :data:`CHECK_IMAGES_AUTO_MAX` images; True: always; False: never.
    """

    def __init__(
        self,
        train_dir: str,
        val_dir: str | None = None,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        views: str = "simclr",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        check_images: bool | None = None,
    ) -> None:
        _check_options(image_size, batch_size, num_workers, views)
        if check_images is not None and not isinstance(check_images, bool):
            raise TopoDataError(
                "bad check_images",
                field="check_images",
                expected="true, false or null (auto)",
                found=repr(check_images),
            )
        self.rank, self.world_size = rank, world_size
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TopoDataError("seed must be an integer", field="seed", found=repr(seed))
        self.train_dir = Path(train_dir)
        self.val_dir = None if val_dir is None else Path(val_dir)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.views = views
        self.seed = seed
        min_classes = 2 if views == "supervised" else 1
        if views == "simclr":
            train_tf: Callable = TwoViews(simclr_transform(image_size))
            val_tf: Callable = train_tf
        else:
            train_tf = supervised_transform(image_size, train=True)
            val_tf = eval_transform(image_size)
        self._train = load_image_folder(self.train_dir, train_tf, min_classes=min_classes)
        self._val = None
        if self.val_dir is not None:
            self._val = load_image_folder(self.val_dir, val_tf, min_classes=min_classes)
            if self._val.classes != self._train.classes:
                raise TopoDataError(
                    "validation classes differ from training classes (labels would not match)",
                    file=self.val_dir,
                    field="classes",
                    expected=self._train.classes,
                    found=self._val.classes,
                )
        _ = self.steps_per_epoch  # fail now, not at the first epoch
        datasets = [d for d in (self._train, self._val) if d is not None]
        if check_images is None:
            check_images = sum(len(d) for d in datasets) <= CHECK_IMAGES_AUTO_MAX
        if check_images:
            for dataset in datasets:
                check_image_files(dataset)

    @property
    def num_classes(self) -> int:
        return len(self._train.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self._train.classes)

    # -- what the model and objective take from the data (topo_train's DataModule) ----------
    def model_config_values(self) -> dict[str, int]:
        """The class count, for a classifier head's ``num_classes: null``."""
        return {"num_classes": self.num_classes}

    def model_kwargs(self) -> dict[str, object]:
        return {}

    def objective_kwargs(self) -> dict[str, object]:
        return {}

    @property
    def train_dataset(self) -> ImageFolder:
        return self._train

    @property
    def val_dataset(self) -> ImageFolder | None:
        return self._val

    @property
    def steps_per_epoch(self) -> int:
        """Full batches per epoch and replica (the last partial batch is dropped)."""
        steps = len(self._train) // (self.batch_size * self.world_size)
        if steps == 0:
            raise TopoDataError(
                "training set is smaller than one batch; use a smaller batch_size or more data",
                file=self.train_dir,
                field="batch_size",
                expected=f"<= {len(self._train) // self.world_size} (training images per replica)",
                found=self.batch_size,
            )
        return steps

    def _loader(self, dataset: ImageFolder, sampler: EpochSampler, drop_last: bool) -> DataLoader:
        return DataLoader(
            SeededSamples(dataset, self.seed),
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=drop_last,
            pin_memory=False,
            persistent_workers=False,
        )

    def train_loader(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """Batches of ``epoch`` from batch ``start_batch`` on: what an uninterrupted run sees.

        Items are ``(views (B, 2, 3, S, S), labels (B,))`` for SimCLR, else ``(B, 3, S, S)``.
        """
        steps = self.steps_per_epoch
        if not isinstance(start_batch, int) or not 0 <= start_batch <= steps:
            raise TopoDataError(
                "start batch out of range",
                field="start_batch",
                expected=f"0 <= start_batch <= {steps} (steps_per_epoch)",
                found=repr(start_batch),
            )
        sampler = EpochSampler(
            len(self._train),
            self.seed,
            True,
            self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
        )
        sampler.set_position(epoch, start_batch * self.batch_size)
        return self._loader(self._train, sampler, drop_last=True)

    def val_loader(self) -> DataLoader | None:
        """All validation images in folder order, deterministically augmented; None if no val."""
        if self._val is None:
            return None
        sampler = EpochSampler(len(self._val), self.seed, shuffle=False)
        return self._loader(self._val, sampler, drop_last=False)

    def sample_images(self, n: int) -> torch.Tensor:
        """``n`` eval-transformed images ``(n, 3, S, S)`` spread evenly over val (else train).

        Deterministic: the same images every call, covering the classes, for figures.
        """
        dataset = self._val if self._val is not None else self._train
        if not isinstance(n, int) or not 1 <= n <= len(dataset):
            raise TopoDataError(
                "cannot sample that many images",
                file=dataset.root,
                field="n",
                expected=f"1 <= n <= {len(dataset)}",
                found=repr(n),
            )
        transform = eval_transform(self.image_size)
        picks = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
        return torch.stack([transform(load_rgb_image(dataset.samples[i][0])) for i in picks])
