"""Benchmark of the spatial costs of spatial networks (issues: spatial networks, 15).

Times one training step of the default SpatialMLP (widths 128-128-128-256, input 1×28×28,
2 tasks × 10 labels, batch 256, the experiment's Adam with lr 5e-3, the published example's
settings) with and without both costs on every spatial layer (proximity 3, transport 1, norm
l1: the published example), steps alternating in ABBA order after a warm-up. Both steps of a
pair use the same optimiser: the fused Adam ``experiment=spatial_multitask`` uses (``--adam``
picks torch's for-loop or foreach implementation instead).

The line that counts is the run's step: ``Trainer.train_step`` of ``experiment=spatial_multitask``
(its loss, optimiser, schedule and loop settings, composed from ``conf/``; the costs are
``SpatialCosts``: the fused torch kernels of ``losses/spatial_cost_kernels.py`` in the autograd
graph), against the same step of the α = β = 0 objective of a control run. For scale it also
times the costs as plain autograd (one ``proximity_cost`` / ``transport_cost`` per layer), and
checks first that both agree (values and gradients).

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)`` — the ratio is
the median over ABBA quartets of their time ratio (the VM's speed drifts between seconds, which
a ratio of adjacent steps cancels), the ratio of the two medians beside it — and whether the
run's costs stay within the budget (ratio ≤ 2.0, issue 15).
Run: ``python benchmarks/spatial_costs.py`` (about half a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from topo_models.losses import SpatialCosts, proximity_cost, transport_cost
from topo_models.spatial import IGNORE_INDEX, SpatialMLP, multitask_cross_entropy
from topo_train.optimisers import parameter_groups
from topo_train.runtime import DistributedContext, tune_cpu_allocator
from topo_train.tracking import NullTracker
from topo_train.trainer import Trainer

CONF = Path(__file__).resolve().parents[1] / "conf"

Costs = Callable[[SpatialMLP], torch.Tensor]
Step = Callable[[], float]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--widths", type=int, nargs="+", default=[128, 128, 128, 256])
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--labels", type=int, default=10)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--proximity", type=float, default=3.0)
    parser.add_argument("--transport", type=float, default=1.0)
    parser.add_argument("--norm", choices=("l1", "l2"), default="l1")
    parser.add_argument("--warmup", type=int, default=30, help="steps of each kind first")
    parser.add_argument("--rounds", type=int, default=400, help="ABBA rounds (2 steps each)")
    parser.add_argument("--budget", type=float, default=2.0, help="allowed step-time ratio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--adam",
        choices=("for-loop", "foreach", "fused"),
        default="fused",
        help="torch.optim.Adam implementation (experiment=spatial_multitask: fused)",
    )
    return parser.parse_args()


def plain_costs(args: argparse.Namespace) -> Costs:
    """The same total as ``SpatialCosts``, one autograd graph per layer (the baseline)."""

    def costs(model: SpatialMLP) -> torch.Tensor:
        layers = model.spatial_layers()
        proximity = torch.stack([proximity_cost(layer.positions) for layer in layers.values()])
        transport = torch.stack(
            [
                transport_cost(
                    layer.positions,
                    layers[model.predecessor(name)].positions,
                    layer.weight,
                    args.norm,
                )
                for name, layer in layers.items()
                if model.predecessor(name) is not None
            ]
        )
        return args.proximity * proximity.mean() + args.transport * transport.mean()

    return costs


def optimiser(args: argparse.Namespace, model: SpatialMLP) -> torch.optim.Optimizer:
    """The experiment's optimiser (``conf/``: Adam, lr 5e-3) in the ``--adam`` implementation."""
    implementation = {
        "for-loop": {"fused": None, "foreach": False},
        "foreach": {"fused": None, "foreach": True},
        "fused": {"fused": True},
    }
    build = instantiate(experiment_config().optim, **implementation[args.adam])
    return build(parameter_groups(model, True))


def batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and sequential-style targets: one task per sample, -100 for the others."""
    images = torch.rand(args.batch, 1, 28, 28)
    targets = torch.full((args.batch, args.tasks), IGNORE_INDEX)
    tasks = torch.randint(0, args.tasks, (args.batch,))
    targets[torch.arange(args.batch), tasks] = torch.randint(0, args.labels, (args.batch,))
    return images, targets


def abba(args: argparse.Namespace, plain: Step, extra: Step) -> tuple[list[float], list[float]]:
    """Wall times (s) of ``plain`` and ``extra`` steps, interleaved A B B A after a warm-up."""
    for _ in range(args.warmup):
        plain(), extra()
    without, with_costs = [], []
    for round_index in range(args.rounds):
        if round_index % 2 == 0:
            without.append(plain())
            with_costs.append(extra())
        else:
            with_costs.append(extra())
            without.append(plain())
    return without, with_costs


def timed(step: Callable[[], None]) -> Step:
    def run() -> float:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start

    return run


def compare(args: argparse.Namespace, costs: Costs) -> tuple[list[float], list[float]]:
    """Steps of cross entropy alone and of cross entropy + ``costs``, one model and one
    optimiser for both."""
    torch.manual_seed(args.seed)
    model = SpatialMLP(n_tasks=args.tasks, labels=args.labels, widths=args.widths)
    optimizer = optimiser(args, model)
    images, targets = batch(args)

    def step(with_costs: bool) -> None:
        logits, _ = model(images)
        loss = multitask_cross_entropy(logits, targets)
        if with_costs:
            loss = loss + costs(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return abba(args, timed(lambda: step(False)), timed(lambda: step(True)))


@cache
def experiment_config() -> DictConfig:
    """``conf/train.yaml`` composed with ``experiment=spatial_multitask``, as a run sees it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=["experiment=spatial_multitask"])


def compare_run(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """``Trainer.train_step`` of the experiment (its loss, optimiser, schedule and loop
    settings) with the costs' objective and with the α = β = 0 objective of a control run:
    one model, one optimiser and schedule for both; the metrics summed as the loop does."""
    cfg = experiment_config()
    torch.manual_seed(args.seed)
    model = SpatialMLP(n_tasks=args.tasks, labels=args.labels, widths=args.widths)
    optimizer = optimiser(args, model)
    scheduler = instantiate(cfg.sched)(optimizer)
    settings = instantiate(cfg.trainer, progress=False)
    images, targets = batch(args)
    run_dir = Path(tempfile.mkdtemp(prefix="spatial_costs_bench_"))

    def trainer(**loss: float) -> Callable[[], None]:
        objective = instantiate(cfg.loss, **loss)
        loop = Trainer(
            settings, model, objective, None, optimizer, scheduler, NullTracker(), run_dir,
            torch.device("cpu"), DistributedContext(), checkpoint_extra=dict,
        )  # fmt: skip

        def step() -> None:
            for key, value in loop.train_step((images, targets)).items():
                loop.window[key] += float(value)

        return step

    spatial = trainer(proximity=args.proximity, transport=args.transport, norm=args.norm)
    control = trainer(proximity=0.0, transport=0.0)
    return abba(args, timed(control), timed(spatial))


def report(label: str, base: list[float], extra: list[float]) -> float:
    """Prints the medians and returns the ratio: the median over ABBA quartets (two rounds)
    of their with/without time ratio, which the VM's drift between seconds cancels out of."""
    quartets = [
        (extra[i] + extra[i + 1]) / (base[i] + base[i + 1]) for i in range(0, len(base) - 1, 2)
    ]
    ratio = statistics.median(quartets)
    print(
        f"step with {label}: {statistics.median(extra) * 1000:.3f} ms median (ratio "
        f"{ratio:.3f} vs the same step without costs, {statistics.median(base) * 1000:.3f} "
        f"ms median; ratio of the medians {statistics.median(extra) / statistics.median(base):.3f})"
    )
    return ratio


def main() -> None:
    args = parse_args()
    print(f"allocator tuned as in topo_train: {tune_cpu_allocator()}")
    print(f"torch threads: {torch.get_num_threads()}")
    torch.manual_seed(args.seed)
    model = SpatialMLP(n_tasks=args.tasks, labels=args.labels, widths=args.widths)
    costs, _ = SpatialCosts(args.proximity, args.transport, norm=args.norm)(model)
    costs.backward()
    fused_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    plain_total = plain_costs(args)(model)
    plain_total.backward()
    plain_grads = [p.grad for p in model.parameters() if p.grad is not None]
    torch.testing.assert_close(costs, plain_total, rtol=1e-5, atol=0)
    for fused_grad, plain_grad in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-4, atol=1e-6)
    print(
        f"costs at initialisation: plain autograd {plain_total.item():.6f}, SpatialCosts "
        f"{costs.item():.6f} (gradients agree)"
    )
    print(f"Adam implementation (both steps): {args.adam}")
    report("plain autograd costs (both)", *compare(args, plain_costs(args)))
    ratio = report(
        "the run's costs (Trainer.train_step: MultiTaskObjective, SpatialCosts)",
        *compare_run(args),
    )
    print(
        f"the run's costs within budget (ratio <= {args.budget:.2f}): {ratio <= args.budget} "
        f"(batch {args.batch}, widths {'-'.join(map(str, args.widths))}, "
        f"{args.rounds} ABBA rounds per line)"
    )


if __name__ == "__main__":
    main()
