"""Category image folders (fLoc's layout) and the built-in stand-in written from package photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from topo_data.errors import TopoDataError
from topo_data.images import load_category_set, write_category_set
from topo_data.images.category_set import CATEGORIES


def test_the_built_in_set_round_trips_as_grey_images_per_category(tmp_path):
    root = write_category_set(tmp_path / "set", image_size=16, images_per_category=3, seed=1)
    found = load_category_set(root)
    assert found.categories == tuple(sorted(CATEGORIES))
    assert len(found.files) == 3 * len(CATEGORIES)
    assert np.bincount(found.labels).tolist() == [3] * len(CATEGORIES)
    assert all(path.parent.name == found.categories[label] for path, label in
               zip(found.files, found.labels, strict=True))  # fmt: skip
    pixels = np.asarray(Image.open(found.files[0]))
    assert pixels.shape == (16, 16, 3) and (pixels[..., 0] == pixels[..., 2]).all()  # grey


def test_the_same_parameters_reuse_the_folder_and_others_rewrite_it(tmp_path):
    root = write_category_set(tmp_path / "set", image_size=16, images_per_category=2)
    first = root / "faces" / "faces-0000.png"
    stamp = first.stat().st_mtime_ns
    write_category_set(root, image_size=16, images_per_category=2)
    assert first.stat().st_mtime_ns == stamp
    write_category_set(root, image_size=16, images_per_category=4)
    assert len(load_category_set(root).files) == 4 * len(CATEGORIES)


def test_a_folder_with_one_category_is_refused_naming_it(tmp_path):
    (tmp_path / "faces").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "faces" / "a.png")
    (tmp_path / "scrambled").mkdir()  # fLoc's control category is not a category
    Image.new("RGB", (8, 8)).save(tmp_path / "scrambled" / "b.png")
    with pytest.raises(TopoDataError, match="at least two categories") as error:
        load_category_set(tmp_path)
    assert error.value.file == str(tmp_path) and error.value.found == ["faces"]


def test_an_empty_category_is_refused_naming_its_folder(tmp_path):
    for name in ("faces", "places"):
        (tmp_path / name).mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "faces" / "a.png")
    with pytest.raises(TopoDataError, match="no images") as error:
        load_category_set(tmp_path)
    assert error.value.file == str(tmp_path / "places")


def test_a_foreign_folder_is_never_overwritten(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(TopoDataError, match="refusing"):
        write_category_set(tmp_path, image_size=16, images_per_category=2)
    assert (tmp_path / "mine.txt").read_text() == "keep"
