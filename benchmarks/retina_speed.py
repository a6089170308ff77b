"""Benchmark of the retina simulator (issue: retina models): frames per second with spikes.

The full ``human.parvo`` retina (OPL, bipolar gain control, ON and OFF ganglion input and
spiking) on a 100×100 px white-noise movie at 1 ms steps, streamed with ``Retina.run`` in
chunks, against a straightforward per-frame implementation of the same stages written here
(every frame through every stage in turn, Gaussian blurs as replicate-padded ``conv2d``, the
spiking noise taken from the stages' own ``noise`` draws). Before timing it checks that the
two agree: ganglion input currents to float rounding, and the spike trains (a spike can flip
only where rounding moves a membrane across threshold).

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)`` and whether
the streamed retina reaches the target (≥ 1,000 frames/s, faster than real time at 1 ms).
Run: ``python benchmarks/retina_speed.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import torch
import torch.nn.functional as F

from topo_models.retina import Retina
from topo_models.retina.filters import gaussian_kernel_1d
from topo_models.retina.stages import ganglion_nonlinearity


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="frame height and width (px)")
    parser.add_argument("--frames", type=int, default=2000, help="frames timed (streamed)")
    parser.add_argument("--baseline-frames", type=int, default=200, help="frames timed (baseline)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--target", type=float, default=1000.0, help="frames/s to reach")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


class PerFrameRetina:
    """The retina's equations, one frame at a time, written plainly (the baseline).

    State is a dict of (1, 1, H, W) frames; each call advances every stage by one step.
    """

    def __init__(self, retina: Retina) -> None:
        self.retina = retina
        res = retina.resolution
        self.dt = res.dt
        self.values = {k: float(v) for k, v in retina.parameters_dict().items()}
        self.kernels = {
            name: self._kernel2d(self.values[name] * res.pixels_per_degree, res.filter_epsilon)
            for name in (
                "opl.sigma_center",
                "opl.sigma_surround",
                "bipolar.sigma_adaptation",
                "on.sigma_pool",
                "off.sigma_pool",
            )
        }
        self.state: dict[str, torch.Tensor] = {}
        self.step = 0

    @staticmethod
    def _kernel2d(sigma_px: float, epsilon: float) -> torch.Tensor:
        k = gaussian_kernel_1d(torch.tensor(sigma_px), epsilon)
        return (k[:, None] * k[None, :])[None, None]

    def _blur(self, frame: torch.Tensor, name: str) -> torch.Tensor:
        kernel = self.kernels[name]
        r = kernel.shape[-1] // 2
        if r == 0:
            return frame
        return F.conv2d(F.pad(frame, (r, r, r, r), mode="replicate"), kernel)

    def _lowpass(self, key: str, x: torch.Tensor, tau: float) -> torch.Tensor:
        e = math.exp(-self.dt / tau)
        y = e * self.state.get(key, torch.zeros_like(x)) + (1.0 - e) * x
        self.state[key] = y
        return y

    def __call__(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
        v, dt, zero = self.values, self.dt, torch.zeros_like(frame)
        center = self._lowpass("center", self._blur(frame, "opl.sigma_center"), v["opl.tau_center"])
        delayed = self.state.get("undershoot", zero)  # low-pass of the centre, one step late
        self._lowpass("undershoot", center, v["opl.undershoot_tau"])
        center = center - v["opl.undershoot_weight"] * delayed
        surround = self._lowpass(
            "surround", self._blur(center, "opl.sigma_surround"), v["opl.tau_surround"]
        )
        gain = v["opl.lambda_opl"] / self.retina.resolution.input_luminance_range
        i_opl = gain * (center - v["opl.relative_weight"] * surround)
        g = v["bipolar.g_leak"] + self.state.get("g_a", zero)
        target = v["bipolar.input_amp"] * i_opl / g
        v_bip = target + (self.state.get("v_bip", zero) - target) * torch.exp(-dt * g)
        self.state["v_bip"] = v_bip
        e_a = math.exp(-dt / v["bipolar.tau_adaptation"])
        q = e_a * self.state.get("q", zero) + (1.0 - e_a) * v["bipolar.lambda_amp"] * v_bip**2
        self.state["q"] = q
        self.state["g_a"] = self._blur(q, "bipolar.sigma_adaptation")
        out = {}
        for name, sign in (("on", 1.0), ("off", -1.0)):
            lp = self.state.get(f"{name}_lp", zero)
            x = sign * (v_bip - v[f"{name}.transient_weight"] * lp)
            self._lowpass(f"{name}_lp", v_bip, v[f"{name}.transient_tau"])
            current = ganglion_nonlinearity(
                x,
                torch.tensor(v[f"{name}.i_0"]),
                torch.tensor(v[f"{name}.v_0"]),
                torch.tensor(v[f"{name}.lambda_g"]),
            )
            current = self._blur(current, f"{name}.sigma_pool")
            out[name] = current
            if self.retina.spikes:
                out[name] = self._spike(name, current)
        self.step += 1
        return out

    def _spike(self, name: str, current: torch.Tensor) -> torch.Tensor:
        stage = getattr(self.retina, f"{name}_spikes")
        v, res = self.values, self.retina.resolution
        g_l = v[f"{name}_spikes.g_leak"]
        e = math.exp(-g_l * self.dt)
        if f"{name}_v" not in self.state:
            stage._start(current)  # the same seeded initial potentials
            self.state[f"{name}_v"] = stage.v.clone()
            self.state[f"{name}_refr"] = stage.refractory_steps.clone()
        streams = stage.noise_streams()
        noise = torch.zeros_like(current)
        if "membrane" in streams:
            noise = stage.noise(self.step, 1, current)[0, streams.index("membrane")]
        scale = v[f"{name}_spikes.noise_sigma"] * math.sqrt((1.0 - e * e) / 2.0)
        membrane = self.state[f"{name}_v"] * e + torch.add(
            current * ((1.0 - e) / g_l), noise, alpha=scale
        )
        refr = (self.state[f"{name}_refr"] - 1.0).clamp(min=0.0)
        membrane = torch.where(refr >= 0.5, 0.0, membrane)
        spike = membrane > 1.0
        refr = torch.where(spike, res.sec_to_steps(v[f"{name}_spikes.refr_mu"]), refr)
        self.state[f"{name}_v"] = torch.where(spike, 0.0, membrane)
        self.state[f"{name}_refr"] = refr
        return spike.to(current.dtype)


def per_frame_run(retina: Retina, video: torch.Tensor) -> dict[str, torch.Tensor]:
    baseline = PerFrameRetina(retina)
    frames = [baseline(video[:, :, t]) for t in range(video.shape[2])]
    return {key: torch.stack([f[key] for f in frames], dim=2) for key in ("on", "off")}


VARIANTS = {  # name: (preset, overrides)
    "human.parvo": ("human.parvo", {}),
    "human.parvo + gain control (λ_A = 100 Hz)": ("human.parvo", {"bipolar_lambda_amp": 100.0}),
    "human.magno": ("human.magno", {}),
}


def build(variant: str, spikes: bool, seed: int) -> Retina:
    preset, overrides = VARIANTS[variant]
    return Retina.from_preset(preset, spikes=spikes, seed=seed, **overrides)


def check_agreement(video: torch.Tensor, variant: str, seed: int) -> None:
    """Currents agree to rounding; spike trains agree (reports the fraction of equal bins)."""
    with torch.no_grad():
        currents = build(variant, False, seed).run(video, chunk=50)
        plain = per_frame_run(build(variant, False, seed), video)
        for name in ("ON", "OFF"):
            ours, theirs = currents[f"ganglion_input_{name}"], plain[name.lower()]
            error = float(((ours - theirs).abs() / (theirs.abs() + 1.0)).max())
            assert error < 1e-4, (name, error)
            print(f"agreement ganglion_input_{name}: max relative difference {error:.1e}")
        spikes = build(variant, True, seed).run(video, chunk=50)
        plain = per_frame_run(build(variant, True, seed), video)
        for name in ("ON", "OFF"):
            ours, theirs = spikes[f"ganglion_spikes_{name}"], plain[name.lower()]
            equal = float((ours == theirs).double().mean())
            print(
                f"agreement ganglion_spikes_{name}: {int(ours.sum())} vs {int(theirs.sum())} "
                f"spikes, {equal:.6f} of bins equal"
            )
            assert equal > 0.999


def streamed_run(retina: Retina, video: torch.Tensor, chunk: int) -> None:
    """The movie from a fresh start, streamed ``chunk`` frames at a time."""
    retina.reset()
    retina.run(video, chunk=chunk)


def frames_per_second(run, frames: int, repeats: int = 3) -> float:
    """Frames per second of the fastest of ``repeats`` calls of ``run`` (without autograd)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            run()
        best = min(best, time.perf_counter() - start)
    return frames / best


