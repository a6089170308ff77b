"""What every run pays besides its steps (issue 15: the suite starts ~150 processes).

1. Start-up: importing the entry points (``topo_train.train``, ``topo_eval.__main__``) in a
   fresh process, as they are (torchvision imported only where an image transform, a
   torchvision data set or network is built) against the same imports after ``import
   torchvision`` (what every process paid before: it loads ``torch._dynamo``). A run that builds
   an optimiser loads ``torch._dynamo`` anyway; an evaluation of a multi-task, retina or
   predictive model, and a stage of their DVC pipelines, does not.
2. The loss-curve figure every run draws at its end (six panels from a 300-step
   ``metrics.jsonl``) with fixed margins, as ``topo_train.loss_figure`` draws it, against the
   same function laid out by matplotlib's constrained layout engine (as before).

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)``, medians of
ABBA-interleaved rounds. Run: ``python benchmarks/run_overheads.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ENTRY_POINTS = "import topo_train.train, topo_eval.__main__"


def import_seconds(eager_torchvision: bool) -> float:
    """CPU seconds of a fresh interpreter importing the entry points."""
    code = (
        "import os\n"
        + ("import torchvision\n" if eager_torchvision else "")
        + f"{ENTRY_POINTS}\n"
        + "t = os.times()\nprint(t.user + t.system)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(result.stdout.split()[-1])


def write_metrics(path: Path, steps: int = 300) -> None:
    """A run's metrics.jsonl: the loss groups a TDANN run logs, one line every 10 steps."""
    rng = np.random.default_rng(0)
    with path.open("w") as stream:
        for step in range(0, steps, 10):
            decay = np.exp(-step / 100)
            record = {
                "step": step,
                "lr": 0.1,
                "loss/total": 5 * decay + 0.1 * rng.random(),
                "loss/task": 4 * decay,
                "spatial/layer2_0": 0.01 * decay,
                "spatial/layer4_1": 0.02 * decay,
                "val/loss/total": 5.1 * decay,
                "val/accuracy": 0.1 + step / 400,
                "grad_norm": 10 + step / 30,
                "views_per_second": 40 + rng.random(),
            }
            stream.write(json.dumps(record) + "\n")


def constrained_figure(metrics: Path, png: Path) -> None:
    """:func:`write_loss_figure` itself, laid out by matplotlib's constrained engine as before
    (with an engine set, matplotlib ignores the fixed margins, with a warning)."""
    import matplotlib

    from topo_train.loss_figure import write_loss_figure

    with warnings.catch_warnings(), matplotlib.rc_context({"figure.constrained_layout.use": True}):
        warnings.simplefilter("ignore", UserWarning)
        write_loss_figure(metrics, png)


def cpu_seconds(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def report(name: str, ours: list[float], baseline: list[float], label: str) -> None:
    a, b = statistics.median(ours), statistics.median(baseline)
    print(f"{name}: {a:.3f} s (ratio {b / a:.2f} vs {label}: {b:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds per measurement")
    args = parser.parse_args()

    lazy, eager = [], []
    for index in range(args.rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        for eager_torchvision in order:
            (eager if eager_torchvision else lazy).append(import_seconds(eager_torchvision))
    report("importing the entry points", lazy, eager, "importing torchvision first")

    from topo_train.loss_figure import write_loss_figure

    with tempfile.TemporaryDirectory() as directory:
        metrics, png = Path(directory) / "metrics.jsonl", Path(directory) / "loss_curves.png"
        write_metrics(metrics)
        fixed, constrained = [], []
        draw_fixed = lambda: write_loss_figure(metrics, png)  # noqa: E731
        draw_constrained = lambda: constrained_figure(metrics, png)  # noqa: E731
        draw_fixed(), draw_constrained()  # fonts and caches loaded before timing
        for index in range(3 * args.rounds):
            pair = (
                (draw_fixed, draw_constrained) if index % 2 == 0 else (draw_constrained, draw_fixed)
            )
            for draw in pair:
                (fixed if draw is draw_fixed else constrained).append(cpu_seconds(draw))
    report("loss-curve figure (6 panels)", fixed, constrained, "constrained layout")


if __name__ == "__main__":
    main()
