"""Steady-state initialisation for a uniform background, and warm-up frames in ``run``."""

from __future__ import annotations

import pytest
import torch

from topo_models.errors import TopoError
from topo_models.retina.resolution import Resolution
from topo_models.retina.retina import Retina
from topo_models.retina.steady_state import bipolar_steady_potential

F64 = torch.float64
# Non-default values so that every stage carries a non-zero state: w_OPL < 1 leaves a DC OPL
# current, λ_A > 0 makes the bipolar steady state a cubic, pooling adds a blur.
ACTIVE = {
    "opl_relative_weight": 0.7,
    "bipolar_lambda_amp": 500.0,
    "on_sigma_pool": 0.1,
    "off_sigma_pool": 0.1,
}


# tiny per-step ops are dominated by thread hand-off on a shared 2-core CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _uniform(luminance: float, t: int, size: int = 6, dtype=F64) -> torch.Tensor:
    return torch.full((1, 1, t, size, size), luminance, dtype=dtype)


@pytest.mark.parametrize(
    ("drive", "g_leak", "lambda_amp"), [(15.0, 50.0, 500.0), (-15.0, 50.0, 500.0), (3.0, 20.0, 0.0)]
)
def test_bipolar_steady_potential_solves_the_cubic(drive, g_leak, lambda_amp):
    v = bipolar_steady_potential(drive, g_leak, lambda_amp)
    assert v * (g_leak + lambda_amp * v**2) == pytest.approx(drive, rel=1e-14)
    if lambda_amp:
        assert abs(v) < abs(drive) / g_leak  # gain control lowers the potential


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("parameters", [ACTIVE, {}])
def test_uniform_movie_is_constant_from_the_first_frame(dtype, parameters):
    retina = Retina(spikes=False, **parameters)
    retina.initialize_steady_state(0.5, 6, 6, dtype=dtype)
    out = retina.run(_uniform(0.5, 501, dtype=dtype), chunk=100)
    for value in out.values():
        torch.testing.assert_close(value[:, :, 0], value[:, :, 500], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(value, value[:, :, :1].expand_as(value), rtol=1e-6, atol=1e-9)
    if parameters:
        on = out["ganglion_input_ON"][0, 0, 0, 0, 0].item()
        off = out["ganglion_input_OFF"][0, 0, 0, 0, 0].item()
        assert on > 37.0 > off  # a bright background drives ON above and OFF below i0


def test_without_initialisation_the_same_movie_has_an_onset_transient():
    retina = Retina(spikes=False, **ACTIVE)
    out = retina.run(_uniform(0.5, 501), chunk=100)["ganglion_input_ON"]
    assert (out[:, :, 0] - out[:, :, 500]).abs().max() > 1.0


def test_steady_state_equals_the_long_run_limit():
    """Independent check of the closed form: run 20 s of the uniform screen from zero state."""
    resolution = Resolution(steps_per_second=100.0)
    settled = Retina(spikes=False, resolution=resolution, **ACTIVE)
    long_run = settled.run(_uniform(0.5, 2000, size=4), chunk=500)
    fresh = Retina(spikes=False, resolution=resolution, **ACTIVE)
    fresh.initialize_steady_state(0.5, 4, 4, dtype=F64)
    first = fresh.run(_uniform(0.5, 1, size=4))
    for key in long_run:
        torch.testing.assert_close(first[key][:, :, 0], long_run[key][:, :, -1], rtol=1e-10, atol=0)
    torch.testing.assert_close(fresh.bipolar.v, settled.bipolar.v, rtol=1e-10, atol=0)
    torch.testing.assert_close(fresh.bipolar.g_a, settled.bipolar.g_a, rtol=1e-10, atol=0)


def test_luminance_range_scales_the_background():
    """Luminance 127.5 of 255 is the same state as 0.5 of 1 (VirtualRetina's λ_OPL / range)."""
    grey = Retina(spikes=False, **ACTIVE)
    grey.initialize_steady_state(0.5, 3, 3, dtype=F64)
    bytes_range = Retina(spikes=False, resolution=Resolution(input_luminance_range=255.0), **ACTIVE)
    bytes_range.initialize_steady_state(127.5, 3, 3, dtype=F64)
    torch.testing.assert_close(grey.bipolar.v, bytes_range.bipolar.v, rtol=1e-12, atol=0)


def test_initialisation_resets_the_spiking_stages_and_fixes_the_frame_shape():
    retina = Retina(seed=3, **ACTIVE)
    retina.run(torch.rand(2, 1, 20, 5, 5))
    retina.initialize_steady_state(0.5, 5, 5, batch=2)
    again = retina.run(_uniform(0.5, 30, size=5, dtype=torch.float32).expand(2, -1, -1, -1, -1))
    fresh = Retina(seed=3, **ACTIVE)
    fresh.initialize_steady_state(0.5, 5, 5, batch=2)
    expected = fresh.run(_uniform(0.5, 30, size=5, dtype=torch.float32).expand(2, -1, -1, -1, -1))
    for key in expected:
        assert torch.equal(again[key], expected[key])
    with pytest.raises(TopoError, match="carried state does not fit"):
        retina.run(_uniform(0.5, 3, size=4, dtype=torch.float32))
    with pytest.raises(TopoError, match="positive"):
        retina.initialize_steady_state(0.5, 0, 5)
    strict = Retina(strict_luminance=True)
    with pytest.raises(TopoError, match="luminance outside"):
        strict.initialize_steady_state(2.0, 5, 5)


@pytest.mark.parametrize("spikes", [False, True])
def test_warmup_frames_equal_prepending_copies_of_the_first_frame(spikes):
    gen = torch.Generator().manual_seed(0)
    video = torch.rand(1, 1, 30, 5, 5, generator=gen, dtype=F64)
    warmed = Retina(spikes=spikes, **ACTIVE).run(video, chunk=7, warmup_frames=25)
    padded = torch.cat([video[:, :, :1].expand(-1, -1, 25, -1, -1), video], dim=2)
    reference = Retina(spikes=spikes, **ACTIVE).run(padded, chunk=11)
    # exact by construction: every frame takes the same operations on the same frame shapes,
    # whatever the chunking, and the no-grad warm-up the same kernels as frames run with grad
    for key, value in warmed.items():
        assert value.shape == video.shape
        assert torch.equal(value, reference[key][:, :, 25:])


def test_warmup_frames_validation():
    retina = Retina(spikes=False)
    for bad in (-1, 1.5, True):
        with pytest.raises(TopoError, match="warmup_frames is a number of frames"):
            retina.run(torch.zeros(1, 1, 3, 2, 2), warmup_frames=bad)
    with pytest.raises(TopoError, match="empty video"):
        retina.run(torch.zeros(1, 1, 0, 2, 2), warmup_frames=2)
    out = retina.run(torch.zeros(1, 1, 3, 2, 2), warmup_frames=0)
    assert out["ganglion_input_ON"].shape == (1, 1, 3, 2, 2)
