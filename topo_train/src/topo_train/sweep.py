"""Hydra multirun support: one directory and one MLflow parent run per sweep, and failures that
neither stop a sweep nor leak into another one.

The callback runs in the launching process. Before the first job it names the sweep — its
directory is ``runs/sweeps/topo_train/<sweep name>``, derived from the command-line overrides
(so re-running a sweep resumes its jobs, and two different sweeps never share a directory or a
``multirun.yaml``) — gives it a fresh id, creates the MLflow database and experiment and a parent
run, and passes all three to the jobs through environment variables (inherited by local jobs
and by submitit's SLURM jobs). A job that fails writes its traceback under
``<sweep dir>/.failures/<sweep id>/`` (and ``FAILED`` in its own run directory, unless another
process holds that); at the end the callback reports this sweep's failures only and exits 1.
"""

from __future__ import annotations

import logging
import os
import traceback
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes
from topo_train.tracking import PARENT_RUN_ENV, ensure_experiment

log = logging.getLogger(__name__)

FAILED_MARKER = "FAILED"
FAILURES_DIR = ".failures"
SWEEP_ID_ENV = "TOPO_SWEEP_ID"
SWEEP_NAME_ENV = "TOPO_SWEEP_NAME"


def sweep_name(task_overrides: list[str], exclude_keys: list[str]) -> str:
    """The sweep's directory name: its overrides (minus paths and devices), as a run's."""
    from topo_train.run_names import short_dirname

    kept = [o for o in task_overrides if o.split("=", 1)[0].lstrip("+~") not in exclude_keys]
    return short_dirname(",".join(sorted(kept)))


def record_failure(run_dir: Path, sweep_dir: Path, job_name: str, mark_run_dir: bool) -> Path:
    """Write the current exception's traceback where this sweep's callback will find it."""
    text = f"run_dir: {run_dir}\n{traceback.format_exc()}"
    sweep_id = os.environ.get(SWEEP_ID_ENV, "no-sweep-id")
    path = sweep_dir / FAILURES_DIR / sweep_id / f"{job_name}.txt"
    atomic_write_bytes(text.encode(), path)
    if mark_run_dir:
        atomic_write_bytes(text.encode(), run_dir / FAILED_MARKER)
    return path


class MLflowSweepCallback(Callback):
    """Names the sweep, groups its runs under one parent MLflow run, reports its failed jobs."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.tracking_uri: str | None = None
        self.sweep_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_id = uuid.uuid4().hex
        os.environ[SWEEP_ID_ENV] = self.sweep_id
        excluded = list(config.hydra.job.config.override_dirname.exclude_keys)
        os.environ[SWEEP_NAME_ENV] = sweep_name(list(config.hydra.overrides.task), excluded)
        log.info("sweep directory %s", config.hydra.sweep.dir)
        tracking = config.get("tracking")
        if tracking is None or "tracking_uri" not in tracking:
            return
        import mlflow

        self.tracking_uri = str(tracking.tracking_uri)
        experiment_id = ensure_experiment(self.tracking_uri, str(tracking.experiment_name))
        client = mlflow.MlflowClient(self.tracking_uri)
        name = f"sweep {Path(config.hydra.sweep.dir).as_posix()}"
        run = client.create_run(experiment_id, run_name=name, tags={"topo.sweep": "parent"})
        self.parent_run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        log.info("MLflow parent run %s for this sweep", self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = sorted((sweep_dir / FAILURES_DIR / str(self.sweep_id)).glob("*.txt"))
        failed = [r.read_text().splitlines()[0].removeprefix("run_dir: ") for r in records]
        if self.parent_run_id is not None:
            import mlflow

            client = mlflow.MlflowClient(self.tracking_uri)
            client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")
            os.environ.pop(PARENT_RUN_ENV, None)
        for name in (SWEEP_ID_ENV, SWEEP_NAME_ENV):
            os.environ.pop(name, None)
        if failed:
            error = TopoError(
                f"{len(failed)} sweep job(s) failed; the others completed. Each traceback is in "
                f"{records[0].parent}",
                file=sweep_dir,
                found=failed,
            )
            log.error("%s", error)
            # Hydra turns callback exceptions into warnings; the sweep's exit status must say it.
            raise SystemExit(1)
