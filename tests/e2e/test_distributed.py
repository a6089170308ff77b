"""DDP on CPU through the CLIs: `torchrun -m topo_train` and the submitit launcher's tasks.

That two replicas shard the data, train the weights of one process and write once:
test_ddp_equivalence.py (one torchrun job, three runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def run_ok(command: list[str], cwd) -> subprocess.CompletedProcess:
    """Run a multi-process job with one thread per process; fail with its output's tail."""
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_ddp_spatial_multitask_run_moves_the_positions_by_their_costs(tmp_path):
    """Under DDP the costs stay an autograd node (the reducer waits for every parameter's
    gradient in backward): the positions, which only the costs move, change step by step —
    proximity depends on the positions alone, so its logged value changes with them."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29534",
        "-m",
        "topo_train",
        "experiment=spatial_multitask",
        f"run_dir={tmp_path / 'run'}",
        "trainer.device=cpu",
        "tracking=none",
        "trainer.progress=false",
        "trainer.max_epochs=null",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.val_every_epochs=0",
        "model.widths=[16,16]",
        "data.batch_size=32",
    ]
    result = run_ok(command, tmp_path)
    assert "distributed: rank 1 of 2" in result.stdout + result.stderr
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    proximity = [json.loads(line)["proximity/hidden1"] for line in lines if "proximity" in line]
    assert len(proximity) == 3 and len(set(proximity)) == 3, proximity


def test_submitit_launcher_runs_a_ddp_job_with_two_tasks(tmp_path):
    """The SLURM path, run locally: hydra-submitit-launcher starts one task per (virtual) GPU."""
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("run_dir=")]
    command = [
        sys.executable,
        "-m",
        "topo_train",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",
        "trainer.device=cpu",
        "tracking=none",
        "data.batch_size=4",
        "trainer.max_steps=2",
        *overrides,
    ]
    run_ok(command, tmp_path)
    logs = "".join(p.read_text() for p in tmp_path.rglob("*_log.out"))
    assert "distributed: rank 0 of 2" in logs and "distributed: rank 1 of 2" in logs
    [model] = list((tmp_path / "runs" / "sweeps" / "topo_train").glob("*/*/model.pt"))
    assert torch.load(model, weights_only=True)["model"]["fc.0.weight"].shape == (512, 512)
