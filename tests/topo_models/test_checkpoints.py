"""Loading TDANN/VISSL checkpoints into ResNet18Spatial and writing them back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet50

from topo_models.checkpoints import load_tdann_checkpoint, save_vissl_style_checkpoint
from topo_models.errors import TopoError
from topo_models.trunks.resnet_spatial import ResNet18Spatial


def _randomised(model: ResNet18Spatial, seed: int = 0) -> ResNet18Spatial:
    """Random weights and BN statistics, so that a wrong mapping changes the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * 0.1
                if name.endswith("running_var"):
                    values = values.abs() + 0.5
                tensor.copy_(values)
    return model.eval()


def _vissl_by_hand(model: ResNet18Spatial) -> dict:
    """The VISSL layout written independently of save_vissl_style_checkpoint."""
    state = model.state_dict()
    trunk = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        trunk["base_model." + key] = value.clone()
        if not key.startswith("bn1."):
            block_key = re.sub(r"^layer(\d)\.(\d)\.", r"layer\1_\2.", key)
            trunk["_feature_blocks." + block_key] = value.clone()
    if model.head_kind == "projector":
        heads = {
            "0.0.clf.0.weight": state["fc.0.weight"],
            "0.0.clf.0.bias": state["fc.0.bias"],
            "0.1.clf.0.weight": state["fc.2.weight"],
            "0.1.clf.0.bias": state["fc.2.bias"],
        }
    elif model.head_kind == "classifier":
        heads = {"0.clf.0.weight": state["fc.weight"], "0.clf.0.bias": state["fc.bias"]}
    else:
        heads = {}
    return {
        "phase_idx": 199,
        "iteration": 1000,
        "classy_state_dict": {
            "phase_idx": 199,
            "base_model": {"model": {"trunk": trunk, "heads": heads}},
        },
    }


def _assert_same_outputs(a: ResNet18Spatial, b: ResNet18Spatial) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_a, feats_a = a(x)
        out_b, feats_b = b(x)
    assert torch.equal(out_a, out_b)
    assert feats_a.keys() == feats_b.keys()
    for name in feats_a:
        assert torch.equal(feats_a[name], feats_b[name]), name


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"head": "projector", "projection_dim": 64}, {"projection_dim": 64}),
        ({"head": "classifier", "num_classes": 7}, {"num_classes": 7}),
        ({"head": "none"}, {}),
    ],
)
def test_hand_written_vissl_checkpoint_loads_with_identical_outputs(
    tmp_path: Path, kwargs: dict, expected: dict
) -> None:
    original = _randomised(ResNet18Spatial(**kwargs))
    path = tmp_path / "model_final_checkpoint_phase199.torch"
    torch.save(_vissl_by_hand(original), path)

    loaded = load_tdann_checkpoint(path)

    assert loaded.head_kind == kwargs["head"]
    assert not loaded.training
    if "projection_dim" in expected:
        assert loaded.fc[2].out_features == expected["projection_dim"]
    if "num_classes" in expected:
        assert loaded.fc.out_features == expected["num_classes"]
    _assert_same_outputs(original, loaded)


def test_head_none_drops_the_heads_of_a_simclr_checkpoint(tmp_path: Path) -> None:
    original = _randomised(ResNet18Spatial(head="projector"))
    path = tmp_path / "simclr.torch"
    torch.save(_vissl_by_hand(original), path)

    loaded = load_tdann_checkpoint(path, head="none")

    assert loaded.head_kind == "none"
    _, feats_a = original(torch.ones(1, 3, 32, 32))
    _, feats_b = loaded(torch.ones(1, 3, 32, 32))
    assert torch.equal(feats_a["layer4.1"], feats_b["layer4.1"])


def test_asking_for_the_wrong_head_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "simclr.torch"
    torch.save(_vissl_by_hand(_randomised(ResNet18Spatial(head="projector"))), path)
    with pytest.raises(TopoError, match="simclr.torch") as info:
        load_tdann_checkpoint(path, head="classifier")
    assert info.value.field == "heads"


