"""Image folders: loading, clear errors, SimCLR/supervised batches and resumable loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from topo_data import ImageFolderData, TopoDataError, load_image_folder


def _write_folder(root: Path, classes=("a", "b"), per_class: int = 5, size: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return _write_folder(tmp_path / "train", per_class=5), _write_folder(
        tmp_path / "val", per_class=2
    )


def test_load_image_folder_finds_classes_and_gives_rgb(tmp_path):
    root = _write_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=2)
    Image.new("L", (20, 20), 128).save(root / "owl" / "gray.png")
    dataset = load_image_folder(root)
    assert dataset.classes == ["cat", "dog", "owl"]
    assert len(dataset) == 7
    image, label = dataset[len(dataset) - 1]
    assert image.mode == "RGB" and label == 2


def test_missing_folder_error_names_path(tmp_path):
    with pytest.raises(TopoDataError, match="does not exist") as info:
        load_image_folder(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_file_instead_of_folder_is_rejected(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(TopoDataError, match="not a directory"):
        load_image_folder(path)


def test_empty_folder_error_names_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TopoDataError, match="no class sub-folders") as info:
        load_image_folder(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)


def test_class_folder_without_images_is_rejected(tmp_path):
    root = _write_folder(tmp_path / "data", classes=("a",))
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(TopoDataError, match="no valid images"):
        load_image_folder(root)


def test_one_class_for_supervised_names_path_and_two(tmp_path):
    root = _write_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(TopoDataError, match="too few classes") as info:
        ImageFolderData(train_dir=str(root), views="supervised", batch_size=2)
    message = str(info.value)
    assert str(root) in message and ">= 2" in message and "only" in message


def test_one_class_is_fine_for_simclr(tmp_path):
    root = _write_folder(tmp_path / "one", classes=("only",))
    assert ImageFolderData(train_dir=str(root), batch_size=2, image_size=16).num_classes == 1


def test_unreadable_image_error_names_the_file(tmp_path):
    root = _write_folder(tmp_path / "data", classes=("a",), per_class=1)
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"this is not a png at all")
    dataset = load_image_folder(root)
    index = [path for path, _ in dataset.samples].index(str(bad))
    with pytest.raises(TopoDataError, match="cannot read image") as info:
        dataset[index]
    assert str(bad) in str(info.value)


def test_truncated_image_error_names_the_file(tmp_path):
    root = _write_folder(tmp_path / "data", classes=("a",), per_class=1)
    good = (root / "a" / "0.png").read_bytes()
    cut = root / "a" / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    dataset = load_image_folder(root)
    index = [path for path, _ in dataset.samples].index(str(cut))
    with pytest.raises(TopoDataError) as info:
        dataset[index]
    assert str(cut) in str(info.value)


def _truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: ``Image.verify()`` passes it, decoding it fails."""
    pixels = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_corrupt_images_are_found_at_construction_naming_them(folders):
    train, val = folders
    cut = _truncated_jpeg(train / "a" / "cut.jpg")
    with pytest.raises(TopoDataError, match="1 of 11 images cannot be read") as info:
        ImageFolderData(train_dir=str(train), val_dir=str(val), batch_size=2, image_size=16)
    assert str(cut) in str(info.value) and info.value.file == str(train)
    empty = val / "b" / "empty.png"
    empty.write_bytes(b"")
    (train / "a" / "cut.jpg").unlink()
    with pytest.raises(TopoDataError, match="1 of 5 images") as info:
        ImageFolderData(train_dir=str(train), val_dir=str(val), batch_size=2, image_size=16)
    assert str(empty) in str(info.value)


def test_check_images_false_skips_the_scan_and_auto_skips_big_folders(folders, monkeypatch):
    import topo_data.images.folder as image_folder

    train, _ = folders
    _truncated_jpeg(train / "a" / "cut.jpg")
    ImageFolderData(train_dir=str(train), batch_size=2, image_size=16, check_images=False)
    monkeypatch.setattr(image_folder, "CHECK_IMAGES_AUTO_MAX", 10)
    ImageFolderData(train_dir=str(train), batch_size=2, image_size=16)  # 11 > 10: no scan
    with pytest.raises(TopoDataError, match="cut.jpg"):
        ImageFolderData(train_dir=str(train), batch_size=2, image_size=16, check_images=True)
    with pytest.raises(TopoDataError, match="check_images"):
        ImageFolderData(train_dir=str(train), batch_size=2, image_size=16, check_images="yes")


