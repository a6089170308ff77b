"""Benchmark of the Sensorium data pipeline (issue 5: neural predictive models).

A synthetic session the size of a SENSORIUM+ mouse's per-trial tensors (600 trials, 7,538
neurons, 1×144×256 float32 images; 500 train trials) is written once into a temporary folder with
the real layout writer. The train loader is then timed at the baseline settings (scale 0.25,
behaviour as 3 extra channels: batches of 128 × 4 × 36 × 64):

* baseline: ``cache=False``: every sample read from its four per-trial ``.npy`` files and
  normalised, given behaviour planes and rescaled on its own (the published design, minus its
  RAM cache of raw arrays);
* cached, warm: the default, batches sliced from the memory-mapped, pre-transformed tier cache;
* cached, first epoch: the cache built from scratch (one pass over the files) plus that epoch.

Both loaders are checked to give equal batches. Prints ``name: value unit (ratio X.XX vs
per-trial files)``. Run: ``python benchmarks/sensorium_data.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from topo_data.sensorium import static_loaders, write_static_session

TRIALS, NEURONS, SHAPE, BATCH = 600, 7538, (1, 144, 256), 128
OPTIONS = {"include_behavior": True, "scale": 0.25, "tier": "train", "seed": 0}


def write_session(root: Path) -> Path:
    rng = np.random.default_rng(0)
    tiers = np.array(["train"] * 500 + ["validation"] * 50 + ["test"] * 50)[rng.permutation(TRIALS)]
    return write_static_session(
        root,
        (rng.random((TRIALS, *SHAPE), dtype=np.float32) * 255).round(),
        rng.gamma(0.5, 0.3, (TRIALS, NEURONS)).astype(np.float32),
        rng.normal([10.0, 0.0, 2.0], [3.0, 1.0, 2.0], (TRIALS, 3)),
        rng.normal([300.0, 200.0], [20.0, 10.0], (TRIALS, 2)),
        tiers,
        rng.permutation(TRIALS),
        {
            "unit_ids": np.arange(NEURONS) + 1,
            "cell_motor_coordinates": rng.uniform(0, 600, (NEURONS, 3)),
            "animal_ids": 27204,
            "sessions": 5,
            "scan_idx": 13,
        },
        zip=False,
    )


def epoch(loader) -> tuple[float, int]:
    """Seconds for one pass over ``loader`` and the samples seen."""
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += batch.images.shape[0]
    return time.perf_counter() - start, seen


def train_loader(path: Path, cache: bool, cache_dir: Path):
    loaders = static_loaders([path], BATCH, cache=cache, cache_dir=cache_dir, **OPTIONS)
    return next(iter(loaders["train"].values()))


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    root = Path(tempfile.mkdtemp(prefix="sensorium_bench_"))
    try:
        start = time.perf_counter()
        path = write_session(root)
        print(f"write synthetic session ({TRIALS} trials): {time.perf_counter() - start:.1f} s")
        cache_dir = root / "cache"

        files = train_loader(path, cache=False, cache_dir=cache_dir)
        epoch(files)  # warm the page cache, as a training run would after its first epoch
        baseline_s, n = min(epoch(files) for _ in range(2))
        baseline = n / baseline_s
        print(f"per-trial files, per-sample transforms: {baseline:.0f} samples/s (ratio 1.00)")

        start = time.perf_counter()
        cached = train_loader(path, cache=True, cache_dir=cache_dir)
        build_s = time.perf_counter() - start
        first_s, n = epoch(cached)
        first = n / (build_s + first_s)
        warm_s = statistics.median(epoch(cached)[0] for _ in range(5))
        warm = n / warm_s
        print(f"cache build (train tier, {n} trials): {build_s:.2f} s")
        print(
            f"cached pipeline, first epoch incl. build: {first:.0f} samples/s "
            f"(ratio {first / baseline:.2f} vs per-trial files)"
        )
        print(
            f"cached pipeline, warm epoch: {warm:.0f} samples/s "
            f"(ratio {warm / baseline:.2f} vs per-trial files)"
        )

        positions = list(range(0, n, 7))[:BATCH]
        a, b = cached.dataset[positions], files.dataset[positions]
        diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True) if x is not None)
        print(f"max |cached - per-trial| over one batch: {diff:.2e}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
