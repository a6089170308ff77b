"""Embedded photos: real files from the scikit-image wheel, seeded, cached and atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skimage
from PIL import Image

from topo_data import (
    EMBEDDED_PHOTOS,
    EmbeddedImageData,
    TopoDataError,
    load_image_folder,
    write_embedded_image_folder,
)
from topo_data.images.embedded import photo_path

SMALL = {"image_size": 16, "train_per_class": 3, "val_per_class": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_photos_come_from_installed_skimage_data_dir():
    data_dir = Path(skimage.__file__).parent / "data"
    assert len(EMBEDDED_PHOTOS) == 10
    for name in EMBEDDED_PHOTOS:
        path = photo_path(name)
        assert path.parent == data_dir and path.is_file()
        with Image.open(path) as image:
            assert min(image.size) >= 256


def test_folder_has_ten_classes_and_requested_counts(tmp_path):
    root = write_embedded_image_folder(tmp_path / "photos", **SMALL)
    for split, count in (("train", 3), ("val", 1)):
        dataset = load_image_folder(root / split, min_classes=10)
        assert dataset.classes == sorted(EMBEDDED_PHOTOS)
        assert len(dataset) == 10 * count
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 30, "val": 10}
    assert manifest["classes"] == list(EMBEDDED_PHOTOS)


def test_images_are_rgb_of_requested_size(tmp_path):
    root = write_embedded_image_folder(tmp_path / "photos", **SMALL)
    for path in root.rglob("*.png"):
        with Image.open(path) as image:
            assert image.size == (16, 16) and image.mode == "RGB"


def test_same_seed_gives_identical_bytes(tmp_path):
    a = _files(write_embedded_image_folder(tmp_path / "a", **SMALL, seed=3))
    b = _files(write_embedded_image_folder(tmp_path / "b", **SMALL, seed=3))
    c = _files(write_embedded_image_folder(tmp_path / "c", **SMALL, seed=4))
    assert a == b
    assert a != c


def test_train_and_val_crops_are_different_draws(tmp_path):
    root = write_embedded_image_folder(tmp_path / "p", **SMALL)
    assert (root / "train/brick/0000.png").read_bytes() != (
        root / "val/brick/0000.png"
    ).read_bytes()


def test_second_call_with_same_parameters_reuses_files(tmp_path):
    root = write_embedded_image_folder(tmp_path / "p", **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert write_embedded_image_folder(tmp_path / "p", **SMALL) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps


def test_different_parameters_rebuild_in_place(tmp_path):
    root = write_embedded_image_folder(tmp_path / "p", **SMALL)
    write_embedded_image_folder(root, image_size=20, train_per_class=2, val_per_class=0)
    assert json.loads((root / "manifest.json").read_text())["parameters"]["image_size"] == 20
    assert not (root / "val").exists()
    assert len(list((root / "train").rglob("*.png"))) == 20
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temp folders left behind


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(TopoDataError, match="refusing"):
        write_embedded_image_folder(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "thesis.tex").exists()


def test_embedded_data_module_loads_ten_classes(tmp_path):
    data = EmbeddedImageData(root=str(tmp_path), batch_size=4, **SMALL)
    assert data.folder == tmp_path / "s16_t3_v1_seed0"
    assert data.num_classes == 10 and data.class_names == sorted(EMBEDDED_PHOTOS)
    assert data.steps_per_epoch == 7
    views, labels = next(iter(data.train_loader(0)))
    assert views.shape == (4, 2, 3, 16, 16) and labels.shape == (4,)
    assert len(data.val_dataset) == 10


def test_embedded_data_validates_before_writing(tmp_path):
    with pytest.raises(TopoDataError, match="views"):
        EmbeddedImageData(root=str(tmp_path), views="nope", **SMALL)
    assert not any(tmp_path.iterdir())


def _write_and_count_classes(root: str, counts) -> None:
    """One writer: the embedded photos at ``root``, then the classes it reads back."""
    folder = write_embedded_image_folder(root, image_size=16, train_per_class=3, val_per_class=1)
    counts.put(len(load_image_folder(folder / "train").classes))


def test_concurrent_writers_leave_one_complete_folder(tmp_path):
    """Two processes writing the same folder at once (DDP replicas) both see a whole tree.
    Forked, so that they start at once without importing torch again."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    counts = context.Queue()
    target = str(tmp_path / "shared")
    writers = [
        context.Process(target=_write_and_count_classes, args=(target, counts)) for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert [counts.get(timeout=5) for _ in writers] == [10, 10]


def test_writing_the_photo_set_says_what_where_and_reuse_says_nothing(tmp_path, caplog):
    caplog.set_level("INFO", logger="topo_data")
    root = write_embedded_image_folder(tmp_path / "photos", **SMALL)
    lines = [r.getMessage() for r in caplog.records]
    assert any("40 crops of 16 px" in line and str(root) in line for line in lines)
    assert any(line.startswith("embedded photo set written") for line in lines)
    caplog.clear()
    write_embedded_image_folder(tmp_path / "photos", **SMALL)
    assert not caplog.records  # reused: nothing is built, so nothing is said
