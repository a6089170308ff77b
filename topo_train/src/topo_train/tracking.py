"""Experiment tracking: MLflow with a SQLite store by default, or nothing.

Every run logs its full composed config as params (and as ``config.yaml``), its metrics, and its
artifacts (checkpoint, positions, figures). A resumed run continues the same MLflow run and
logs no (metric, step) twice. Sweeps group their runs under one parent run. A fresh SQLite file
migrated by several processes at once fails or ends up corrupt, so the database is created and
migrated under an inter-process file lock beside it (two sweeps may start together).
"""

from __future__ import annotations

import contextlib
import hashlib
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
POSITIONS_HASH_TAG = "topo.positions_sha256"  # on the run that holds the position files
POSITIONS_POINTER = "positions.json"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_MAX_PARAM_LENGTH = 6000


def _sqlite_path(tracking_uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def sqlite_absolute(tracking_uri: str) -> str:
    """``tracking_uri`` with a SQLite file's path made absolute (usable from any directory)."""
    database = _sqlite_path(tracking_uri)
    return tracking_uri if database is None else f"sqlite:///{database.resolve()}"


def _artifact_root(tracking_uri: str) -> str | None:
    """Keep artifacts beside a SQLite database (not in the current directory)."""
    database = _sqlite_path(tracking_uri)
    return None if database is None else (database.resolve().parent / "mlartifacts").as_uri()


@contextlib.contextmanager
def store_lock(tracking_uri: str, purpose: str = "") -> Iterator[None]:
    """Hold ``<database>[.purpose].lock`` while a SQLite store is created or migrated, or
    while one job of several uploads what the others then point to (no-op for other stores)."""
    database = _sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.resolve().parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database.resolve()}{'.' + purpose if purpose else ''}.lock"):
        yield


def directory_hash(path: Path) -> str:
    """SHA-256 of a directory's files: each relative path, size and content, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def ensure_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Create the database (if new) and the experiment; return the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with store_lock(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        from mlflow.exceptions import MlflowException

        try:
            return client.create_experiment(
                experiment_name, artifact_location=_artifact_root(tracking_uri)
            )
        except MlflowException:  # an MLflow server has no file lock: another job made it first
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise
            return experiment.experiment_id


class NullTracker:
    """Tracking switched off (``tracking=none``): every call does nothing, on purpose."""

    run_id: str | None = None
    tracking_uri: str | None = None
    log_checkpoint = False

    def start(self, config: Mapping[str, Any], run_name: str, run_id: str | None) -> str | None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def log_positions(self, path: Path) -> None:
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

        from topo_train import dvc_experiments  # imports this module

        self.tracking_uri = dvc_experiments.tracking_uri(self.tracking_uri)
        experiment_id = ensure_experiment(self.tracking_uri, self.experiment_name)
        self._client = mlflow.MlflowClient(self.tracking_uri)
        if run_id is not None and self._continue(run_id):
            return run_id
        tags = {"mlflow.runName": run_name}
        parent = os.environ.get(PARENT_RUN_ENV)
        if parent:
            tags["mlflow.parentRunId"] = parent
        tags.update(dvc_experiments.run_tags(self._client, experiment_id, self.tracking_uri))
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

    def log_positions(self, path: Path, artifact_path: str = "positions") -> None:
        """Log a positions directory once per distinct content in this store.

        Position files are large (TDANN's: 340 MB) and the same for every run of a layout and
        seed, so only the first run with a given content hash holds them (tagged
        :data:`POSITIONS_HASH_TAG`); every later run logs ``positions.json`` instead: the hash
        and the run whose ``positions`` artifact holds the files.
        """
        content = directory_hash(path)
        with store_lock(self.tracking_uri, "positions"):
            holder = self._positions_holder(content)
            if holder == self.run_id:
                return  # a finished run run again: its files are there already
            if holder is None:
                self.log_artifact(path, artifact_path)
                self._client.set_tag(self.run_id, POSITIONS_HASH_TAG, content)
                return
        pointer = {"sha256": content, "run_id": holder, "artifact_path": artifact_path}
        self._client.log_dict(self.run_id, pointer, POSITIONS_POINTER)
        log.info("positions are the same as MLflow run %s's; logged %s", holder, POSITIONS_POINTER)

    def _positions_holder(self, content: str) -> str | None:
        """A run of this store whose position files have the hash ``content`` (this run
        first), or None."""
        tagged = self._client.get_run(self.run_id).data.tags.get(POSITIONS_HASH_TAG)
        if tagged == content:
            return self.run_id
        experiments = [e.experiment_id for e in self._client.search_experiments()]
        runs = self._client.search_runs(
            experiments, filter_string=f"tags.`{POSITIONS_HASH_TAG}` = '{content}'", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None and self._client is not None:
            self._client.set_terminated(self.run_id, status=status)


def _now_ms() -> int:
    return int(time.time() * 1000)
