"""Streaming state of the retina: save mid-movie, restore, continue bit for bit; noise blocks."""

from __future__ import annotations

import pytest
import torch

from topo_models.errors import TopoError
from topo_models.retina import GanglionSpiking, Retina

ALL_STATE = {"bipolar_lambda_amp": 50.0, "on_sigma_pool": 0.1, "off_sigma_pool": 0.1}


# tiny per-step ops are dominated by thread hand-off on a shared 2-core CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _movie(t: int, size: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.5 + 0.5 * torch.rand(1, 1, t, size, size, generator=gen)


@pytest.mark.parametrize("spikes", [True, False])
def test_a_restored_state_continues_the_movie_exactly(spikes):
    video = _movie(120)
    whole = Retina(spikes=spikes, seed=3, **ALL_STATE)(video)
    first = Retina(spikes=spikes, seed=3, **ALL_STATE)
    head = first(video[:, :, :50])
    saved = {k: v.clone() for k, v in first.streaming_state().items()}
    first(video[:, :, 50:70])  # the saved copy must not follow later chunks
    second = Retina(spikes=spikes, seed=3, **ALL_STATE)
    second.load_streaming_state(saved)
    tail = second(video[:, :, 50:])
    for key in whole:
        assert torch.equal(torch.cat([head[key], tail[key]], dim=2), whole[key]), key


def test_state_lists_every_stage_and_the_noise_position():
    retina = Retina(seed=1)
    fresh = retina.streaming_state()  # a new movie: only the noise positions, at step 0
    assert sorted(fresh) == ["off_spikes.step", "on_spikes.step"]
    assert all(int(value) == 0 for value in fresh.values())
    retina(_movie(9))
    state = retina.streaming_state()
    for stage in ("opl", "bipolar", "on", "off"):
        assert any(key.startswith(f"{stage}.") for key in state), stage
    assert int(state["on_spikes.step"]) == 9 and int(state["off_spikes.step"]) == 9
    assert state["on_spikes.v"].shape == (1, 1, 6, 6)


def test_state_survives_torch_save(tmp_path):
    video = _movie(40)
    retina = Retina(seed=2)
    retina(video[:, :, :15])
    torch.save(retina.streaming_state(), tmp_path / "state.pt")
    expected = retina(video[:, :, 15:])
    restored = Retina(seed=2)
    restored.load_streaming_state(torch.load(tmp_path / "state.pt", weights_only=True))
    got = restored(video[:, :, 15:])
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_unknown_state_entries_are_refused_by_name():
    retina = Retina()
    with pytest.raises(TopoError, match="opl.nonsense"):
        retina.load_streaming_state({"opl.nonsense": torch.zeros(1)})
    with pytest.raises(TopoError, match="cortex.v"):
        retina.load_streaming_state({"cortex.v": torch.zeros(1)})


@pytest.mark.parametrize("refr_sigma", [0.0, 0.002])
def test_spikes_are_chunk_invariant_across_noise_block_boundaries(monkeypatch, refr_sigma):
    # 7-step blocks: chunks of 1, 5 and 33 steps cross block boundaries everywhere
    frame_numbers = 4 * 4 * (2 if refr_sigma else 1)
    monkeypatch.setattr(GanglionSpiking, "NOISE_BLOCK_NUMBERS", 7 * frame_numbers)
    current = 60.0 + 20.0 * torch.rand(1, 1, 100, 4, 4, generator=torch.Generator().manual_seed(4))
    lif = GanglionSpiking(seed=5, noise_sigma=0.3, refr_sigma=refr_sigma)
    assert lif.block_steps(current[:, :, 0]) == 7
    whole = lif(current)
    assert whole.sum() > 20
    for chunk in (1, 5, 33):
        lif.reset()
        streamed = torch.cat([lif(part) for part in torch.split(current, chunk, dim=2)], dim=2)
        assert torch.equal(streamed, whole), chunk


def test_noise_is_a_function_of_seed_and_step_only():
    frame = torch.zeros(1, 1, 3, 3)
    a, b = GanglionSpiking(seed=9), GanglionSpiking(seed=9)
    late = a.noise(1000, 5, frame)
    b.noise(0, 50, frame)  # drawing other steps first changes nothing
    assert torch.equal(b.noise(1000, 5, frame), late)
    assert not torch.equal(GanglionSpiking(seed=10).noise(1000, 5, frame), late)
    draws = a.noise(0, 20000, frame)[:, 0]  # standard normal draws
    assert abs(float(draws.mean())) < 0.01 and abs(float(draws.std()) - 1.0) < 0.01


def test_random_refractory_periods_take_a_second_draw():
    frame = torch.zeros(1, 1, 2, 2)
    assert GanglionSpiking(refr_sigma=0.0).noise(0, 3, frame).shape == (3, 1, 1, 1, 2, 2)
    assert GanglionSpiking(refr_sigma=0.001).noise(0, 3, frame).shape == (3, 2, 1, 1, 2, 2)


def test_a_noiseless_lif_draws_nothing_and_does_not_depend_on_the_seed():
    frame = torch.zeros(1, 1, 2, 2)
    assert GanglionSpiking(noise_sigma=0.0).noise_streams() == ()
    assert GanglionSpiking(noise_sigma=0.0, refr_sigma=0.001).noise_streams() == ("refractory",)
    assert GanglionSpiking(refr_sigma=0.001).noise(0, 3, frame).shape == (3, 2, 1, 1, 2, 2)
    current = torch.full((1, 1, 300, 3, 3), 80.0)
    a = GanglionSpiking(seed=1, noise_sigma=0.0)(current)
    b = GanglionSpiking(seed=2, noise_sigma=0.0)(current)
    # only the seeded initial potentials differ: after the first spikes the trains coincide
    assert a.sum() > 10 and torch.equal(a[:, :, 100:], b[:, :, 100:])
