"""A sweep with a failing job: the others finish, the failure is reported with its log, and the
same command again retries only the failed job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_slurm_requeue import TINY_MLP

pytestmark = pytest.mark.slow

# optim.lr=-1 passes the config and fails when the run builds its optimiser (a train-time error).
# No MLflow here (its sweep grouping is tested in test_cli.py and test_mlflow_concurrency.py).
SWEEP = ["-m", "optim.lr=0.005,-1,0.01", "trainer.max_steps=4", "tracking=none"]


def sweep(tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "topo_train", *SWEEP, *TINY_MLP],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_failed_job_is_reported_with_its_log_and_only_it_is_retried(tmp_path):
    first = sweep(tmp_path)
    output = first.stdout + first.stderr
    assert first.returncode == 1, output[-3000:]
    assert "1 sweep job(s) failed; the others completed:" in output, output[-3000:]
    jobs = {p.parent.name: p.parent for p in (tmp_path / "runs").rglob(".hydra")}
    assert len(jobs) == 3, sorted(jobs)
    failed = [d for name, d in jobs.items() if "optim.lr--1" in name]
    finished = [d for name, d in jobs.items() if "optim.lr--1" not in name]
    assert len(failed) == 1 and (failed[0] / "FAILED").is_file()
    assert all((d / "model.pt").is_file() for d in finished)
    # the report names the failed job's directory and its log file, which holds the error
    logged = re.search(r"^ +log: (\S+)$", output, re.MULTILINE)
    assert logged is not None, output[-3000:]
    log_file = Path(logged.group(1))
    assert log_file == failed[0] / "topo_train.log"
    assert f"  {failed[0]}\n    log: {log_file}" in output
    assert "Invalid learning rate" in log_file.read_text()
    before = {
        d: ((d / "model.pt").stat().st_mtime_ns, (d / "metrics.jsonl").read_text())
        for d in finished
    }

    second = sweep(tmp_path)  # the same command
    output = second.stdout + second.stderr
    assert second.returncode == 1, output[-3000:]
    assert output.count("already finished with this config: skipped") == 2, output[-3000:]
    after = {
        d: ((d / "model.pt").stat().st_mtime_ns, (d / "metrics.jsonl").read_text())
        for d in finished
    }
    assert after == before  # not trained again, not rewritten
    assert log_file.read_text().count("job failed: ") == 2  # the failed job was tried again
    assert "1 sweep job(s) failed" in output and f"  {failed[0]}\n    log: {log_file}" in output