def main() -> None:
    args = parse_args()
    gen = torch.Generator().manual_seed(args.seed)
    video = torch.rand(1, 1, args.frames, args.size, args.size, generator=gen)
    verdicts = []
    for variant in VARIANTS:
        print(f"== {variant}")
        torch.set_num_threads(1)
        check_agreement(video[:, :, :300, :40, :40], variant, args.seed)
        retina = build(variant, True, args.seed)
        best = 0.0
        for threads in args.threads:
            torch.set_num_threads(threads)
            short = video[:, :, : args.baseline_frames]

            base = frames_per_second(
                functools.partial(per_frame_run, retina, short), args.baseline_frames, repeats=1
            )
            print(f"per-frame baseline, {threads} thread(s): {base:.0f} frames/s")
            for chunk in args.chunks:
                fps = frames_per_second(
                    functools.partial(streamed_run, retina, video, chunk), args.frames
                )
                best = max(best, fps)
                print(
                    f"Retina.run chunk={chunk}, {threads} thread(s): {fps:.0f} frames/s "
                    f"(ratio {fps / base:.2f} vs per-frame baseline)"
                )
        verdict = "meets" if best >= args.target else "misses"
        verdicts.append(f"{variant}: best {best:.0f} frames/s, {verdict}")
    print(f"target ≥ {args.target:.0f} frames/s at {args.size}×{args.size} px with spikes:")
    for line in verdicts:
        print(f"  {line}")


if __name__ == "__main__":
    main()
