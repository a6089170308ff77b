"""LN models and spike-triggered estimators: causality, streaming, and recovery of planted cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_models.errors import TopoError
from topo_models.retina.estimators import spike_triggered_average, spike_triggered_covariance
from topo_models.retina.ln import LN, LinearFilter3d, LNCascade, SeparableLN


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _planted_kernel(kt: int, kh: int, kw: int) -> torch.Tensor:
    """A biphasic centre–surround receptive field (kt, kh, kw), unit norm."""
    t = torch.arange(kt, dtype=torch.float32)
    temporal = torch.sin(torch.pi * (t + 1) / kt) * torch.exp(-t / 2) - 0.3 * torch.exp(-t)
    y = torch.arange(kh, dtype=torch.float32) - (kh - 1) / 2
    x = torch.arange(kw, dtype=torch.float32) - (kw - 1) / 2
    r2 = y[:, None] ** 2 + x[None, :] ** 2 + 0.3 * x[None, :]
    spatial = torch.exp(-r2 / 1.0) - 0.4 * torch.exp(-r2 / 4.0)
    kernel = temporal[:, None, None] * spatial
    return kernel / kernel.norm()


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


def _poisson_loss(rate: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    return (rate - spikes * torch.log(rate + 1e-8)).mean()


def test_causal_filter_impulse_response_equals_its_kernel():
    kt, kh, kw = 4, 3, 2
    f = LinearFilter3d((kt, kh, kw))
    kernel = torch.randn(kt, kh, kw)
    with torch.no_grad():
        f.weight.copy_(kernel[None, None])
    t0, length = 3, 10
    impulses = torch.zeros(kh * kw, 1, length, kh, kw)  # one impulse per window pixel
    impulses.view(kh * kw, length, kh * kw)[torch.arange(kh * kw), t0, torch.arange(kh * kw)] = 1
    out = f(impulses)[:, 0, :, 0, 0]  # (pixel, time)
    assert out.shape == (kh * kw, length)
    torch.testing.assert_close(out[:, t0 : t0 + kt].T.reshape(kt, kh, kw), kernel)
    assert torch.all(out[:, :t0] == 0) and torch.all(out[:, t0 + kt :] == 0)  # causal, finite


def test_same_padding_keeps_the_frame_and_centres_the_response_on_the_impulse():
    f = LinearFilter3d((2, 3, 3), spatial_padding="same", init="ones")
    video = torch.zeros(1, 1, 4, 7, 7)
    video[0, 0, 1, 3, 3] = 1.0
    out = f(video)[0, 0]
    assert out.shape == (4, 7, 7)
    expected = torch.zeros(7, 7)
    expected[2:5, 2:5] = 1 / 18
    torch.testing.assert_close(out[1], expected)
    torch.testing.assert_close(out[2], expected)
    assert torch.all(out[0] == 0) and torch.all(out[3] == 0)


def _models() -> dict[str, torch.nn.Module]:
    return {
        "filter": LinearFilter3d((5, 3, 3), in_channels=2, out_channels=3),
        "filter_same_first": LinearFilter3d(
            (4, 3, 2), spatial_padding="same", time_padding="first_frame"
        ),
        "ln": LN((6, 3, 3), "exp", in_channels=2),
        "ln_relu_same": LN((3, 2, 2), "relu", init="ones", spatial_padding="same", in_channels=2),
        "separable": SeparableLN((5, 3, 3), "sigmoid", in_channels=2, out_channels=2),
        "cascade": LNCascade(((4, 3, 3), (3, 2, 2)), in_channels=2, hidden_channels=3),
        "cascade_first": LNCascade(
            ((3, 3, 3), (5, 3, 3)),
            ("relu", "softplus"),
            time_padding="first_frame",
            spatial_padding="same",
            in_channels=2,
        ),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_chunked_run_equals_the_unchunked_output(name):
    model = _models()[name]
    channels = 1 if name == "filter_same_first" else 2
    video = torch.rand(2, channels, 30, 6, 7, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        model.reset()
        whole = model.run(video, chunk=30)
        outputs = []
        for chunk in (7, 1):
            model.reset()
            outputs.append(model.run(video, chunk=chunk))
    for out in outputs:
        assert out.shape == whole.shape and out.shape[2] == 30
        torch.testing.assert_close(out, whole, atol=1e-6, rtol=0)


def test_first_frame_padding_has_no_onset_transient_on_a_constant_movie():
    f = LinearFilter3d((5, 1, 1), init="ones", time_padding="first_frame")
    out = f(torch.full((1, 1, 8, 2, 2), 0.5))
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_sta_recovers_a_planted_linear_filter_from_white_noise():
    lags, h, w = 6, 4, 4
    kernel = _planted_kernel(lags, h, w)
    planted = LinearFilter3d((lags, h, w))
    with torch.no_grad():
        planted.weight.copy_(kernel[None, None])
    stimulus = _noise((20000, h, w), seed=1)
    with torch.no_grad():
        drive = planted(stimulus[None, None])[0, 0, :, 0, 0]
    rates = torch.stack([torch.nn.functional.softplus(2 * drive - 1), torch.exp(drive - 1)], 1)
    spikes = torch.poisson(rates, generator=torch.Generator().manual_seed(2))
    sta = spike_triggered_average(stimulus, spikes, lags)
    assert sta.shape == (2, lags, h, w)
    assert _corr(sta[0], kernel) > 0.95 and _corr(sta[1], kernel) > 0.95
    single = spike_triggered_average(stimulus.numpy(), spikes[:, 0].numpy(), lags)
    assert single.shape == (lags, h, w)
    torch.testing.assert_close(single, sta[0])


def test_stc_of_a_planted_energy_model_has_its_top_eigenvector_in_the_filters_span():
    lags, h, w = 4, 3, 3
    d = lags * h * w
    q, _ = torch.linalg.qr(_noise((d, 2), seed=3).double())
    filters = q.T.float().reshape(2, lags, h, w)  # two orthonormal filters
    model = LinearFilter3d((lags, h, w), out_channels=2)
    with torch.no_grad():
        model.weight.copy_(filters[:, None])
    stimulus = _noise((30000, h, w), seed=4)
    with torch.no_grad():
        drive = model(stimulus[None, None])[0, :, :, 0, 0]  # (2, T)
    rate = 0.5 * (drive**2).sum(0)
    spikes = torch.poisson(rate, generator=torch.Generator().manual_seed(5))
    sta = spike_triggered_average(stimulus, spikes, lags)
    stc = spike_triggered_covariance(stimulus, spikes, lags)
    assert stc.shape == (d, d)
    torch.testing.assert_close(stc, stc.T)
    assert sta.norm() < 0.2  # a symmetric model has no STA; STC finds it
    values, vectors = torch.linalg.eigh(stc.double())
    span = filters.reshape(2, d).double()
    for top in (vectors[:, -1], vectors[:, -2]):
        assert float((span @ top).norm()) > 0.95
    assert values[-2] > 1.5 * values[-3]
    both = spike_triggered_covariance(stimulus, torch.stack([spikes, spikes], 1), lags)
    assert both.shape == (2, d, d)
    torch.testing.assert_close(both[1], stc)


def test_ln_fit_with_lbfgs_recovers_a_planted_filter_from_poisson_spikes():
    shape = (5, 5, 5)
    kernel = _planted_kernel(*shape)
    planted = LN(shape, "softplus")
    with torch.no_grad():
        planted.filter.weight.copy_(kernel[None, None])
        planted.nonlinearity.gain.fill_(2.0)
        planted.nonlinearity.offset.fill_(-0.5)
    video = _noise((1, 1, 4000, 5, 5), seed=6)
    with torch.no_grad():
        spikes = torch.poisson(planted(video), generator=torch.Generator().manual_seed(7))
    model = LN(shape, "softplus", seed=1)
    start = model.filter.weight.detach().clone()
    optimizer = torch.optim.LBFGS(
        model.parameters(), lr=1, max_iter=100, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        model.reset()
        loss = _poisson_loss(model(video), spikes)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = model.nonlinearity.gain.detach() * model.filter.weight.detach()[0, 0]
    assert _corr(fitted, kernel) > 0.9
    assert _corr(start[0, 0], kernel) < 0.5


@pytest.mark.parametrize(
    "model",
    [
        LN((4, 3, 3)),
        LN((4, 3, 3), "relu", init="ones"),
        SeparableLN((4, 3, 3), "exp"),
        SeparableLN((4, 3, 3), init="ones"),
        LNCascade(((3, 2, 2), (2, 2, 2))),
    ],
    ids=["ln", "ln_relu_ones", "separable", "separable_ones", "cascade"],
)
def test_training_from_the_default_init_changes_every_weight(model):
    video = torch.rand(1, 1, 50, 3, 3)
    target = torch.poisson(torch.full((1, 1, 50, 1, 1), 2.0))
    model.reset()
    loss = _poisson_loss(model(video), target)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and float(param.grad.abs().max()) > 0, name
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        model.reset()
        loss = _poisson_loss(model(video), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    for name, param in model.named_parameters():
        assert not torch.equal(param.detach(), before[name]), name
    assert losses[-1] < losses[0]


def test_a_zero_initialised_rectified_filter_would_get_no_gradient():
    # why the defaults are never zero (convis's zero init does not train)
    model = LN((3, 2, 2), "relu")
    with torch.no_grad():
        model.filter.weight.zero_()
    _poisson_loss(model(torch.rand(1, 1, 10, 2, 2)), torch.ones(1, 1, 10, 1, 1)).backward()
    assert float(model.filter.weight.grad.abs().max()) == 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: LN((3, 2, 2))(torch.zeros(1, 10, 2, 2)), "5-D video"),
        (lambda: LN((3, 2, 2))(torch.zeros(1, 2, 10, 2, 2)), "channels"),
        (lambda: LN((3, 4, 4))(torch.zeros(1, 1, 10, 2, 2)), "smaller than the kernel"),
        (lambda: LN((3, 2, 2))(torch.zeros(1, 1, 10, 2, 2, dtype=torch.long)), "floating"),
        (lambda: LN((3, 2, 2)).run(torch.zeros(1, 1, 10, 2, 2), chunk=0), "chunk"),
        (lambda: LN((3, 2)), "kernel shape"),
        (lambda: LN((3, 0, 2)), "kernel shape"),
        (lambda: LN((3, 2, 2), "tanh"), "nonlinearity"),
        (lambda: LN((3, 2, 2), init="zeros"), "init"),
        (lambda: LinearFilter3d((3, 2, 2), spatial_padding="reflect"), "spatial_padding"),
        (lambda: LNCascade(((3, 2, 2),)), "two stages"),
        (lambda: spike_triggered_average(torch.zeros(10, 2), torch.ones(10), 2), "movie"),
        (lambda: spike_triggered_average(torch.zeros(10, 2, 2), torch.ones(9), 2), "spikes"),
        (lambda: spike_triggered_average(torch.zeros(10, 2, 2), torch.ones(10), 11), "lags"),
        (lambda: spike_triggered_average(torch.zeros(10, 2, 2), torch.zeros(10), 2), "spike"),
        (lambda: spike_triggered_covariance(torch.zeros(10, 2, 2), -torch.ones(10), 2), ">= 0"),
    ],
)
def test_bad_inputs_raise_topo_error(call, match):
    with pytest.raises(TopoError, match=match):
        call()


def test_a_new_movie_size_without_reset_raises_topo_error():
    model = LN((3, 2, 2))
    model(torch.zeros(1, 1, 5, 2, 2))
    with pytest.raises(TopoError, match="reset"):
        model(torch.zeros(2, 1, 5, 2, 2))
    model.reset()
    assert model(torch.zeros(2, 1, 5, 2, 2)).shape == (2, 1, 5, 1, 1)


def test_stimulus_windows_use_numpy_default_rng_noise_too():
    rng = np.random.default_rng(0)
    stimulus = rng.standard_normal((500, 2, 2)).astype(np.float32)
    spikes = np.zeros(500)
    spikes[10::7] = 1
    sta = spike_triggered_average(stimulus, spikes, 3)
    idx = np.arange(10, 500, 7)
    centred = stimulus - stimulus.mean(0)
    expected = np.stack([centred[idx - lag].mean(0) for lag in range(3)])
    np.testing.assert_allclose(sta.numpy(), expected, atol=1e-5)
    assert sta.dtype == torch.float32


def test_whole_frame_kernels_take_the_conv1d_path_with_conv3d_numbers():
    import torch.nn.functional as F

    from topo_models.retina.linear_filters import causal_conv3d

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 2, 9, 4, 5, generator=gen, dtype=torch.float64)
    kernel = torch.randn(3, 2, 4, 4, 5, generator=gen, dtype=torch.float64)
    history = torch.randn(2, 2, 3, 4, 5, generator=gen, dtype=torch.float64)
    reference = F.conv3d(torch.cat([history, x], dim=2), kernel.flip(2))
    out = causal_conv3d(x, kernel, history, "valid")
    assert out.shape == (2, 3, 9, 1, 1)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
