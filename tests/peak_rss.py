"""Peak resident memory of one ``python -m topo_train`` run, in a fresh process.

Shared by ``tests/e2e/test_memory_growth.py`` and ``benchmarks/memory_growth.py``. The figure
is the child's own ``VmHWM``, written at its exit: a child's ``ru_maxrss`` (``os.wait4``,
``RUSAGE_CHILDREN``) starts from the high-water mark of the process it was forked from, so a
parent holding a data set (pytest, the benchmark) would hide a smaller peak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# `python -c RUNNER <file> <overrides>`: the CLI, writing its peak RSS (VmHWM, KiB) to <file>.
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


def peak_rss_mb(overrides: list[str], steps: int, cache: Path, work: Path) -> float:
    """Peak RSS (MB) of ``python -m topo_train`` run for ``steps`` steps (tracking off)."""
    work.mkdir(parents=True)
    peak = work / "peak_rss_kib"
    command = [
        sys.executable,
        "-c",
        RUNNER,
        str(peak),
        *overrides,
        f"trainer.max_steps={steps}",
        f"run_dir={work / 'run'}",
        "tracking=none",
        "trainer.progress=false",
    ]
    env = {**os.environ, "TOPO_CACHE_DIR": str(cache)}
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"topo_train {' '.join(command[4:])} failed:\n{result.stderr[-3000:]}")
    return int(peak.read_text()) / 1024
