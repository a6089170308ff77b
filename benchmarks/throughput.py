"""Training throughput of the TDANN step against the same step without the spatial loss (issue 20).

The TDANN step is topo's real objective, ``SimCLRObjective`` at α = 0.25 on every layer with one
neighbourhood per layer and step (k = 1, TDANN's setting), on retinotopic fuzzy positions; the
baseline is the same step without the spatial term at all (SimCLR's NT-Xent on the same two
views: what an α = 0 network would cost if it did not log its spatial losses). Both steps are
those of ``Trainer.train_step``: zero_grad, forward under autocast (AMP), scaled backward,
gradient clipping at 5, SGD step. They alternate in ABBA order, so that drifting load on a
shared machine hits both; images/s is the batch (images, not views) over the median step.

CPU: float32, the allocator tuned as ``topo_train`` tunes it. CUDA: AMP (float16 autocast and
gradient scaling) unless ``--no-amp``; ``--channels-last`` puts the model and views in channels-last
memory; ``--compile`` measures ``torch.compile``'d models as well as the eager ones, so that the
flag is kept only where it measurably helps. Prints one line per variant and the ratio.

Run: ``python benchmarks/throughput.py`` (CPU: 32 images at 64 px, about 2 minutes on 2 cores);
on a GPU: ``python benchmarks/throughput.py --size 224 --batch 128 --channels-last --compile``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from spatial_loss import IMAGES  # the batch the spatial-loss share is measured at
from torch import nn

from topo_models import create_model
from topo_models.losses import nt_xent_loss
from topo_models.positions import RetinotopicLayout
from topo_train.objectives import SimCLRObjective
from topo_train.runtime import tune_cpu_allocator

ALPHA, TEMPERATURE, CLIP = 0.25, 0.1, 5.0


def plain_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """SimCLR without the spatial term: the α = 0 step that computes no spatial loss."""
    views, _ = batch
    output, _ = model(torch.cat([views[:, 0], views[:, 1]]))
    return nt_xent_loss(output[: len(views)], output[len(views) :], TEMPERATURE)


def make_step(
    model: nn.Module,
    loss_of: Callable[[nn.Module, tuple], torch.Tensor],
    batch: tuple[torch.Tensor, torch.Tensor],
    amp: bool,
) -> Callable[[], None]:
    """One optimiser step as ``Trainer.train_step`` takes it, on a fixed batch."""
    device = batch[0].device
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-6)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = loss_of(model, batch)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        scaler.step(optimizer)
        scaler.update()

    return step


def timed(step: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one step, the GPU's queue drained before and after.
    On a shared machine the CPU time is the steadier one: waiting for a core adds wall time."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def compare(
    steps: dict[str, Callable[[], None]], device: torch.device, rounds: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time of each variant's step, the variants alternating (ABBA)."""
    names = list(steps)
    for name in names:  # warm-up: allocator, cuDNN autotuning, compilation
        for _ in range(warmup):
            timed(steps[name], device)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            times[name].append(timed(steps[name], device))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--size", type=int, default=64, help="image side in px")
    parser.add_argument("--batch", type=int, default=IMAGES, help="images per step (2 views each)")
    parser.add_argument("--rounds", type=int, default=20, help="ABBA rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="float32 on CUDA")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    amp = args.amp and device.type == "cuda"  # as topo_train: AMP only on CUDA
    torch.manual_seed(0)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        print(f"allocator tuned as in topo_train: {tune_cpu_allocator()}")
    else:
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(device)}")
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    # (channels-last: the model's weights are; the first convolution hands on that layout)
    views = torch.randn(args.batch, 2, 3, args.size, args.size, device=device)
    batch = (views, torch.zeros(args.batch, dtype=torch.long, device=device))
    trunk = create_model("resnet18_spatial", head="projector")
    positions = RetinotopicLayout(jitter_mm=0.3, seed=0).build(trunk, args.size)
    objective = SimCLRObjective(positions, TEMPERATURE, ALPHA, neighborhoods_per_step=1).to(device)

    def tdann_loss(model: nn.Module, step_batch: tuple) -> torch.Tensor:
        return objective(model, step_batch)[0]

    def model_copy(compiled: bool) -> nn.Module:
        model = create_model("resnet18_spatial", head="projector")
        model.load_state_dict(trunk.state_dict())
        model = model.to(device, memory_format=memory).train()
        return torch.compile(model) if compiled else model

    steps: dict[str, Callable[[], None]] = {}
    for compiled in (False, True) if args.compile else (False,):
        suffix = ", compiled" if compiled else ""
        steps[f"no spatial loss{suffix}"] = make_step(model_copy(compiled), plain_loss, batch, amp)
        steps[f"TDANN, k = 1{suffix}"] = make_step(model_copy(compiled), tdann_loss, batch, amp)
    medians = compare(steps, device, args.rounds, args.warmup)
    setting = (
        f"{args.batch} images (x2 views) at {args.size} px on {device.type}"
        f"{', AMP' if amp else ''}{', channels-last' if args.channels_last else ''}"
        f"{f', {torch.get_num_threads()} threads' if device.type == 'cpu' else ''}"
    )
    print(f"{setting}; {args.rounds} ABBA rounds, median step")
    base, base_cpu = medians["no spatial loss"]
    for name, (seconds, cpu) in medians.items():
        cpu_part = (
            f", {cpu * 1000:.0f} ms CPU: ratio {base_cpu / cpu:.3f}" if device.type == "cpu" else ""
        )
        print(
            f"{name}: {args.batch / seconds:.1f} images/s ({seconds * 1000:.1f} ms per step; "
            f"ratio {base / seconds:.3f} vs no spatial loss, eager{cpu_part})"
        )
    for suffix in ("", ", compiled") if args.compile else ("",):
        plain, tdann = medians[f"no spatial loss{suffix}"], medians[f"TDANN, k = 1{suffix}"]
        cpu_part = f"; CPU time {plain[1] / tdann[1]:.3f}" if device.type == "cpu" else ""
        print(
            f"TDANN / no spatial loss{suffix}: {plain[0] / tdann[0]:.3f} of the throughput "
            f"(target >= 0.95){cpu_part}"
        )


if __name__ == "__main__":
    main()
