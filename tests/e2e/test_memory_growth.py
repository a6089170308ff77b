"""A run's memory does not grow with its length: N and 4N steps of the TDANN default peak alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.peak_rss import peak_rss_mb
from topo_train.train import with_objective_requirements

pytestmark = pytest.mark.slow

# 5 vs 20 steps of the default step (ResNet-18 at 64 px, 32 images → 64 views). A run that kept
# each step's block outputs (14.5 MB, as the injected spatial-loss gradient once did) would peak
# ~220 MB (~16 %) higher after 20 steps. 300 neighbourhoods per layer instead of 20,000 take
# ~0.7 GB of fixed tables out of the baseline, so that growth is a larger share of it.
STEPS = 5
OVERRIDES = ["positions.n_neighborhoods=300"]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's VmHWM")
def test_tdann_default_peak_memory_does_not_grow_with_steps(tmp_path, compose_train, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOPO_CACHE_DIR", str(cache))
    instantiate(with_objective_requirements(compose_train(OVERRIDES)).data)  # photos, written once
    short = peak_rss_mb(OVERRIDES, STEPS, cache, tmp_path / "short")
    long = peak_rss_mb(OVERRIDES, 4 * STEPS, cache, tmp_path / "long")
    assert long <= 1.10 * short, (
        f"peak RSS {long:.0f} MB after {4 * STEPS} steps vs {short:.0f} MB after {STEPS}"
    )
