"""Memory against run length (issue: memory that grows with steps): flat in the step count.

Each family's default (``python -m topo_train`` — the TDANN default — and
``experiment=sensorium_baseline``, ``spatial_multitask``, ``retina_fit``) is run for N and for
4N optimiser steps (``trainer.max_steps``; ``trainer.max_epochs=null`` where the experiment
counts epochs), each in a fresh process and run directory, tracking off. The figure is that
process's peak resident set size (its ``VmHWM``: the high-water mark from start, imports, setup
and validation included). Data caches (the embedded photos, the simulated
mouse, the simulated retina) are written once beforehand, so both runs do the same setup and
differ only in their steps. A run that kept something of every step would show it in the 4N
figure: before the fix the TDANN default kept each step's block outputs (14.5 MB at 64 px,
64 views) and grew 2.2 → 3.2 GB from 20 to 80 steps. The budget is a ratio within 1.10.

Prints one line per family: ``<family>: peak RSS N=<n> steps <MB> MB, 4N=<4n> steps <MB> MB
(ratio X.XX vs N steps)``. Run: ``python benchmarks/memory_growth.py`` (5–7 minutes on 2
cores); ``--steps tdann=20`` changes a family's N, ``--family tdann`` runs only that one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from topo_train.train import with_objective_requirements

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
sys.path.insert(0, str(ROOT))
from tests.peak_rss import peak_rss_mb  # noqa: E402

# family → (overrides selecting its default, N). N is small so the script stays short: each
# TDANN or Sensorium step takes seconds on 2 cores, a multitask step a fraction of one.
FAMILIES: dict[str, tuple[list[str], int]] = {
    "tdann": ([], 5),
    "sensorium_baseline": (["experiment=sensorium_baseline", "trainer.max_epochs=null"], 3),
    "spatial_multitask": (["experiment=spatial_multitask", "trainer.max_epochs=null"], 10),
    "retina_fit": (["experiment=retina_fit"], 3),
}


def prepare_data(overrides: list[str], cache: Path) -> None:
    """Write the family's data cache once (the data module writes it on construction)."""
    os.environ["TOPO_CACHE_DIR"] = str(cache)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    instantiate(with_objective_requirements(cfg).data)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), default=None)
    parser.add_argument("--steps", action="append", default=[], metavar="FAMILY=N")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    steps = {name: n for name, (_, n) in FAMILIES.items()}
    for item in args.steps:
        name, _, value = item.partition("=")
        steps[name] = int(value)
    with tempfile.TemporaryDirectory(prefix="memory_growth_") as tmp:
        for name in args.family or FAMILIES:
            overrides, n = FAMILIES[name][0], steps[name]
            cache = Path(tmp) / name / "cache"
            prepare_data(overrides, cache)
            short = peak_rss_mb(overrides, n, cache, Path(tmp) / name / "short")
            long = peak_rss_mb(overrides, 4 * n, cache, Path(tmp) / name / "long")
            print(
                f"{name}: peak RSS N={n} steps {short:.0f} MB, 4N={4 * n} steps {long:.0f} MB "
                f"(ratio {long / short:.2f} vs N steps)",
                flush=True,
            )


if __name__ == "__main__":
    main()
