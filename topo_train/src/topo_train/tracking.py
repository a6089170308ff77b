"""Experiment tracking: MLflow with a SQLite store by default, or nothing.

Every run logs its full composed config as params (and as ``config.yaml``), its metrics, and its
artifacts (checkpoint, positions, figures). A resumed run continues the same MLflow run and
logs no (metric, step) twice. Sweeps group their runs under one parent run. A fresh SQLite file
migrated by several processes at once fails or ends up corrupt, so the database is created and
migrated under an inter-process file lock beside it (two sweeps may start together).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from topo_train.config_diff import flatten

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "TOPO_MLFLOW_PARENT_RUN_ID"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_MAX_PARAM_LENGTH = 6000


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def _artifact_root(tracking_uri: str) -> str | None:
    """Keep artifacts beside a SQLite database (not in the current directory)."""
    database = _sqlite_path(tracking_uri)
    return None if database is None else (database.resolve().parent / "mlartifacts").as_uri()


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold ``<database>.lock`` while a SQLite store is created or migrated (no-op otherwise)."""
    database = _sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.resolve().parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database.resolve()}.lock"):
        yield


def ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Create the database (if new) and the experiment; return the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with store_lock(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(
            experiment_name, artifact_location=_artifact_root(tracking_uri)
        )


class NullTracker:
    """Tracking switched off (``tracking=none``): every call does nothing, on purpose."""

    run_id: str | None = None
    log_checkpoint = False

    def start(self, config: Mapping[str, Any], run_name: str, run_id: str | None) -> str | None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def end(self, status: str = "FINISHED") -> None:
        return None


class MLflowTracker:
    """Logs one training run to MLflow.

    Args:
        tracking_uri: MLflow store (``sqlite:///mlflow.db``; ``MLFLOW_TRACKING_URI`` overrides it
            through the config's ``oc.env`` default).
        experiment_name: MLflow experiment the run belongs to.
        log_checkpoint: also upload the final checkpoint as an artifact.
    """

    def __init__(
        self,
        tracking_uri: str = DEFAULT_TRACKING_URI,
        experiment_name: str = "topo",
        log_checkpoint: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.log_checkpoint = log_checkpoint
        self.run_id: str | None = None
        self._client = None
        self._logged_through: dict[str, int] = {}  # a continued run: last step of each metric

    def start(self, config: Mapping[str, Any], run_name: str, run_id: str | None) -> str:
        """Start (or, with ``run_id`` of this store, continue) the run and log the config as
        params."""
        import mlflow

        experiment_id = ensure_experiment(self.tracking_uri, self.experiment_name)
        self._client = mlflow.MlflowClient(self.tracking_uri)
        if run_id is not None and self._continue(run_id):
            return run_id
        tags = {"mlflow.runName": run_name}
        parent = os.environ.get(PARENT_RUN_ENV)
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self._client.create_run(experiment_id, tags=tags, run_name=run_name)
        self.run_id = run.info.run_id
        params = {k: str(v)[:_MAX_PARAM_LENGTH] for k, v in flatten(config)}
        items = sorted(params.items())
        from mlflow.entities import Param

        for start in range(0, len(items), 100):
            self._client.log_batch(
                self.run_id, params=[Param(k, v) for k, v in items[start : start + 100]]
            )
        self._client.log_dict(self.run_id, dict(config), "config.yaml")
        return self.run_id

    def _continue(self, run_id: str) -> bool:
        """Reopen ``run_id`` (False: this store has no such run) and note what it logged."""
        from mlflow.exceptions import MlflowException

        try:
            run = self._client.get_run(run_id)
        except MlflowException:
            log.warning("MLflow run %s is not in %s; starting a new one", run_id, self.tracking_uri)
            return False
        self._logged_through = {
            key: max(m.step for m in self._client.get_metric_history(run_id, key))
            for key in run.data.metrics
        }
        self._client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        return True

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``, except values a killed attempt already logged there."""
        from mlflow.entities import Metric

        timestamp = _now_ms()
        batch = [
            Metric(k, float(v), timestamp, step)
            for k, v in metrics.items()
            if step > self._logged_through.get(k, -1)
        ]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None and self._client is not None:
            self._client.set_terminated(self.run_id, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)
