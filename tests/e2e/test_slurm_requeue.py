"""SLURM through submitit: the launcher presets' sbatch script, and a job that hears the
pre-timeout / preemption signal checkpoints at once, is requeued and resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF
from topo_train.preemption import (
    RequeueExit,
    deferred_requeue,
    preempt_signal,
    requested,
    requeue,
)
from topo_train.runtime import DistributedContext
from topo_train.train import train

# A spatial MLP on the bundled digits: a step takes ~0.1 s on a shared CPU. No periodic
# checkpoint (checkpoint_every > max_steps): the one a requeued job resumes from was written on
# the signal.
TINY_MLP = [
    "experiment=spatial_multitask",
    "model.widths=[16,16]",
    "data.batch_size=32",
    "trainer.max_epochs=null",
    "trainer.max_steps=40",
    "trainer.val_every_epochs=0",
    "trainer.early_stopping=null",
    "trainer.checkpoint_every=1000",
    "trainer.log_every=1",
    "trainer.progress=false",
]


def sbatch_script(preset: str, overrides: list[str], tmp_path: Path, monkeypatch) -> str:
    """The sbatch file submitit would submit for ``hydra/launcher=<preset>`` (built the way the
    Hydra launcher builds it; a dummy ``srun`` on PATH stands in for a cluster)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[f"hydra/launcher={preset}", f"hydra.sweep.dir={tmp_path}", *overrides],
                return_hydra_config=True,
            )
    finally:
        GlobalHydra.instance().clear()
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"].endswith("SlurmLauncher")
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=tmp_path / "submitit",
        slurm_max_num_timeout=params["max_num_timeout"],
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    skipped = {"_target_", "submitit_folder", "max_num_timeout"}
    executor.update_parameters(
        **{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in skipped}
    )
    return executor._executor._make_submission_file_text("python -m topo_train", "uid")


@pytest.mark.parametrize(
    ("preset", "nodes", "gpus"),
    [("slurm_1gpu", 1, 1), ("slurm_4gpu", 1, 4), ("slurm_multinode", 2, 4)],
)
def test_presets_give_one_task_per_gpu_and_pass_cluster_options_to_sbatch(
    preset, nodes, gpus, tmp_path, monkeypatch
):
    """Each preset asks for one task per GPU, signals the job before its time limit, and lets
    partition, account, qos, constraint, time and any other sbatch option be set."""
    script = sbatch_script(preset, [], tmp_path, monkeypatch)
    assert f"#SBATCH --nodes={nodes}\n" in script
    assert f"#SBATCH --gpus-per-node={gpus}\n" in script
    assert f"#SBATCH --ntasks-per-node={gpus}\n" in script
    assert "#SBATCH --signal=USR2@300\n" in script and "#SBATCH --time=2880\n" in script
    assert "--partition" not in script and "--account" not in script
    custom = sbatch_script(
        preset,
        [
            "hydra.launcher.partition=gpu",
            "hydra.launcher.account=lab",
            "hydra.launcher.qos=high",
            "hydra.launcher.constraint=a100",
            "hydra.launcher.timeout_min=60",
            "hydra.launcher.gpus_per_node=2",
            "+hydra.launcher.additional_parameters.mail-type=END",
        ],
        tmp_path,
        monkeypatch,
    )
    for line in (
        "--partition=gpu",
        "--account=lab",
        "--qos=high",
        "--constraint=a100",
        "--time=60",
        "--mail-type=END",
        "--gpus-per-node=2",
        "--ntasks-per-node=2",  # follows the GPUs
    ):
        assert f"#SBATCH {line}\n" in custom, (line, custom)


