"""The default data set: crops of real photos that ship inside the scikit-image wheel.

No download is ever made: the photos are read with PIL straight from the installed package's
data directory (``skimage.data`` functions are not called, since some of them fetch files). Each
photo is one class; its images are random square crops, so the default run trains on real
natural-image statistics with nothing to fetch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import skimage
from PIL import Image

from topo_data.errors import TopoDataError
from topo_data.images.built_folder import build_in_place, check_integers, is_built
from topo_data.images.folder import ImageFolderData, _check_options

_PHOTO_FILES = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "rocket": "rocket.jpg",
}
EMBEDDED_PHOTOS: tuple[str, ...] = tuple(_PHOTO_FILES)

_FORMAT = 1
_CROP_FRACTION = (0.25, 0.70)  # crop side, as a fraction of the photo's short side
_SPLITS = ("train", "val")
log = logging.getLogger(__name__)


def photo_path(name: str) -> Path:
    """Path of an embedded photo inside the installed scikit-image package."""
    if name not in _PHOTO_FILES:
        raise TopoDataError("unknown embedded photo", expected=EMBEDDED_PHOTOS, found=repr(name))
    path = Path(skimage.__file__).parent / "data" / _PHOTO_FILES[name]
    if not path.is_file():
        raise TopoDataError(
            "embedded photo missing from the scikit-image install",
            file=path,
            expected=f"scikit-image wheel data file (installed: {skimage.__version__})",
        )
    return path


def _random_crops(photo: Image.Image, count: int, size: int, seed: list[int]) -> list[Image.Image]:
    """``count`` random square crops of ``photo`` resized to ``size``, seeded by ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    width, height = photo.size
    short = min(width, height)
    low, high = (round(f * short) for f in _CROP_FRACTION)
    crops = []
    for _ in range(count):
        side = int(rng.integers(low, high + 1))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        crops.append(crop.resize((size, size), Image.Resampling.LANCZOS))
    return crops


def _build(folder: Path, parameters: dict, counts: dict[str, int]) -> None:
    for class_index, name in enumerate(EMBEDDED_PHOTOS):
        with Image.open(photo_path(name)) as image:
            photo = image.convert("RGB")
        for split_index, split in enumerate(_SPLITS):
            if counts[split] == 0:
                continue
            class_dir = folder / split / name
            class_dir.mkdir(parents=True)
            seed = [parameters["seed"], class_index, split_index]
            for i, crop in enumerate(
                _random_crops(photo, counts[split], parameters["image_size"], seed)
            ):
                crop.save(class_dir / f"{i:04d}.png")
    manifest = {
        "parameters": parameters,
        "classes": list(EMBEDDED_PHOTOS),
        "counts": {split: counts[split] * len(EMBEDDED_PHOTOS) for split in _SPLITS},
        "source": "photos from the scikit-image wheel's data directory",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def write_embedded_image_folder(
    root: str | Path,
    image_size: int = 64,
    train_per_class: int = 48,
    val_per_class: int = 8,
    seed: int = 0,
) -> Path:
    """Write (or reuse) ``root/{train,val}/<photo>/<i>.png``: random crops of each photo.

    Crop sides are 25-70% of the photo's short side at random positions, resized with
    Lanczos; train and val crops are separate seeded draws. The same arguments give
    byte-identical files. The tree is built in a temporary directory beside ``root`` and
    swapped in, so a reader never sees a half-written folder; if ``root`` already holds a
    ``manifest.json`` with the same parameters it is returned untouched.

    Args:
        root: output directory (created; an existing one must be an earlier output or empty).
        image_size: side of the written images, pixels.
        train_per_class: training images per photo.
        val_per_class: validation images per photo (0: no ``val/``).
        seed: fixes every crop.

    Returns:
        ``root`` as a Path.
    """
    check_integers(
        image_size=(image_size, 8),
        train_per_class=(train_per_class, 1),
        val_per_class=(val_per_class, 0),
        seed=(seed, 0),
    )
    root = Path(root)
    parameters = {
        "format": _FORMAT,
        "image_size": image_size,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "seed": seed,
        "photos": list(EMBEDDED_PHOTOS),
        "skimage_version": skimage.__version__,
    }
    if is_built(root, parameters, "an embedded-photo folder"):
        return root
    n_images = (train_per_class + val_per_class) * len(EMBEDDED_PHOTOS)
    log.info(
        "writing the embedded photo set once: %d crops of %d px (%d train, %d val per photo) "
        "into %s",
        n_images,
        image_size,
        train_per_class,
        val_per_class,
        root,
    )
    started = time.perf_counter()
    counts = {"train": train_per_class, "val": val_per_class}
    build_in_place(root, parameters, lambda staging: _build(staging, parameters, counts))
    log.info("embedded photo set written in %.1f s: %s", time.perf_counter() - started, root)
    return root


class EmbeddedImageData(ImageFolderData):
    """:class:`ImageFolderData` on the embedded photo crops; the default, download-free data.

    The folder is written once to ``root/s{S}_t{T}_v{V}_seed{seed}`` (relative paths are
    relative to the working directory) and reused by later runs with the same parameters.

    Args:
        root: cache directory for the written folders.
        image_size: side of the written images and of the model input, pixels.
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        views: "simclr" or "supervised".
        train_per_class: training crops per photo (10 photos).
        val_per_class: validation crops per photo (0: no validation set).
        seed: fixes the crops, the sample order and the augmentation.
        rank: this replica's index under DDP (set by the training loop).
        world_size: replicas sharing each epoch.
    """

    def __init__(
        self,
        root: str = ".cache/topo/embedded_photos",
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        views: str = "simclr",
        train_per_class: int = 48,
        val_per_class: int = 8,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check_options(image_size, batch_size, num_workers, views)
        name = f"s{image_size}_t{train_per_class}_v{val_per_class}_seed{seed}"
        self.folder = write_embedded_image_folder(
            Path(root) / name, image_size, train_per_class, val_per_class, seed
        )
        super().__init__(
            train_dir=str(self.folder / "train"),
            val_dir=str(self.folder / "val") if val_per_class > 0 else None,
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            views=views,
            seed=seed,
            rank=rank,
            world_size=world_size,
            check_images=False,  # written by us, whole or not at all: nothing to find
        )
