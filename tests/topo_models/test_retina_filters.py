"""Retina filters against their analytic responses in physical units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from topo_models.retina import Resolution
from topo_models.retina.filters import (
    exp_highpass,
    exp_lowpass,
    gaussian_blur,
    gaussian_kernel_1d,
)

# tiny per-step ops are dominated by thread hand-off on a shared 2-core CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _video(series: torch.Tensor) -> torch.Tensor:
    return series.view(1, 1, -1, 1, 1).to(torch.float64)


@pytest.mark.parametrize("steps_per_second", [1000.0, 2000.0])
def test_lowpass_step_response_is_the_analytic_exponential_in_seconds(steps_per_second):
    res = Resolution(steps_per_second=steps_per_second)
    tau = torch.tensor(0.01, dtype=torch.float64)
    n = int(0.05 * steps_per_second)
    y, _ = exp_lowpass(_video(torch.ones(n)), tau, res.dt)
    t_end = (np.arange(n) + 1) * res.dt  # each sample closes its step
    np.testing.assert_allclose(y.flatten().numpy(), 1 - np.exp(-t_end / 0.01), rtol=1e-12)


def test_lowpass_time_constant_in_seconds_survives_a_frame_rate_change():
    tau = torch.tensor(0.02, dtype=torch.float64)
    slow, _ = exp_lowpass(_video(torch.ones(100)), tau, Resolution(steps_per_second=1000).dt)
    fast, _ = exp_lowpass(_video(torch.ones(200)), tau, Resolution(steps_per_second=2000).dt)
    # same physical instants: step k at 1 kHz ends at the same time as step 2k+1 at 2 kHz
    np.testing.assert_allclose(slow.flatten().numpy(), fast.flatten()[1::2].numpy(), rtol=1e-12)


def test_lowpass_impulse_response_is_normalised_exponential():
    dt, tau = 0.001, 0.01
    x = torch.zeros(50)
    x[0] = 1.0
    y, _ = exp_lowpass(_video(x), torch.tensor(tau, dtype=torch.float64), dt)
    e = math.exp(-dt / tau)
    np.testing.assert_allclose(y.flatten().numpy(), (1 - e) * e ** np.arange(50), rtol=1e-12)


def test_highpass_impulse_response_is_delta_minus_delayed_exponential():
    dt, tau, w = 0.001, 0.02, 0.7
    x = torch.zeros(80)
    x[0] = 1.0
    y, _ = exp_highpass(_video(x), torch.tensor(tau, dtype=torch.float64), w, dt)
    e = math.exp(-dt / tau)
    expected = np.concatenate([[1.0], -w * (1 - e) * e ** np.arange(79)])
    np.testing.assert_allclose(y.flatten().numpy(), expected, rtol=1e-12, atol=1e-15)


def test_highpass_carries_previous_input_across_chunks():
    x = _video(torch.rand(60, generator=torch.Generator().manual_seed(1)))
    tau = torch.tensor(0.01, dtype=torch.float64)
    whole, _ = exp_highpass(x, tau, 0.8, 0.001)
    first, state = exp_highpass(x[:, :, :23], tau, 0.8, 0.001)
    second, _ = exp_highpass(x[:, :, 23:], tau, 0.8, 0.001, state)
    assert torch.equal(whole, torch.cat([first, second], dim=2))


def test_gaussian_kernel_sums_to_one_and_has_sigma_in_pixels():
    res = Resolution(pixels_per_degree=20.0)
    sigma_deg = 0.15
    sigma = torch.tensor(res.deg_to_px(sigma_deg), dtype=torch.float64)
    kernel = gaussian_kernel_1d(sigma, 1e-3)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
    centre = kernel.numel() // 2
    # log-ratio of neighbouring samples of exp(-x²/2σ²) is 1/(2σ²)
    sigma_px = math.sqrt(1.0 / (2.0 * math.log(kernel[centre] / kernel[centre + 1])))
    assert sigma_px == pytest.approx(sigma_deg * 20.0, rel=1e-9)
    # truncated where the Gaussian falls below epsilon of its peak
    assert kernel[0] / kernel[centre] >= 1e-3 > math.exp(-((centre + 1) ** 2) / (2 * 3.0**2))


def test_gaussian_blur_keeps_uniform_frames_with_replicate_padding():
    frame = torch.full((2, 1, 3, 5, 5), 0.3, dtype=torch.float64)
    out = gaussian_blur(frame, torch.tensor(4.0, dtype=torch.float64), 1e-3)
    torch.testing.assert_close(out, frame, rtol=0, atol=1e-14)


def _slice_reference(frame: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Replicate-padded separable convolution, written with numpy.pad."""
    r = len(kernel) // 2
    padded = np.pad(frame, r, mode="edge")
    rows = sum(kernel[k] * padded[k : k + frame.shape[0], :] for k in range(len(kernel)))
    return sum(kernel[k] * rows[:, k : k + frame.shape[1]] for k in range(len(kernel)))


@pytest.mark.parametrize("sigma", [0.7, 2.5])  # a sliced 5-tap and a 19-tap matrix blur
def test_blur_equals_replicate_padded_convolution(sigma):
    from topo_models.retina.filters import separable_blur

    kernel = gaussian_kernel_1d(torch.tensor(sigma, dtype=torch.float64), 1e-3)
    frames = torch.rand(
        2, 1, 3, 11, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    out = separable_blur(frames, kernel)
    for b in range(2):
        for t in range(3):
            expected = _slice_reference(frames[b, 0, t].numpy(), kernel.numpy())
            np.testing.assert_allclose(out[b, 0, t].numpy(), expected, rtol=0, atol=1e-13)


def test_blur_operator_rows_sum_to_one_and_pass_gradients_to_sigma():
    from topo_models.retina.filters import blur_operator

    sigma = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    matrix = blur_operator(gaussian_kernel_1d(sigma, 1e-3), 9)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(9, dtype=torch.float64))
    matrix[4, 4].backward()  # a wider Gaussian puts less weight on the centre
    assert sigma.grad is not None and float(sigma.grad) < 0


def test_matrix_blur_is_exactly_chunk_invariant_in_a_video():
    from topo_models.retina.filters import separable_blur

    kernel = gaussian_kernel_1d(torch.tensor(2.0), 1e-3)
    video = torch.rand(1, 2, 30, 23, 23, generator=torch.Generator().manual_seed(1))
    whole = separable_blur(video, kernel)
    parts = torch.cat([separable_blur(p, kernel) for p in torch.split(video, 7, dim=2)], dim=2)
    assert torch.equal(whole, parts)


def test_matrix_blur_rounds_alike_with_and_without_autograd():
    # run(warmup_frames=…) streams the warm-up without grad and the movie with it; both must take
    # the same kernels (torch.matmul folds the batch into one mm only when an operand needs grad)
    from topo_models.retina.filters import separable_blur

    sigma = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    video = torch.rand(
        1, 1, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        plain = separable_blur(video, gaussian_kernel_1d(sigma, 1e-3))
    tracked = separable_blur(video, gaussian_kernel_1d(sigma, 1e-3))
    assert tracked.requires_grad
    assert torch.equal(plain, tracked.detach())