def test_the_signal_is_deferred_to_the_loop_then_handed_to_submitit(monkeypatch):
    """Under submitit the signal only marks a request (submitit's handler, which requeues and
    exits, would stop the loop anywhere); ``requeue`` then calls it and exits with its code."""
    calls: list[int] = []

    def submitit_handler(signum: int, frame: object) -> None:  # what submitit installs
        calls.append(signum)
        raise SystemExit(144)  # the local executor's requeue exit status

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    signum = preempt_signal()
    assert signum == signal.SIGUSR2
    before = signal.signal(signum, submitit_handler)
    context = DistributedContext()
    try:
        with deferred_requeue() as deferred:
            assert deferred and not requested(context)
            os.kill(os.getpid(), signum)
            time.sleep(0.01)
            assert requested(context) and calls == []  # noted, not acted on
            with pytest.raises(RequeueExit) as stop:
                requeue(context, step=7)
            assert calls == [signum] and stop.value.code == 144
        assert signal.getsignal(signum) is submitit_handler  # put back
        assert not requested(context)
        monkeypatch.delenv("SUBMITIT_EXECUTOR")
        with deferred_requeue() as deferred:  # not a submitit job: nothing changes
            assert not deferred and signal.getsignal(signum) is submitit_handler
    finally:
        signal.signal(signum, before)


def _wait_for(predicate, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if process.poll() is not None or time.time() > deadline:
            output = process.communicate()[0] if process.poll() is not None else ""
            raise AssertionError(f"{what} never happened: {output[-3000:]}")
        time.sleep(0.02)


@pytest.mark.slow
def test_preempted_submitit_job_checkpoints_at_once_is_requeued_and_ends_bit_identical(
    tmp_path, isolated_tracking, compose_train
):
    """A job of ``hydra/launcher=submitit_local`` gets submitit's preemption signal mid-run: it
    writes a checkpoint at that step (none was due), submitit requeues it, and the requeued job
    resumes there and ends with the same weights and metrics, bit for bit, as a run never
    stopped — in one MLflow run that ends FINISHED."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    popen = {"cwd": tmp_path, "env": env, "stdout": subprocess.PIPE}
    popen |= {"stderr": subprocess.STDOUT, "text": True}
    command = [sys.executable, "-m", "topo_train"]
    run_dir = tmp_path / "requeued"
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=60"]
    job = subprocess.Popen([*command, "-m", *launcher, *TINY_MLP, f"run_dir={run_dir}"], **popen)
    metrics_file = run_dir / "metrics.jsonl"

    def trained_a_few_steps() -> bool:
        return metrics_file.is_file() and len(metrics_file.read_text().splitlines()) >= 3

    _wait_for(trained_a_few_steps, job, "the submitit job's third step")
    holder = (run_dir / ".topo.lock").read_text().split()  # "pid N on host": the job's task
    os.kill(int(holder[1]), preempt_signal())
    output = job.communicate(timeout=600)[0]
    assert job.returncode == 0, output[-3000:]
    # the run never stopped, in this process (the same numbers as the CLI's)
    train(compose_train([*TINY_MLP, f"run_dir={tmp_path / 'whole'}", "tracking=none"]))

    logs = "".join(p.read_text() for p in (tmp_path / "runs" / "sweeps").rglob("topo_train.log"))
    written = [line for line in logs.splitlines() if "checkpoint written at step" in line]
    assert len(written) == 1, logs[-3000:]
    step = int(written[0].split("checkpoint written at step ")[1].split(";")[0])
    assert 3 <= step < 40
    assert f"resumed from {run_dir} at step {step}" in logs
    assert "received SIGUSR2" in logs
    assert not list(run_dir.glob(".*.tmp"))  # no partial write left behind
    submitit_logs = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*_log.*"))
    assert "Requeued job" in submitit_logs, submitit_logs[-3000:]

    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    requeued = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert whole.keys() == requeued.keys()
    for key in whole:
        assert torch.equal(whole[key], requeued[key]), key
    lines = (tmp_path / "whole" / "metrics.jsonl").read_text()
    assert metrics_file.read_text() == lines  # every step once, the same values

    client = mlflow.MlflowClient(isolated_tracking)
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "loss/total")
    assert sorted(m.step for m in history) == list(range(1, 41))
