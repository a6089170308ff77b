"""The retina's spiking stage: seeded noisy leaky integrate-and-fire."""

from __future__ import annotations

import math

import numpy as np
import torch

from topo_models.retina.filters import initial_state
from topo_models.retina.parameters import PhysicalParameter, PhysicalStage
from topo_models.retina.resolution import Resolution


class GanglionSpiking(PhysicalStage):
    """Noisy leaky integrate-and-fire with refractoriness, one unit per pixel.

    ``dV = (I − g_L·V) dt + σ_V·sqrt(g_L)·dW``, stepped exactly (Ornstein–Uhlenbeck update with
    ``e = exp(−g_L·dt)``, so the stationary std ``σ_V/√2`` does not depend on the frame rate);
    threshold 1, reset 0, V clamped to 0 while refractory; refractory periods are drawn in
    seconds, ``N(refr_mu, refr_sigma)``, and converted to steps with the resolution. Not
    differentiable: the input is detached.

    Noise is a pure function of ``(seed, time step)``: the normal draws of each step and pixel
    (one for the membrane when σ_V > 0, one for the refractory period when ``refr_sigma > 0``;
    none is drawn that is not used, the draws being the costliest part of the stage) come in
    blocks of steps, each block from its own generator seeded by ``(seed, block index)``.
    A chunked run therefore draws the same numbers as an unchunked one, and a resumed run
    (``load_streaming_state``) the same as an uninterrupted one, while the draws of a whole
    chunk are made in a few calls instead of two per step. Initial state: ``V ~ 0.5 + 0.2·U[0,
    1)`` from the generator of ``(seed, 0)``, every unit refractory for ``refr_mu`` (as the
    original).
    """

    PARAMETERS = (
        PhysicalParameter("refr_mu", 0.003, "s", "mean refractory period", "nonnegative", False),
        PhysicalParameter("refr_sigma", 0.0, "s", "refractory period std", "nonnegative", False),
        PhysicalParameter("noise_sigma", 0.1, "V", "membrane noise σ_V", "nonnegative", False),
        PhysicalParameter("g_leak", 50.0, "Hz", "leak conductance g_L", "positive", False),
    )
    STATE = ("v", "refractory_steps", "step")
    COUNTERS = ("step",)
    # Normal numbers drawn per noise block (8 MiB in float32); a block spans
    # NOISE_BLOCK_NUMBERS // (draws per step · frame size) steps.
    NOISE_BLOCK_NUMBERS = 2**21

    def __init__(
        self,
        resolution: Resolution | None = None,
        *,
        seed: int = 0,
        refr_mu: float = 0.003,
        refr_sigma: float = 0.0,
        noise_sigma: float = 0.1,
        g_leak: float = 50.0,
    ) -> None:
        super().__init__(resolution, dict(locals()))
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        self.v: torch.Tensor | None = None
        self.refractory_steps: torch.Tensor | None = None
        self.step = 0  # time steps simulated since the start of the movie
        self._noise_block: tuple[int, torch.Tensor] | None = None

    def _generator(self, key: int, device: torch.device) -> torch.Generator:
        """The generator of stream ``key`` (0: initial V, b + 1: noise block b) of this seed."""
        words = np.random.SeedSequence([self.seed & (2**63 - 1), key]).generate_state(2)
        generator = torch.Generator(device=device)
        generator.manual_seed((int(words[0]) << 32 | int(words[1])) & (2**63 - 1))
        return generator

    def _start(self, frame: torch.Tensor) -> None:
        generator = self._generator(0, frame.device)
        uniform = torch.rand(
            frame.shape, generator=generator, device=frame.device, dtype=frame.dtype
        )
        self.v = 0.5 + 0.2 * uniform
        steps = self.resolution.sec_to_steps(float(self.refr_mu))
        self.refractory_steps = torch.full_like(frame, steps)

    def noise_streams(self) -> tuple[str, ...]:
        """What the normal draws of each pixel and step feed, in order: ``"membrane"`` when
        σ_V > 0, ``"refractory"`` when refr_sigma > 0 (none: a deterministic LIF)."""
        streams = ("membrane",) if float(self.noise_sigma) > 0.0 else ()
        return streams + (("refractory",) if float(self.refr_sigma) > 0.0 else ())

    def draws_per_step(self) -> int:
        """Normal draws per pixel and step (``len(noise_streams())``)."""
        return len(self.noise_streams())

    def block_steps(self, frame: torch.Tensor) -> int:
        """Time steps per noise block for frames like ``frame``."""
        return max(1, self.NOISE_BLOCK_NUMBERS // (max(1, self.draws_per_step()) * frame.numel()))

    def noise(self, start: int, steps: int, frame: torch.Tensor) -> torch.Tensor:
        """(steps, draws, *frame.shape) normal draws of steps ``start … start + steps − 1``,
        one per ``noise_streams()`` entry along dim 1."""
        per_block = self.block_steps(frame)
        pieces = []
        t = start
        while t < start + steps:
            block, offset = divmod(t, per_block)
            take = min(per_block - offset, start + steps - t)
            pieces.append(self._block(block, per_block, frame)[offset : offset + take])
            t += take
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def _block(self, index: int, per_block: int, frame: torch.Tensor) -> torch.Tensor:
        cached = self._noise_block
        shape = (per_block, self.draws_per_step(), *frame.shape)
        if cached is not None and cached[0] == index and cached[1].shape == shape:
            if cached[1].dtype == frame.dtype and cached[1].device == frame.device:
                return cached[1]
        generator = self._generator(index + 1, frame.device)
        block = torch.randn(shape, generator=generator, device=frame.device, dtype=frame.dtype)
        self._noise_block = (index, block)
        return block

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        """current: (batch, channels, time, height, width) in Hz → spikes as 0/1 of its dtype."""
        x = current.detach()
        steps = x.shape[2]
        if steps == 0:
            return x.clone()
        if self.v is None:
            self._start(x[:, :, 0])
        v = initial_state(self.v, x, "spiking.v").clone()
        refr = initial_state(self.refractory_steps, x, "spiking.refractory_steps").clone()
        g_l = float(self.g_leak)
        e = math.exp(-g_l * self.resolution.dt)
        noise_scale = float(self.noise_sigma) * math.sqrt((1.0 - e * e) / 2.0)
        refr_mu = self.resolution.sec_to_steps(float(self.refr_mu))
        refr_sigma = self.resolution.sec_to_steps(float(self.refr_sigma))
        streams = self.noise_streams()
        if streams:
            noise = self.noise(self.step, steps, x[:, :, 0]).movedim(0, 3)  # (draws, B, C, T, …)
        drive = x * ((1.0 - e) / g_l)
        if "membrane" in streams:
            drive = torch.add(drive, noise[streams.index("membrane")], alpha=noise_scale)
        if "refractory" in streams:
            draws = noise[streams.index("refractory")]
            refractory_draws = (refr_mu + refr_sigma * draws).clamp(min=0.0)
        else:  # every period is refr_mu: no draws, and a scalar in the loop
            refractory_draws = None
            fixed_period = torch.tensor(max(refr_mu, 0.0), dtype=x.dtype, device=x.device)
        spikes = torch.empty(x.shape, dtype=torch.bool, device=x.device)
        for t in range(steps):
            v.mul_(e).add_(drive[:, :, t])
            refr.sub_(1.0).clamp_(min=0.0)
            v.masked_fill_(refr >= 0.5, 0.0)
            spike = v > 1.0
            spikes[:, :, t] = spike
            period = fixed_period if refractory_draws is None else refractory_draws[:, :, t]
            refr = torch.where(spike, period, refr)
            v.masked_fill_(spike, 0.0)
        self.v, self.refractory_steps = v, refr
        self.step += steps
        return spikes.to(x.dtype)
