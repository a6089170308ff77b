"""Hydra multirun support: one MLflow parent run per sweep, failures that do not stop a sweep.

The callback runs in the launching process. Before the first job it creates the MLflow database
and experiment and a parent run, and passes the parent's id to every job through an environment
variable (inherited by local jobs and by submitit's SLURM jobs). Jobs that fail leave a
``FAILED`` file in their output directory (see ``__main__``); at the end the callback closes the
parent run, logs one error naming every failed job and exits with status 1.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from topo_models import TopoError
from topo_train.tracking import PARENT_RUN_ENV, ensure_experiment

log = logging.getLogger(__name__)

FAILED_MARKER = "FAILED"


class MLflowSweepCallback(Callback):
    """Groups a sweep's runs under one parent MLflow run and reports failed jobs."""

    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.tracking_uri: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
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
        failed = sorted(p.parent for p in sweep_dir.rglob(FAILED_MARKER))
        if self.parent_run_id is not None:
            import mlflow

            client = mlflow.MlflowClient(self.tracking_uri)
            client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")
            os.environ.pop(PARENT_RUN_ENV, None)
        if failed:
            error = TopoError(
                f"{len(failed)} sweep job(s) failed; the others completed. See FAILED in each",
                file=sweep_dir,
                found=[p.as_posix() for p in failed],
            )
            log.error("%s", error)
            # Hydra turns callback exceptions into warnings; the sweep's exit status must say it.
            raise SystemExit(1)
