"""One classification data set as two in-memory tensors: uint8 images and int64 class targets.

The multi-task networks of SpatialNetworks (Wołczyk et al. 2019) train on several MNIST-like
sets at once. Their images are small enough to hold in memory, so batches are built by tensor
indexing rather than per-sample PIL decoding. Nothing is ever downloaded: torchvision's own
classes read the raw files already under ``root`` (``download=False``), and the default
``Digits`` set is scikit-learn's bundled 8×8 digits.

Note: torchvision returns EMNIST images as stored in the raw files (transposed with respect to
MNIST); they are passed on unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from topo_data.errors import TopoDataError

# torchvision's classes by name, imported where used (torchvision's import costs ~2 s)
_MNIST_LIKE: tuple[str, ...] = ("MNIST", "FashionMNIST", "KMNIST")
EMNIST_SPLITS: tuple[str, ...] = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
DIGITS_SOURCES: tuple[str, ...] = ("Digits", "DigitsFlipped")
SOURCE_NAMES: tuple[str, ...] = (
    *DIGITS_SOURCES,
    *_MNIST_LIKE,
    "QMNIST",
    *(f"EMNIST:{split}" for split in EMNIST_SPLITS),
)

_DIGITS_SPLIT_SEED = 0  # fixed, so every run validates on the same digits whatever its seed
_DIGITS_TRAIN_SHARE = 0.8
_DIGITS_MAX = 16  # load_digits pixel values are counts 0..16 of a 4×4 block of a 32×32 bitmap


def _check_name(name: object) -> str:
    """``name`` if it is a known source; EMNIST without (or with a bad) split gets its own hint."""
    if not isinstance(name, str):
        raise TopoDataError("a data set name must be a string", expected=SOURCE_NAMES, found=name)
    if name in SOURCE_NAMES:
        return name
    if name == "EMNIST" or name.startswith("EMNIST:"):
        raise TopoDataError(
            "EMNIST needs one of its splits, written EMNIST:<split>",
            field="datasets",
            expected=[f"EMNIST:{split}" for split in EMNIST_SPLITS],
            found=repr(name),
        )
    raise TopoDataError(
        "unknown data set", field="datasets", expected=SOURCE_NAMES, found=repr(name)
    )


def _digits(train: bool) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 0..255, with the fixed seeded 80/20 train/validation split."""
    from sklearn.datasets import load_digits  # bundled with the wheel: no download

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / _DIGITS_MAX)).astype(np.uint8)
    targets = bunch.target.astype(np.int64)
    generator = torch.Generator().manual_seed(_DIGITS_SPLIT_SEED)
    order = torch.randperm(len(images), generator=generator).numpy()
    n_train = round(_DIGITS_TRAIN_SHARE * len(images))
    keep = np.sort(order[:n_train] if train else order[n_train:])
    return images[keep], targets[keep]


def raw_files(name: str, train: bool) -> list[str]:
    """The raw file names torchvision's class for ``name`` requires in ``root/<Class>/raw/``.

    MNIST, FashionMNIST and KMNIST check all four files whichever split is asked for; QMNIST
    and EMNIST only those of the split.
    """
    from torchvision import datasets

    name = _check_name(name)
    if name in _MNIST_LIKE:
        return [Path(url).stem for url, _ in getattr(datasets, name).resources]
    if name == "QMNIST":
        return [
            Path(url).stem for url, _ in datasets.QMNIST.resources["train" if train else "test"]
        ]
    if name.startswith("EMNIST:"):
        prefix = f"emnist-{name.split(':', 1)[1]}-{'train' if train else 'test'}"
        return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    raise TopoDataError("not a torchvision data set", field="datasets", found=repr(name))


def _class_name(name: str) -> str:
    return name.split(":", 1)[0]


def _torchvision(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``.data`` / ``.targets`` of torchvision's own class, reading only files already there."""
    from torchvision import datasets

    class_name = _class_name(name)
    raw = root / class_name / "raw"
    try:
        if class_name == "EMNIST":
            dataset = datasets.EMNIST(
                root, split=name.split(":", 1)[1], train=train, download=False
            )
        elif class_name == "QMNIST":
            dataset = datasets.QMNIST(root, train=train, download=False)
        else:
            dataset = getattr(datasets, name)(root, train=train, download=False)
    except RuntimeError as error:  # torchvision's "Dataset not found" (no files named)
        expected = raw_files(name, train)
        missing = [f for f in expected if not os.path.isfile(raw / f)]
        raise TopoDataError(
            f"{name} ({'train' if train else 'validation'} split) is not under the data root "
            f"{root}; nothing is downloaded, put torchvision's uncompressed raw files there",
            file=raw,
            expected=expected,
            found=f"missing {missing}" if missing else str(error),
        ) from None
    except (AssertionError, TypeError, ValueError) as error:  # a malformed IDX file
        raise TopoDataError(
            f"{name}: torchvision could not read the raw files",
            file=raw,
            expected=raw_files(name, train),
            found=f"{type(error).__name__}: {error}",
        ) from None
    data = torch.as_tensor(dataset.data)
    targets = torch.as_tensor(dataset.targets)
    if class_name == "QMNIST":
        targets = targets[:, 0]  # (n, 8) QMNIST metadata; column 0 is the digit class
    return data, targets


def load_source(
    name: str, root: str | Path | None, train: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one data set split into memory.

    Args:
        name: one of :data:`SOURCE_NAMES` (``EMNIST:<split>``, e.g. ``EMNIST:letters``).
        root: the directory holding ``<Class>/raw/`` for torchvision sets (unused for Digits).
        train: the training split; False gives the validation split (torchvision's
            ``train=False`` split, or Digits' fixed 20 %).

    Returns:
        ``images: (n, H, W)`` uint8 and ``targets: (n,)`` int64 original class values.
    """
    name = _check_name(name)
    if name in DIGITS_SOURCES:
        images, targets = _digits(train)
        if name == "DigitsFlipped":
            images = images[:, :, ::-1]  # a mirrored copy: a second 8×8 set for concatenate/mix
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(targets)
    if root is None:
        raise TopoDataError(
            f"{name} is read from files under a data root, but root is null",
            field="root",
            expected=f"a directory holding {_class_name(name)}/raw/",
        )
    data, targets = _torchvision(name, Path(root), train)
    if data.dtype != torch.uint8 or data.ndim != 3:
        raise TopoDataError(
            f"{name}: images must be uint8 (n, H, W)",
            file=Path(root) / _class_name(name) / "raw",
            found=f"{data.dtype} {tuple(data.shape)}",
        )
    if targets.shape != (len(data),):
        raise TopoDataError(
            f"{name}: one class target per image expected",
            file=Path(root) / _class_name(name) / "raw",
            expected=(len(data),),
            found=tuple(targets.shape),
        )
    return data.contiguous(), targets.to(torch.int64)
