"""Tiny data sets in torchvision's raw MNIST IDX layout, for loading with its own classes.

The IDX format (LeCun's MNIST files): a big-endian magic ``0x0000TTNN`` (TT: element type,
0x08 uint8 or 0x0C int32; NN: number of dimensions), one big-endian uint32 per dimension, then
the elements, big-endian. Files go to ``root/<ClassName>/raw/`` uncompressed, under the names
torchvision's ``MNIST``, ``FashionMNIST``, ``KMNIST``, ``QMNIST`` and ``EMNIST`` look for.

Images carry their identity: pixel ``[0, 0]`` is a per-data-set tag and ``[0, 1]`` the sample
index, so a test can tell from a batch which sample of which data set it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8 or int32, 1-3 dims) as one IDX file."""
    array = np.asarray(array)
    magic = (_TYPE_CODES[array.dtype] << 8) | array.ndim
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(array.dtype.newbyteorder(">")).tobytes())
    return path


@dataclass
class Split:
    images: np.ndarray  # (n, H, W) uint8
    labels: np.ndarray  # (n,) original class values (int64)


def make_split(n: int, classes: np.ndarray, tag: int, size: int = 6, seed: int = 0) -> Split:
    """``n`` random images whose pixel [0, 0] is ``tag`` and [0, 1] the index; labels cycle."""
    if n > 256:
        raise ValueError("the sample index must fit one uint8 pixel")
    rng = np.random.default_rng([seed, tag, n])
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    images[:, 0, 0] = tag
    images[:, 0, 1] = np.arange(n)
    labels = np.asarray(classes)[np.arange(n) % len(classes)]
    return Split(images, rng.permutation(labels).astype(np.int64))


def write_mnist_like(root: Path, class_name: str, train: Split, test: Split) -> Path:
    """``MNIST`` / ``FashionMNIST`` / ``KMNIST`` raw files (all four: torchvision wants them)."""
    raw = Path(root) / class_name / "raw"
    for prefix, split in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", split.images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", split.labels.astype(np.uint8))
    return raw


def qmnist_label_table(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """QMNIST's ``(n, 8)`` int32 label table: class, NIST series/writer/…, filled arbitrarily."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 10_000, (len(labels), 8)).astype(np.int32)
    table[:, 0] = labels
    return table


def write_qmnist(root: Path, train: Split, test: Split) -> Path:
    """``QMNIST`` raw files: ``qmnist-{train,test}-images-idx3-ubyte`` and ``-labels-idx2-int``."""
    raw = Path(root) / "QMNIST" / "raw"
    for what, split in (("train", train), ("test", test)):
        write_idx(raw / f"qmnist-{what}-images-idx3-ubyte", split.images)
        write_idx(raw / f"qmnist-{what}-labels-idx2-int", qmnist_label_table(split.labels))
    return raw


def write_emnist(root: Path, split_name: str, train: Split, test: Split) -> Path:
    """``EMNIST`` raw files of one split: ``emnist-<split>-{train,test}-{images,labels}-…``."""
    raw = Path(root) / "EMNIST" / "raw"
    for what, split in (("train", train), ("test", test)):
        prefix = f"emnist-{split_name}-{what}"
        write_idx(raw / f"{prefix}-images-idx3-ubyte", split.images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", split.labels.astype(np.uint8))
    return raw


@dataclass
class TinySets:
    """Ground truth of the data sets written by :func:`write_tiny_sets`."""

    root: Path
    splits: dict[str, tuple[Split, Split]]  # name → (train, validation)


def write_tiny_sets(root: Path, size: int = 6) -> TinySets:
    """MNIST (30/10), FashionMNIST (20/8), KMNIST (12/6), QMNIST (16/7), EMNIST:letters (52/26).

    Different lengths, so concatenate/mix draws shorter sets with replacement.
    """
    digits = np.arange(10)
    splits = {
        "MNIST": (make_split(30, digits, 1, size), make_split(10, digits, 101, size)),
        "FashionMNIST": (make_split(20, digits, 2, size), make_split(8, digits, 102, size)),
        "KMNIST": (make_split(12, digits, 3, size), make_split(6, digits, 103, size)),
        "QMNIST": (make_split(16, digits, 4, size), make_split(7, digits, 104, size)),
        "EMNIST:letters": (
            make_split(52, np.arange(1, 27), 5, size),
            make_split(26, np.arange(1, 27), 105, size),
        ),
    }
    for name in ("MNIST", "FashionMNIST", "KMNIST"):
        write_mnist_like(root, name, *splits[name])
    write_qmnist(root, *splits["QMNIST"])
    write_emnist(root, "letters", *splits["EMNIST:letters"])
    return TinySets(Path(root), splits)
