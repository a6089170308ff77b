"""load_checkpoint: architecture inference, round trips, the 2024 key set, CUDA-saved files and
refusals of other files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from topo_models import TopoError
from topo_models.predictive import (
    FiringRateEncoder,
    infer_architecture,
    load_checkpoint,
    sensorium_cnn,
    sensorium_ln,
    stacked_core_full_gauss_readout,
)


def coords(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 600, size=(n, 3))


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float tensor (parameters, BN statistics) moved off its init, so a round trip that
    drops or misplaces any of them shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.endswith("source_grid"):
                continue
            noise = 0.05 * torch.randn(tensor.shape, generator=generator)
            tensor.copy_(tensor.abs() + 0.5 if "running_var" in name else tensor + noise)
    return model.eval()


def outputs(model, data_key, images, pupil=None) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(images, data_key=data_key, pupil_center=pupil)


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


# ------------------------------------------------------------------ round trips


def test_cnn_with_shifter_round_trip_gives_identical_outputs(tmp_path):
    n = {"27204-5-13": 11, "21067-10-18": 7}
    original = perturbed(
        sensorium_cnn(n, {k: coords(v, i) for i, (k, v) in enumerate(n.items())}, 4, shifter=True)
    )
    path = save(original.state_dict(), tmp_path / "sensorium_p_sota_model.pth")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, FiringRateEncoder) and not loaded.training
    assert loaded.data_keys == list(n)
    images, pupil = torch.randn(2, 4, 18, 24), torch.randn(2, 2)
    for key in n:
        torch.testing.assert_close(
            outputs(loaded, key, images, pupil),
            outputs(original, key, images, pupil),
            rtol=0,
            atol=0,
        )
    for name, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name  # source_grid loaded exactly
    assert not loaded.core.linear


def test_source_grid_buffer_is_idempotent_under_renormalisation(tmp_path):
    original = sensorium_cnn({"k": 9}, {"k": coords(9)})
    grid = original.readout["k"].source_grid
    kwargs = infer_architecture(original.state_dict())
    rebuilt = stacked_core_full_gauss_readout(**kwargs)
    np.testing.assert_allclose(rebuilt.readout["k"].source_grid.numpy(), grid.numpy(), atol=1e-7)


def test_topo_train_layout_and_config_pick_the_ln(tmp_path):
    original = perturbed(sensorium_ln({"k": 6}, {"k": coords(6)}))
    path = save(
        {
            "model": original.state_dict(),
            "model_config": {"_target_": "topo_models.predictive.sensorium_ln"},
        },
        tmp_path / "model.pt",
    )
    loaded = load_checkpoint(path)
    assert loaded.core.linear
    images = torch.randn(2, 1, 18, 24)
    torch.testing.assert_close(
        outputs(loaded, "k", images), outputs(original, "k", images), rtol=0, atol=0
    )


def test_ln_or_cnn_from_argument_file_name_or_layer_count(tmp_path):
    ln = sensorium_ln({"k": 4}, {"k": coords(4)}).state_dict()
    cnn = sensorium_cnn({"k": 4}, {"k": coords(4)}).state_dict()
    assert load_checkpoint(save(ln, tmp_path / "weights.pt")).core.linear  # 3 layers
    assert not load_checkpoint(save(cnn, tmp_path / "weights.pt")).core.linear  # 4 layers
    assert load_checkpoint(save(cnn, tmp_path / "sensorium_p_ln_model.pth")).core.linear
    assert not load_checkpoint(save(ln, tmp_path / "weights.pt"), architecture="cnn").core.linear
    assert not load_checkpoint(save(cnn, tmp_path / "kiln_model.pt")).core.linear  # a token only
    with pytest.raises(TopoError, match="architecture"):
        load_checkpoint(save(ln, tmp_path / "weights.pt"), architecture="rnn")


def test_other_variants_are_inferred(tmp_path):
    """No grid predictor, uncorrelated Gaussian, no readout bias, StaticAffine shifter, Cholesky
    sigma in a second file, stacked layers — all read off the tensors."""
    original = perturbed(
        stacked_core_full_gauss_readout(
            {"a": 5, "b": 3},
            input_channels=2,
            hidden_channels=8,
            input_kern=5,
            hidden_kern=3,
            layers=3,
            stack=-2,
            gauss_type="uncorrelated",
            readout_bias=False,
            shifter=True,
            shifter_type="StaticAffine",
        )
    )
    loaded = load_checkpoint(
        save(original.state_dict(), tmp_path / "variant.pt"), architecture="cnn"
    )
    readout = loaded.readout["a"]
    assert not readout.has_grid_predictor and readout.gauss_type == "uncorrelated"
    assert readout.bias is None and readout.in_shape[0] == 16
    images, pupil = torch.randn(2, 2, 20, 20), torch.randn(2, 2)
    for key in ("a", "b"):
        torch.testing.assert_close(
            outputs(loaded, key, images, pupil), outputs(original, key, images, pupil)
        )
    psd = perturbed(sensorium_cnn({"k": 5}, {"k": coords(5)}, psd_sigma=True))
    loaded = load_checkpoint(save(psd.state_dict(), tmp_path / "psd.pt"))
    assert loaded.readout["k"].psd_sigma
    torch.testing.assert_close(loaded.readout["k"].covariance(), psd.readout["k"].covariance())


def test_ddp_prefix_is_removed(tmp_path):
    original = sensorium_cnn({"k": 4}, {"k": coords(4)})
    state = {f"module.{k}": v for k, v in original.state_dict().items()}
    loaded = load_checkpoint(save({"state_dict": state}, tmp_path / "ddp.pt"))
    images = torch.randn(1, 1, 18, 24)
    torch.testing.assert_close(outputs(loaded, "k", images), outputs(original, "k", images))


# ------------------------------------------------------------------ the 2024 key set


def test_2024_key_set_with_zero_hidden_biases_loads_as_the_same_function(tmp_path):
    original = perturbed(sensorium_cnn({"26872-17-20": 8}, {"26872-17-20": coords(8)}))
    state = dict(original.state_dict())
    extra = {
        f"core.features.layer{i}.ds_conv.{c}_conv.bias": torch.zeros(64)
        for i in (1, 2, 3)
        for c in ("in_depth", "spatial", "out_depth")
    }
    loaded = load_checkpoint(save({**state, **extra}, tmp_path / "sensorium_sota_model.pth"))
    assert loaded.core.bias  # built with core_bias=True
    assert set(loaded.state_dict()) == set(state) | set(extra)
    images = torch.randn(2, 1, 18, 24)
    torch.testing.assert_close(
        outputs(loaded, "26872-17-20", images), outputs(original, "26872-17-20", images)
    )


# ------------------------------------------------------------------ CUDA-saved files


def tag_as_cuda(source: Path, target: Path) -> None:
    """Rewrite a torch.save zip so every storage claims to live on cuda:0, as a file saved on a
    GPU machine does (the location is a string in data.pkl)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert data.count(b"X\x03\x00\x00\x00cpu") == 1  # memoised after the first use
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            zout.writestr(info, data)