def test_bad_views_value_is_rejected(folders):
    with pytest.raises(TopoDataError, match="views"):
        ImageFolderData(train_dir=str(folders[0]), views="byol", batch_size=2)


@pytest.mark.parametrize(
    ("field", "value"), [("batch_size", 1), ("image_size", 8), ("num_workers", -1)]
)
def test_bad_sizes_are_rejected(folders, field, value):
    with pytest.raises(TopoDataError, match=field):
        ImageFolderData(train_dir=str(folders[0]), **{field: value})


def test_batch_larger_than_dataset_is_rejected_naming_dir(folders):
    with pytest.raises(TopoDataError, match="smaller than one batch") as info:
        ImageFolderData(train_dir=str(folders[0]), batch_size=11)
    assert str(folders[0]) in str(info.value)


def test_val_classes_must_match_train(tmp_path, folders):
    other = _write_folder(tmp_path / "other", classes=("a", "c"), per_class=1)
    with pytest.raises(TopoDataError, match="validation classes"):
        ImageFolderData(train_dir=str(folders[0]), val_dir=str(other), batch_size=2)


def test_simclr_batches_are_two_views(folders):
    data = ImageFolderData(str(folders[0]), str(folders[1]), image_size=16, batch_size=4)
    assert data.steps_per_epoch == 2 and data.class_names == ["a", "b"]
    views, labels = next(iter(data.train_loader(0)))
    assert views.shape == (4, 2, 3, 16, 16) and labels.shape == (4,)
    assert not torch.equal(views[:, 0], views[:, 1])
    val_views, _ = next(iter(data.val_loader()))
    assert val_views.shape == (4, 2, 3, 16, 16)


def test_supervised_batches_are_images_and_labels(folders):
    data = ImageFolderData(
        str(folders[0]), str(folders[1]), image_size=16, batch_size=4, views="supervised"
    )
    images, labels = next(iter(data.train_loader(0)))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64
    val = [batch for batch in data.val_loader()]
    assert [b[0].shape[0] for b in val] == [4]
    assert val[0][1].tolist() == [0, 0, 1, 1]


def test_train_loader_drops_last_partial_batch(folders):
    data = ImageFolderData(str(folders[0]), image_size=16, batch_size=3)
    assert len(list(data.train_loader(0))) == 3 == data.steps_per_epoch


def test_train_loader_resume_matches_full_epoch(folders):
    data = ImageFolderData(str(folders[0]), image_size=16, batch_size=2)
    full = list(data.train_loader(epoch=4))
    resumed = list(data.train_loader(epoch=4, start_batch=3))
    assert len(resumed) == len(full) - 3
    for (x, y), (fx, fy) in zip(resumed, full[3:], strict=True):
        assert torch.equal(x, fx) and torch.equal(y, fy)


def test_epochs_differ_and_repeat(folders):
    data = ImageFolderData(str(folders[0]), image_size=16, batch_size=2)
    epoch0 = next(iter(data.train_loader(0)))[0]
    assert torch.equal(epoch0, next(iter(data.train_loader(0)))[0])
    assert not torch.equal(epoch0, next(iter(data.train_loader(1)))[0])


def test_val_loader_is_deterministic_and_none_without_val(folders):
    data = ImageFolderData(str(folders[0]), str(folders[1]), image_size=16, batch_size=2)
    first = [x for x, _ in data.val_loader()]
    second = [x for x, _ in data.val_loader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert ImageFolderData(str(folders[0]), batch_size=2).val_loader() is None


def test_start_batch_out_of_range_is_rejected(folders):
    data = ImageFolderData(str(folders[0]), image_size=16, batch_size=4)
    with pytest.raises(TopoDataError, match="start_batch"):
        data.train_loader(0, start_batch=3)


def test_sample_images_are_deterministic_eval_images(folders):
    data = ImageFolderData(str(folders[0]), str(folders[1]), image_size=16, batch_size=2)
    images = data.sample_images(3)
    assert images.shape == (3, 3, 16, 16)
    assert torch.equal(images, data.sample_images(3))
    with pytest.raises(TopoDataError, match="n"):
        data.sample_images(5)
