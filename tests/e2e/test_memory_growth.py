"""A run's memory does not grow with its length: N and 4N steps of the TDANN default peak alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

pytestmark = pytest.mark.slow

# 5 vs 20 steps of the default step (ResNet-18 at 64 px, 32 images → 64 views). A run that kept
# each step's block outputs (14.5 MB, as the injected spatial-loss gradient once did) would peak
# ~220 MB (~16 %) higher after 20 steps. 300 neighbourhoods per layer instead of 20,000 take
# ~0.7 GB of fixed tables out of the baseline, so that growth is a larger share of it.
STEPS = 5
OVERRIDES = ["positions.n_neighborhoods=300", "tracking=none", "trainer.progress=false"]

# `python -c RUNNER <file> <overrides>`: the CLI, writing its peak RSS (VmHWM, KiB) to <file> at
# exit. Not the parent's wait4/getrusage figure: Linux's ru_maxrss of a child carries over
# the high-water mark of the process it was forked from (here pytest).
RUNNER = """
import atexit, runpy, sys

out = sys.argv.pop(1)


def record():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as stream:
        stream.write(kib)


atexit.register(record)
runpy.run_module("topo_train", run_name="__main__", alter_sys=True)
"""


def peak_rss_mb(steps: int, work: Path, cache: Path) -> float:
    """Peak RSS (MB) of ``python -m topo_train`` for ``steps`` steps, in a fresh process."""
    work.mkdir()
    peak = work / "peak_rss_kib"
    overrides = [*OVERRIDES, f"trainer.max_steps={steps}", f"run_dir={work / 'run'}"]
    env = {**os.environ, "TOPO_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(peak), *overrides],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return int(peak.read_text()) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's VmHWM")
def test_tdann_default_peak_memory_does_not_grow_with_steps(tmp_path, compose_train, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOPO_CACHE_DIR", str(cache))
    instantiate(compose_train(OVERRIDES).data)  # the photo folder, written before either run
    short = peak_rss_mb(STEPS, tmp_path / "short", cache)
    long = peak_rss_mb(4 * STEPS, tmp_path / "long", cache)
    assert long <= 1.10 * short, (
        f"peak RSS {long:.0f} MB after {4 * STEPS} steps vs {short:.0f} MB after {STEPS}"
    )
