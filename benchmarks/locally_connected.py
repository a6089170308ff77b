"""Benchmark of ``LocallyConnected2d`` (issue: All-TNN) against a loop over output positions.

Times forward + backward of each locally connected layer of the default ``all_tnn`` trunk
(``--layer``, default ``all``: the six layers one after the other, and their sum, the trunk's
locally connected work in a training step; ``sheet0`` is 3 → 16 channels, kernel 7, stride 3,
padding 3, 64-px input, 22 × 22 positions; batch 32) in two ways: the layer's forward (one
gather of every position's patch, one batched product) and the baseline, a Python loop that
computes each output position from its patch with the same weights. Outputs and gradients
(weights, biases, inputs) are checked equal first. Steps alternate (A B B A) after a warm-up;
each figure is a median. The allocator is set up as ``topo_train`` sets it up (freed
blocks reused, not returned and faulted in again each step). On a loaded machine the layer's
multi-threaded kernels wait for descheduled threads; ``--threads 1`` measures without them.

Prints ``name: value unit (ratio X.XX vs <baseline>)``; the ratio is the loop's time over the
layer's (a speed-up), and the budget is >= 5 (with ``all``, judged on the sum). Run:
``python benchmarks/locally_connected.py`` (``--rounds`` ABBA rounds, default 20).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from topo_models.trunks.all_tnn import SHEET_NAMES, all_tnn
from topo_models.trunks.locally_connected import LocallyConnected2d
from topo_train.runtime import tune_cpu_allocator

BUDGET = 5.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", choices=(*SHEET_NAMES, "all"), default="all")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="steps of each kind first")
    parser.add_argument("--rounds", type=int, default=20, help="ABBA rounds (2 steps each)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser.parse_args()


def loop_forward(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """The baseline: one matrix product per output position, on that position's patch.

    Kernels and biases are split once with ``unbind`` (whose backward stacks the gradients once),
    not indexed per position (each index's backward would fill a weight-sized gradient).
    """
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    padded = F.pad(x, (pw, pw, ph, ph))
    out_h, out_w = layer.output_size
    # Each position's kernel in Conv2d's (in, kh, kw) order, matching the patches: (out, in·kh·kw).
    kernels = layer.weight.permute(0, 1, 2, 5, 3, 4).flatten(3).flatten(0, 1).unbind(0)
    biases = layer.bias.flatten(1).unbind(1)  # each (out,)
    columns = []
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].flatten(1)
            position = i * out_w + j
            columns.append(patch @ kernels[position].T + biases[position])
    return torch.stack(columns, dim=-1).reshape(x.shape[0], layer.out_channels, out_h, out_w)


def step(layer: LocallyConnected2d, x: torch.Tensor, forward: Callable) -> Callable[[], float]:
    """One timed forward + backward (seconds)."""

    def run() -> float:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        started = time.perf_counter()
        forward(x).square().mean().backward()
        return time.perf_counter() - started

    return run


def measure(name: str, layer: LocallyConnected2d, args: argparse.Namespace) -> tuple[float, float]:
    """Median forward + backward seconds of (the layer, the loop), outputs and gradients checked
    equal first; prints one line."""
    # Inside the trunk only the first layer's input (the image) needs no gradient.
    x = torch.randn(args.batch, layer.in_channels, *layer.input_size)
    x.requires_grad_(name != SHEET_NAMES[0])

    ours, loop = layer(x), loop_forward(layer, x)
    torch.testing.assert_close(ours, loop, rtol=1e-4, atol=1e-5)
    grads = []
    for forward in (layer, lambda inputs: loop_forward(layer, inputs)):
        layer.zero_grad(set_to_none=True)
        x.grad = None
        forward(x).square().mean().backward()
        grads.append([layer.weight.grad, layer.bias.grad, x.grad])
    for ours_grad, loop_grad in zip(*grads, strict=True):
        torch.testing.assert_close(ours_grad, loop_grad, rtol=1e-4, atol=1e-6)

    vectorised = step(layer, x, layer)
    baseline = step(layer, x, lambda inputs: loop_forward(layer, inputs))
    for _ in range(args.warmup):
        vectorised(), baseline()
    times: dict[str, list[float]] = {"vectorised": [], "loop": []}
    for _ in range(args.rounds):
        times["vectorised"].append(vectorised())
        times["loop"].append(baseline())
        times["loop"].append(baseline())
        times["vectorised"].append(vectorised())
    ours_s, loop_s = (statistics.median(times[k]) for k in ("vectorised", "loop"))
    positions = layer.output_size[0] * layer.output_size[1]
    print(
        f"LocallyConnected2d {name} ({layer.in_channels}->{layer.out_channels} channels, "
        f"{positions} positions, batch {args.batch}, threads {torch.get_num_threads()}) "
        f"forward+backward: {ours_s * 1e3:.2f} ms "
        f"(ratio {loop_s / ours_s:.2f} vs a python loop over output positions at "
        f"{loop_s * 1e3:.2f} ms; equal outputs and gradients)"
    )
    return ours_s, loop_s


def main() -> None:
    args = parse_args()
    print(f"allocator tuned as in topo_train: {tune_cpu_allocator()}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sheets = all_tnn().sheets()
    names = SHEET_NAMES if args.layer == "all" else (args.layer,)
    measured = [measure(name, sheets[name], args) for name in names]
    if len(measured) > 1:
        ours_s, loop_s = (sum(column) for column in zip(*measured, strict=True))
        print(
            f"all six layers of the default all_tnn trunk, forward+backward: {ours_s * 1e3:.2f} ms "
            f"(ratio {loop_s / ours_s:.2f} vs the loop at {loop_s * 1e3:.2f} ms)"
        )
    ratio = loop_s / ours_s if len(measured) > 1 else measured[0][1] / measured[0][0]
    print(f"within budget (ratio >= {BUDGET:g}): {ratio >= BUDGET}")


if __name__ == "__main__":
    main()
