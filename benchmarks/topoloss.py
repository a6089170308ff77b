"""Benchmark of TopoLoss: its share of a supervised training step (budget ≤ 10 %).

TopoLoss (forward and backward) on every Conv2d of ``resnet18_spatial`` (20 layers, sheets
8 × 8 to 16 × 32, factor 4), against the same step without it: batch of 32 images at 112 px,
cross-entropy on 10 classes, SGD, CPU, the allocator set up as ``topo_train`` sets it up. Steps
with and without the loss alternate in ABBA order; the loss alone is timed after each pair. CPU
time of all threads is measured (less hit by the VM's neighbours than wall time).

Prints one line: ``name: value unit (ratio X.XX vs <baseline>)``.
Run: ``python benchmarks/topoloss.py`` (about a minute on 2 cores; ``--rounds``, 8 by default,
sets the ABBA rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from topo_models import create_model
from topo_models.losses.topoloss import TopoLoss
from topo_train.runtime import tune_cpu_allocator

IMAGES, SIZE, FACTOR = 32, 112, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="ABBA rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--interpolation", choices=("bilinear", "nearest", "antialiased"), default="bilinear"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    model = create_model("resnet18_spatial", head="classifier", num_classes=10)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    topo = TopoLoss(
        dict.fromkeys(convs, 1.0),
        factor_h=FACTOR,
        factor_w=FACTOR,
        interpolation=args.interpolation,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(IMAGES, 3, SIZE, SIZE)
    labels = torch.randint(0, 10, (IMAGES,))

    def step(with_topo: bool) -> float:
        start = time.process_time()
        output, _ = model(images)
        loss = F.cross_entropy(output, labels)
        if with_topo:
            loss = loss + topo(model)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.process_time() - start

    def alone() -> float:
        start = time.process_time()
        topo(model)[0].backward()  # into gradients a step has filled, as in a step
        return time.process_time() - start

    step(False), step(True), alone()  # warm-up
    plain, with_loss, own = [], [], []
    for round_index in range(args.rounds):
        if round_index % 2 == 0:
            a, b = step(False), step(True)
        else:
            b, a = step(True), step(False)
        plain.append(a)
        with_loss.append(b)
        own.append(alone())
    base = statistics.median(plain)
    share = statistics.median(own) / base
    # interference only adds time: the cheapest step of each kind is the least noisy estimate
    step_share = (min(with_loss) - min(plain)) / min(plain)
    print(
        f"TopoLoss ({args.interpolation}, factor {FACTOR}) fwd+bwd on {len(convs)} conv layers: "
        f"{100 * share:.2f} % of a supervised step's CPU time (ratio {1 + share:.3f} vs the "
        f"same step without it, {1000 * base:.0f} ms; loss alone "
        f"{1000 * statistics.median(own):.1f} ms; fastest steps differ by {100 * step_share:.2f} "
        f"%; {IMAGES} images, {SIZE} px, {args.threads} threads, {args.rounds} ABBA rounds; "
        "budget 10 %)"
    )


if __name__ == "__main__":
    main()
