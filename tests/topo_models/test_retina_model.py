"""Retina assembly: streaming, batches, parameter dicts, gradients and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from topo_models.errors import TopoError
from topo_models.retina import Resolution, Retina

F64 = torch.float64
ALL_STATE = {"bipolar_lambda_amp": 50.0, "on_sigma_pool": 0.1, "off_sigma_pool": 0.1}


# tiny per-step ops are dominated by thread hand-off on a shared 2-core CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _movie(t: int = 90, size: int = 8, batch: int = 1, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, t, size, size, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_deterministic_run_is_exactly_chunk_invariant(dtype):
    video = _movie(dtype=dtype)
    retina = Retina(spikes=False, **ALL_STATE)
    whole = retina.run(video, chunk=video.shape[2])
    for chunk in (7, 1):
        retina.reset()
        streamed = retina.run(video, chunk=chunk)
        for key in whole:
            assert streamed[key].dtype == dtype
            assert torch.equal(whole[key], streamed[key]), (key, chunk)


def test_reset_restarts_the_movie_and_calls_continue_it():
    video = _movie(t=40)
    retina = Retina(spikes=False)
    first = retina(video)["ganglion_input_ON"]
    continued = retina(video)["ganglion_input_ON"]
    retina.reset()
    assert torch.equal(retina(video)["ganglion_input_ON"], first)
    assert not torch.equal(continued, first)


def test_batch_of_two_equals_two_single_runs():
    video = _movie(batch=2, t=50)
    retina = Retina(spikes=False, **ALL_STATE)
    both = retina(video)
    for b in range(2):
        retina.reset()
        single = retina(video[b : b + 1])
        for key in both:
            torch.testing.assert_close(both[key][b : b + 1], single[key], rtol=1e-6, atol=1e-5)


def test_parameters_dict_round_trip_and_keywords():
    retina = Retina(opl_sigma_center=0.07, on_i_0=40.0)
    d = retina.parameters_dict()
    assert d["opl.sigma_center"] == pytest.approx(0.07)
    assert d["on.i_0"] == pytest.approx(40.0) and d["off.i_0"] == pytest.approx(37.0)
    changed = {k: v * 1.5 + 0.01 for k, v in d.items()}
    other = Retina()
    other.load_parameters_dict(changed)
    assert other.parameters_dict() == pytest.approx(changed)
    assert {row[0] for row in other.describe()} == set(d)
    assert all(unit and doc for _, _, unit, doc in other.describe())


def test_loaded_tau_changes_the_centre_step_response_as_the_formula_says():
    retina = Retina(spikes=False, opl_undershoot_weight=0.0)
    retina.load_parameters_dict({"opl.tau_center": 0.02})
    retina(torch.ones(1, 1, 100, 4, 4, dtype=F64))
    centre = retina.opl.center_signal[0, 0, :, 1, 1].numpy()
    t_end = (np.arange(100) + 1) * 0.001
    tau = retina.opl.tau_center.item()
    np.testing.assert_allclose(centre, 1 - np.exp(-t_end / tau), rtol=1e-9)


def test_loaded_sigma_changes_the_centre_profile_as_the_formula_says():
    retina = Retina(Resolution(pixels_per_degree=20.0), spikes=False)
    retina.load_parameters_dict({"opl.sigma_center": 0.1})
    video = torch.zeros(1, 1, 1, 15, 15, dtype=F64)
    video[0, 0, 0, 7, 7] = 1.0
    retina(video)
    profile = retina.opl.center_signal[0, 0, 0, 7].numpy()
    sigma_px = retina.opl.sigma_center.item() * 20.0
    assert math.log(profile[7] / profile[8]) == pytest.approx(1 / (2 * sigma_px**2), rel=1e-9)


def test_gradient_reaches_every_physical_parameter():
    retina = Retina(spikes=False, **ALL_STATE)
    out = retina(_movie(t=60, dtype=F64))
    weights = torch.rand(out["ganglion_input_ON"].shape, generator=torch.Generator().manual_seed(5))
    loss = (weights * out["ganglion_input_ON"] ** 2).mean() - out["ganglion_input_OFF"].mean()
    loss.backward()
    for stage in ("opl", "bipolar", "on", "off"):
        for name, param in getattr(retina, stage).named_parameters():
            assert param.grad is not None, f"{stage}.{name}"
            assert torch.isfinite(param.grad) and param.grad != 0, f"{stage}.{name}"


def test_numpy_input_gives_outputs_of_its_dtype():
    video = _movie(t=10, dtype=F64).numpy()
    out = Retina(spikes=False)(video)
    assert out["ganglion_input_ON"].dtype == F64
    assert out["ganglion_input_ON"].shape == video.shape


def test_spikes_are_zero_one_in_the_input_dtype():
    out = Retina()(_movie(t=30))
    assert set(out) == {"ganglion_spikes_ON", "ganglion_spikes_OFF"}
    assert set(out["ganglion_spikes_ON"].unique().tolist()) <= {0.0, 1.0}


def test_bad_inputs_raise_clear_errors():
    retina = Retina(spikes=False)
    with pytest.raises(TopoError, match="5-D"):
        retina(torch.zeros(3, 8, 8))
    nan = _movie(t=5)
    nan[0, 0, 2, 1, 1] = float("nan")
    with pytest.raises(TopoError, match="NaN"):
        retina(nan)
    with pytest.warns(UserWarning, match="luminance"):
        retina(2.0 * torch.ones(1, 1, 3, 4, 4))
    with pytest.raises(TopoError, match="luminance"):
        Retina(spikes=False, strict_luminance=True)(2.0 * torch.ones(1, 1, 3, 4, 4))
    with pytest.raises(TopoError, match="opl_sigma_center"):
        Retina(opl_sigma_centre=0.1)
    with pytest.raises(TopoError, match=r"opl\.tau_center"):
        Retina(opl_tau_center=-0.01)
    with pytest.raises(TopoError, match="bipolar.nope"):
        retina.load_parameters_dict({"bipolar.nope": 1.0})
    with pytest.raises(TopoError, match="chunk"):
        retina.run(_movie(t=5), chunk=0)


def test_parameters_round_trip_through_a_json_file(tmp_path):
    import json

    from topo_models.retina import Resolution, Retina

    source = Retina(opl_sigma_center=0.08, bipolar_g_leak=42.0, on_i_0=30.0)
    path = source.save_parameters(tmp_path / "retina.json")
    saved = json.loads(path.read_text())
    assert saved["parameters"]["bipolar.g_leak"]["value"] == 42.0
    assert saved["parameters"]["bipolar.g_leak"]["unit"]  # units travel with the values
    target = Retina()
    target.load_parameters(path)
    assert target.parameters_dict() == source.parameters_dict()
    other = Retina(resolution=Resolution(steps_per_second=2000.0))
    with pytest.raises(TopoError, match="another resolution"):
        other.load_parameters(path)
    saved["parameters"]["opl.no_such"] = {"value": 1.0}
    path.write_text(json.dumps(saved))
    with pytest.raises(TopoError, match="unknown physical parameter") as error:
        Retina().load_parameters(path)
    assert "retina.json" in str(error.value)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(TopoError, match="not a retina parameter file"):
        Retina().load_parameters(tmp_path / "broken.json")