def test_cuda_saved_file_loads_on_cpu(tmp_path):
    original = perturbed(sensorium_cnn({"k": 5}, {"k": coords(5)}))
    cpu_file = save(original.state_dict(), tmp_path / "cpu.pt")
    cuda_file = tmp_path / "cuda.pt"
    tag_as_cuda(cpu_file, cuda_file)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(cuda_file, weights_only=True)  # the file really is CUDA-tagged
    loaded = load_checkpoint(cuda_file)  # map_location="cpu" by default
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())
    images = torch.randn(2, 1, 18, 24)
    torch.testing.assert_close(outputs(loaded, "k", images), outputs(original, "k", images))


# ------------------------------------------------------------------ refusals


def test_a_resnet_state_dict_is_refused_naming_the_file(tmp_path):
    path = save(resnet18(weights=None).state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(TopoError, match="not a Sensorium") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "conv1.weight" in str(error.value)


def test_missing_unexpected_and_misshapen_keys_are_listed(tmp_path):
    state = dict(sensorium_cnn({"k": 5}, {"k": coords(5)}).state_dict())
    del state["core.features.layer2.norm.running_var"]
    state["core.features.layer1.extra"] = torch.zeros(1)
    state["readout.k.bias"] = torch.zeros(6)
    path = save(state, tmp_path / "broken.pt")
    with pytest.raises(TopoError) as error:
        load_checkpoint(path, architecture="cnn")
    message = str(error.value)
    assert str(path) in message
    assert "missing 1 key(s): core.features.layer2.norm.running_var" in message
    assert "unexpected 1 key(s): core.features.layer1.extra" in message
    assert "readout.k.bias: checkpoint (6,) vs model (5,)" in message


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(TopoError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TopoError, match="corrupt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(TopoError, match="not a dict"):
        load_checkpoint(save([torch.zeros(1)], tmp_path / "list.pt"))
    with pytest.raises(TopoError, match="non-tensor"):
        load_checkpoint(save({"a": 1, "b": torch.zeros(1)}, tmp_path / "mixed.pt"))
