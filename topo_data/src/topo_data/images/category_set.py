"""Labelled image sets for category selectivity: a folder of category sub-folders (fLoc's layout).

TDANN measures category selectivity with fLoc (Stigliani et al. 2015): grayscale faces, bodies,
characters, places and objects. fLoc is a download; the default here is a stand-in built from
photos that ship inside scikit-image and scikit-learn (LFW faces, text, a temple and a launch pad,
a cup, coins, a clock, a motorcycle), cut into crops, shifts and mirror images and made grayscale
as fLoc's are. It has a few categories with enough images to compute a t map per category; it is
not a localiser, and its categories are what those few photos hold.

``write_category_set`` writes ``root/<category>/<i>.png`` whole (a temp folder renamed into
place) with a ``manifest.json``; ``load_category_set`` reads any such folder, fLoc's included.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from topo_data.errors import TopoDataError
from topo_data.images.built_folder import build_in_place, check_integers, is_built

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
EXCLUDED = ("scrambled",)  # fLoc's control category, dropped as in TDANN
_FORMAT = 1
log = logging.getLogger(__name__)

# category → (files of the dependencies' data folders, crop side as a fraction of the short side)
_SKIMAGE = "skimage"
_SKLEARN = "sklearn"
# Only the packages' data files are read: they are found, never imported (scikit-learn's
# import alone takes about 2 s, which every topo_train and topo_eval command would pay).
_DISTRIBUTIONS = {_SKIMAGE: "scikit-image", _SKLEARN: "scikit-learn"}
SOURCES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[float, float]]] = {
    "faces": (((_SKIMAGE, "lfw_subset.npy"),), (0.80, 1.0)),  # the first 100 are faces
    "characters": (((_SKIMAGE, "text.png"), (_SKIMAGE, "page.png")), (0.35, 0.60)),
    "places": (((_SKLEARN, "china.jpg"), (_SKIMAGE, "rocket.jpg")), (0.55, 0.90)),
    "objects": (
        (
            (_SKIMAGE, "coffee.png"),
            (_SKIMAGE, "coins.png"),
            (_SKIMAGE, "clock_motion.png"),
            (_SKIMAGE, "motorcycle_left.png"),
        ),
        (0.45, 0.85),
    ),
}
CATEGORIES: tuple[str, ...] = tuple(SOURCES)
_LFW_FACES = 100


@dataclass(frozen=True)
class CategorySet:
    """The images of a category folder: ``files[i]`` belongs to ``categories[labels[i]]``."""

    root: Path
    files: tuple[Path, ...]
    labels: np.ndarray  # (images,) int, index into categories
    categories: tuple[str, ...]


def _version(package: str) -> str:
    return importlib.metadata.version(_DISTRIBUTIONS[package])


def _data_file(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise TopoDataError(
            "the package holding the built-in category set's images is not installed",
            field=package,
            expected=f"pip install {_DISTRIBUTIONS[package]}",
        )
    folder = "data" if package == _SKIMAGE else "datasets/images"
    path = Path(spec.origin).parent / folder / name
    if not path.is_file():
        raise TopoDataError(
            "an image of the built-in category set is missing from its package",
            file=path,
            expected=f"a data file of {package} {_version(package)}",
        )
    return path


def _photos(category: str) -> list[Image.Image]:
    """The grayscale source images of a category (LFW's 25×25 faces as 100 separate photos)."""
    photos = []
    for package, name in SOURCES[category][0]:
        path = _data_file(package, name)
        if path.suffix == ".npy":
            faces = np.load(path, allow_pickle=False)[:_LFW_FACES]
            photos += [Image.fromarray(np.rint(face * 255).astype(np.uint8)) for face in faces]
        else:
            with Image.open(path) as image:
                photos.append(image.convert("L"))
    return photos


def _crops(category: str, count: int, size: int, seed: Sequence[int]) -> list[Image.Image]:
    """``count`` seeded crops (random side and place) of the category's photos, every other
    one mirrored, resized to ``size`` and replicated to RGB (fLoc is grayscale)."""
    photos = _photos(category)
    low, high = SOURCES[category][1]
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    crops = []
    for index in range(count):  # one file per image: PIL work, not array math
        photo = photos[index % len(photos)]
        width, height = photo.size
        side = max(1, round(rng.uniform(low, high) * min(width, height)))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crops.append(crop.resize((size, size), Image.Resampling.LANCZOS).convert("RGB"))
    return crops


def write_category_set(
    root: str | Path, image_size: int = 128, images_per_category: int = 32, seed: int = 0
) -> Path:
    """Write (or reuse) the built-in stand-in for fLoc: ``root/<category>/<i>.png``.

    Built in a temp folder beside ``root`` and renamed into place, so a reader never sees half
    a set; a ``root`` whose ``manifest.json`` holds the same parameters is returned untouched.

    Args:
        root: the folder (created; an existing one must be an earlier output or empty).
        image_size: side of the written images, pixels (the model's transform resizes them).
        images_per_category: images in each of :data:`CATEGORIES`.
        seed: fixes every crop and mirror.
    """
    check_integers(
        image_size=(image_size, 8), images_per_category=(images_per_category, 2), seed=(seed, 0)
    )
    root = Path(root)
    parameters = {
        "format": _FORMAT,
        "image_size": image_size,
        "images_per_category": images_per_category,
        "seed": seed,
        "categories": list(CATEGORIES),
        "skimage_version": _version(_SKIMAGE),
        "sklearn_version": _version(_SKLEARN),
    }
    if is_built(root, parameters, "a built-in category set"):
        return root
    log.info(
        "writing the built-in category set once: %d categories × %d images → %s",
        len(CATEGORIES),
        images_per_category,
        root,
    )

    def build(staging: Path) -> None:
        for index, category in enumerate(CATEGORIES):
            folder = staging / category
            folder.mkdir()
            for i, crop in enumerate(
                _crops(category, images_per_category, image_size, [seed, index])
            ):
                crop.save(folder / f"{category}-{i:04d}.png")
        source = "crops of scikit-image and scikit-learn sample images; a stand-in for fLoc"
        text = json.dumps({"parameters": parameters, "source": source}, indent=2)
        (staging / "manifest.json").write_text(text + "\n")

    build_in_place(root, parameters, build)
    return root


def load_category_set(root: str | Path, exclude: Sequence[str] = EXCLUDED) -> CategorySet:
    """The images of every category sub-folder of ``root`` (sorted), minus ``exclude``.

    Raises:
        TopoDataError: naming the folder when it is missing, has fewer than two categories
            (selectivity contrasts one category with the others) or an empty category.
    """
    root = Path(root)
    if not root.is_dir():
        raise TopoDataError(
            "category image folder not found", file=root, expected="a folder of category folders"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    folders = [p for p in folders if p.name not in set(exclude)]
    if len(folders) < 2:
        raise TopoDataError(
            "a category image set needs at least two categories (each is contrasted with the "
            "others)",
            file=root,
            expected="<root>/<category>/<image> for two or more categories",
            found=[p.name for p in folders],
        )
    files, labels = [], []
    for label, folder in enumerate(folders):
        images = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise TopoDataError(
                "a category folder holds no images",
                file=folder,
                expected=f"image files ({', '.join(IMAGE_SUFFIXES)})",
            )
        files += images
        labels += [label] * len(images)
    return CategorySet(root, tuple(files), np.asarray(labels), tuple(p.name for p in folders))
