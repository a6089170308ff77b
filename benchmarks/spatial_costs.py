"""Benchmark of the spatial costs of spatial networks (issue: spatial networks).

Times one training step of the default SpatialMLP (widths 128-128-128-256, input 1×28×28,
2 tasks × 10 labels, batch 256, Adam lr 5e-3, as reference/spatialnets.md §1.7/§1.13) with and
without both costs on every spatial layer (proximity 3, transport 1, norm l1: the published
example), steps alternating in ABBA order after a warm-up. A step is forward, multi-task cross
entropy (sequential-style targets: one task per sample), the costs, backward and the Adam step;
both steps of a pair use the same optimiser, by default torch's default Adam (the for-loop
implementation on CPU) as ``experiment=spatial_multitask`` uses it (``--adam`` picks another).

The line that counts is ``MultiTaskObjective.costs`` (``SpatialCosts``: both costs and their
gradient in one C call and one autograd node, ``losses/native_costs.py``), what a CPU run uses,
metrics included. For scale it also times the same costs written as plain autograd (one
``proximity_cost`` / ``transport_cost`` per layer), ``ProximityCost`` + ``TransportCost`` on
their per-cost C kernels and on the fused torch kernels (``TOPO_NATIVE_COSTS=0``), and the
floor of any implementation (the positions joining the Adam step), and checks that they agree.

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)`` and whether
the costs a run uses stay within the budget (ratio ≤ 1.10).
Run: ``python benchmarks/spatial_costs.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from topo_models.losses import ProximityCost, TransportCost, proximity_cost, transport_cost
from topo_models.losses.native_costs import native_library
from topo_models.spatial import IGNORE_INDEX, SpatialMLP, multitask_cross_entropy
from topo_train.multitask_objective import MultiTaskObjective
from topo_train.runtime import tune_cpu_allocator

Costs = Callable[[SpatialMLP], torch.Tensor]


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
    parser.add_argument("--rounds", type=int, default=200, help="ABBA rounds (2 steps each)")
    parser.add_argument("--budget", type=float, default=1.10, help="allowed step-time ratio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--adam",
        choices=("for-loop", "foreach", "fused"),
        default="for-loop",
        help="torch.optim.Adam implementation (experiment=spatial_multitask: torch's default, "
        "the for-loop on CPU)",
    )
    return parser.parse_args()


def plain_costs(args: argparse.Namespace) -> Costs:
    """The same total as the fused objects, one autograd graph per layer (the baseline)."""

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


def per_cost_objects(args: argparse.Namespace) -> Costs:
    """``ProximityCost`` + ``TransportCost``: each layer's value differentiable on its own."""
    proximity_loss, transport_loss = ProximityCost(), TransportCost(norm=args.norm)

    def costs(model: SpatialMLP) -> torch.Tensor:
        return args.proximity * proximity_loss(model)[0] + args.transport * transport_loss(model)[0]

    return costs


def run_costs(args: argparse.Namespace) -> Costs:
    """What a run computes: the objective's costs (one ``SpatialCosts`` call), with the
    metrics read as the trainer reads them (``float`` of each)."""
    objective = MultiTaskObjective(
        proximity=args.proximity, transport=args.transport, norm=args.norm
    )

    def costs(model: SpatialMLP) -> torch.Tensor:
        total, metrics = objective.costs(model)
        for value in metrics.values():
            float(value)
        return total

    return costs


def torch_kernel_costs(args: argparse.Namespace) -> Costs:
    """The loss objects with the compiled C kernels switched off (the fused torch kernels)."""
    objects = per_cost_objects(args)

    def costs(model: SpatialMLP) -> torch.Tensor:
        os.environ["TOPO_NATIVE_COSTS"] = "0"
        native_library.cache_clear()
        try:
            return objects(model)
        finally:
            os.environ.pop("TOPO_NATIVE_COSTS")
            native_library.cache_clear()

    return costs


def adam_floor(args: argparse.Namespace) -> Costs:
    """0 × Σ positions: the positions join the Adam step, which any implementation pays."""

    def costs(model: SpatialMLP) -> torch.Tensor:
        return 0.0 * sum(layer.positions.sum() for layer in model.spatial_layers().values())

    return costs


def compare(args: argparse.Namespace, costs: Costs) -> tuple[list[float], list[float]]:
    """Wall times (s) of steps without and with ``costs``, interleaved A B B A."""
    torch.manual_seed(args.seed)
    model = SpatialMLP(n_tasks=args.tasks, labels=args.labels, widths=args.widths)
    implementation = {"foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizer = torch.optim.Adam(
        model.parameters(), lr=args.lr, **implementation.get(args.adam, {"foreach": False})
    )
    images = torch.rand(args.batch, 1, 28, 28)
    targets = torch.full((args.batch, args.tasks), IGNORE_INDEX)
    tasks = torch.randint(0, args.tasks, (args.batch,))
    targets[torch.arange(args.batch), tasks] = torch.randint(0, args.labels, (args.batch,))

    def step(with_costs: bool) -> float:
        start = time.perf_counter()
        logits, _ = model(images)
        loss = multitask_cross_entropy(logits, targets)
        if with_costs:
            loss = loss + costs(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step(False), step(True)
    plain, with_costs = [], []
    for round_index in range(args.rounds):
        if round_index % 2 == 0:
            plain.append(step(False))
            with_costs.append(step(True))
        else:
            with_costs.append(step(True))
            plain.append(step(False))
    return plain, with_costs


def main() -> None:
    args = parse_args()
    print(f"allocator tuned as in topo_train: {tune_cpu_allocator()}")
    print(f"torch threads: {torch.get_num_threads()}")
    torch.manual_seed(args.seed)
    model = SpatialMLP(n_tasks=args.tasks, labels=args.labels, widths=args.widths)
    values = {
        "one SpatialCosts call": run_costs(args)(model).item(),
        "per-cost objects": per_cost_objects(args)(model).item(),
        "fused torch kernels": torch_kernel_costs(args)(model).item(),
    }
    plain = plain_costs(args)(model).item()
    for name, value in values.items():
        assert abs(value - plain) <= 1e-5 * abs(plain), (name, value, plain)
    print(f"costs at initialisation: plain autograd {plain:.6f}; {values}")
    print(f"Adam implementation (both steps): {args.adam}")

    variants = (
        ("plain autograd costs (both)", plain_costs(args)),
        ("positions in the Adam step only (floor)", adam_floor(args)),
        ("fused torch kernels, both costs (TOPO_NATIVE_COSTS=0)", torch_kernel_costs(args)),
        ("C kernels per cost (ProximityCost + TransportCost)", per_cost_objects(args)),
        ("the run's costs (MultiTaskObjective.costs: one C call)", run_costs(args)),
    )
    for label, costs in variants:
        base, extra = compare(args, costs)
        ratio = statistics.median(extra) / statistics.median(base)
        print(
            f"step with {label}: {statistics.median(extra) * 1000:.3f} ms median (ratio "
            f"{ratio:.3f} vs the same step without costs, {statistics.median(base) * 1000:.3f} "
            f"ms; cheapest steps ratio {min(extra) / min(base):.3f})"
        )
    print(
        f"the run's costs within budget (ratio <= {args.budget:.2f}): {ratio <= args.budget} "
        f"(batch {args.batch}, widths {'-'.join(map(str, args.widths))}, "
        f"{args.rounds} ABBA rounds per line)"
    )


if __name__ == "__main__":
    main()
