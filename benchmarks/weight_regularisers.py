"""Benchmark of a weight regulariser on a ResNet-18 trunk (issue 19's speed budget).

Share of a supervised training step (``resnet18_spatial`` with a 10-way classifier, batch of 32
images at 112 px, cross-entropy, SGD, CPU) taken by one regulariser's forward and backward on
every conv layer, against the same step without it; budget ≤ 10 %. ``--regulariser``:
``wiring_cost`` (ITN's, channels on unit sheets, ``unit_sheet_positions``; ``--variant``),
``channel_costs`` (SpatialNetworks' proximity and transport with learned channel positions,
which the optimiser then steps too; l1, as the regulariser benchmark) or ``topoloss``
(TopoLoss, factor 4, sheets 8 × 8 to 16 × 32; ``--interpolation``). ``--layers blocks``: each
block's last convolution only, the layers the regulariser benchmark covers. Steps with and
without the regulariser alternate in ABBA order after a warm-up; the regulariser alone (forward
and backward on the step's weights) is timed after each pair. The allocator is
set up as ``topo_train`` sets it up. ``--clock cpu`` times the CPU time of all threads instead
of the wall clock (less hit by the VM's neighbours).

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)``.
Run: ``python benchmarks/weight_regularisers.py --regulariser channel_costs`` (about a minute
on 2 cores; ``--rounds``, 8 by default, sets the ABBA rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from topo_models import create_model
from topo_models.losses import ChannelSpatialCosts, TopoLoss
from topo_models.losses.wiring_cost import VARIANTS, WiringCost, unit_sheet_positions
from topo_train.runtime import tune_cpu_allocator

IMAGES, SIZE, TOPOLOSS_FACTOR = 32, 112, 4
BUDGET = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="ABBA rounds (2 steps each)")
    parser.add_argument(
        "--regulariser", choices=("wiring_cost", "channel_costs", "topoloss"), default="wiring_cost"
    )
    parser.add_argument("--variant", choices=VARIANTS, default="jj", help="of the wiring cost")
    parser.add_argument(
        "--interpolation",
        choices=("bilinear", "nearest", "antialiased"),
        default="bilinear",
        help="of TopoLoss",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument(
        "--layers",
        choices=("all", "blocks"),
        default="all",
        help="every conv layer (20), or each block's conv2 (8, as the regulariser benchmark)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"allocator tuned as in topo_train: {tune_cpu_allocator()}")

    model = create_model("resnet18_spatial", head="classifier", num_classes=10)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if args.layers == "blocks":
        convs = [name for name in convs if name.endswith(".conv2")]
    # A small strength keeps SGD stable over the run; the time does not depend on it.
    if args.regulariser == "wiring_cost":
        regulariser = WiringCost(
            unit_sheet_positions(model, convs, seed=0),
            dict.fromkeys(convs, 1e-6),
            variant=args.variant,
        )
        name = f"the {args.variant} wiring cost"
    elif args.regulariser == "channel_costs":
        regulariser = ChannelSpatialCosts(dict.fromkeys(convs, 1e-6))
        regulariser.check(model)  # makes the positions, which the optimiser steps too
        name = "the channel spatial costs"
    else:
        regulariser = TopoLoss(
            dict.fromkeys(convs, 1e-6),
            factor_h=TOPOLOSS_FACTOR,
            factor_w=TOPOLOSS_FACTOR,
            interpolation=args.interpolation,
        )
        name = f"TopoLoss ({args.interpolation}, factor {TOPOLOSS_FACTOR})"
    trained = [*model.parameters(), *regulariser.parameters()]
    optimizer = torch.optim.SGD(trained, lr=1e-3, momentum=0.9)
    images = torch.randn(IMAGES, 3, SIZE, SIZE)
    labels = torch.randint(0, 10, (IMAGES,))

    def step(with_cost: bool) -> float:
        start = clock()
        output, _ = model(images)
        loss = F.cross_entropy(output, labels)
        if with_cost:
            loss = loss + regulariser(model)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return clock() - start

    def alone() -> float:
        optimizer.zero_grad()
        start = clock()
        regulariser(model)[0].backward()
        return clock() - start

    step(False), step(True), alone()  # warm-up
    plain, with_cost, own = [], [], []
    for index in range(args.rounds):
        if index % 2 == 0:
            a, b = step(False), step(True)
        else:
            b, a = step(True), step(False)
        plain.append(a)
        with_cost.append(b)
        own.append(alone())

    # Interference only adds time: the fastest step of each kind is the least noisy estimate.
    share = (min(with_cost) - min(plain)) / min(plain)
    own_share = statistics.median(own) / statistics.median(plain)
    print(
        f"supervised step ({IMAGES} images, {SIZE} px) with {name} on "
        f"{len(convs)} conv layers: {100 * share:.2f} % of the step "
        f"(ratio {1 + share:.3f} vs the same step without it, {1000 * min(plain):.0f} ms; "
        f"budget {100 * BUDGET:.0f} %; {args.clock} clock, {args.threads} threads)"
    )
    print(
        f"{name} alone, forward + backward: {1000 * statistics.median(own):.1f} ms "
        f"(ratio {own_share:.3f} vs the median step without it, "
        f"{1000 * statistics.median(plain):.0f} ms; budget {BUDGET:.2f})"
    )


if __name__ == "__main__":
    main()