@pytest.mark.parametrize("head", ["projector", "classifier"])
def test_save_vissl_style_checkpoint_round_trips(tmp_path: Path, head: str) -> None:
    original = _randomised(ResNet18Spatial(head=head, num_classes=5), seed=3)
    path = save_vissl_style_checkpoint(original, tmp_path / "sub" / "export.torch")

    assert path == tmp_path / "sub" / "export.torch"
    assert [p.name for p in path.parent.iterdir()] == ["export.torch"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["phase_idx"], int) and isinstance(raw["iteration"], int)
    expected = _vissl_by_hand(original)["classy_state_dict"]["base_model"]["model"]
    written = raw["classy_state_dict"]["base_model"]["model"]
    assert written["trunk"].keys() == expected["trunk"].keys()
    assert written["heads"].keys() == expected["heads"].keys()

    _assert_same_outputs(original, load_tdann_checkpoint(path))


def test_feature_blocks_only_checkpoint_reports_missing_bn1(tmp_path: Path) -> None:
    ckpt = _vissl_by_hand(_randomised(ResNet18Spatial()))
    trunk = ckpt["classy_state_dict"]["base_model"]["model"]["trunk"]
    for key in [k for k in trunk if k.startswith("base_model.")]:
        del trunk[key]
    path = tmp_path / "blocks_only.torch"
    torch.save(ckpt, path)

    with pytest.raises(TopoError, match="blocks_only.torch") as info:
        load_tdann_checkpoint(path)
    assert info.value.field == "trunk"
    message = str(info.value)
    assert "missing 5 key(s)" in message
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert f"bn1.{name}" in message
    assert "unexpected" not in message


def test_disagreeing_duplicate_families_raise(tmp_path: Path) -> None:
    ckpt = _vissl_by_hand(_randomised(ResNet18Spatial()))
    trunk = ckpt["classy_state_dict"]["base_model"]["model"]["trunk"]
    trunk["_feature_blocks.layer2_1.conv1.weight"] += 1.0
    path = tmp_path / "split.torch"
    torch.save(ckpt, path)

    with pytest.raises(TopoError, match="disagree") as info:
        load_tdann_checkpoint(path)
    assert "layer2.1.conv1.weight" in str(info.value)
    assert "split.torch" in str(info.value)


def test_torchvision_resnet18_state_dict_loads_as_1000_class_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    loaded = load_tdann_checkpoint(path)

    assert loaded.head_kind == "classifier" and loaded.fc.out_features == 1000
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], reference(x))


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_state_dict_without_fc_loads_headless(tmp_path: Path, wrapper: str) -> None:
    original = _randomised(ResNet18Spatial())
    path = tmp_path / "wrapped.pt"
    torch.save({wrapper: original.state_dict(), "epoch": 3}, path)

    loaded = load_tdann_checkpoint(path)

    assert loaded.head_kind == "none"
    _assert_same_outputs(original, loaded)


def test_resnet50_state_dict_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)

    with pytest.raises(TopoError, match="resnet50.pth") as info:
        load_tdann_checkpoint(path)
    assert info.value.field == "trunk"
    message = str(info.value)
    assert "unexpected" in message and "layer1.0.conv3.weight" in message
    assert "shape mismatch" in message and "(64, 64, 1, 1)" in message


def test_truncated_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.torch"
    torch.save(_vissl_by_hand(ResNet18Spatial()), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(TopoError, match="truncated") as info:
        load_tdann_checkpoint(path)
    assert info.value.file == str(path)


def test_non_torch_file_and_missing_file_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(TopoError, match="notes.txt"):
        load_tdann_checkpoint(garbage)
    with pytest.raises(TopoError, match="not found"):
        load_tdann_checkpoint(tmp_path / "absent.torch")


class _Payload:
    """An arbitrary object that weights_only loading must not unpickle."""

    def __init__(self) -> None:
        self.value = 42


def test_checkpoint_with_python_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.torch"
    torch.save({"state_dict": ResNet18Spatial().state_dict(), "extra": _Payload()}, path)

    with pytest.raises(TopoError, match="non-tensor Python objects") as info:
        load_tdann_checkpoint(path)
    assert info.value.file == str(path)


def test_feature_blocks_map_to_torchvision_names(tmp_path: Path) -> None:
    """With bn1 supplied separately, the _feature_blocks family alone reproduces the model."""
    original = _randomised(ResNet18Spatial())
    ckpt = _vissl_by_hand(original)
    trunk = ckpt["classy_state_dict"]["base_model"]["model"]["trunk"]
    for key in [k for k in trunk if k.startswith("base_model.")]:
        value = trunk.pop(key)
        if key.startswith("base_model.bn1."):
            trunk[key[len("base_model.") :]] = value
    path = tmp_path / "blocks_plus_bn1.torch"
    torch.save(ckpt, path)

    _assert_same_outputs(original, load_tdann_checkpoint(path))
