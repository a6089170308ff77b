"""Hydra multirun support: one directory and one MLflow parent run per sweep, and failures that
neither stop a sweep nor leak into another one.

The callback runs in the launching process. Before the first job it names the sweep — its
directory is ``runs/sweeps/topo_train/<sweep name>``, derived from the command-line overrides
(so re-running a sweep resumes its jobs, and two different sweeps never share a directory or a
``multirun.yaml``) — gives it a fresh id, creates the MLflow database and experiment and a parent
run, and passes all three to the jobs through environment variables (inherited by local jobs
and by submitit's SLURM jobs). A job that fails writes its traceback under
``<sweep dir>/.failures/<sweep id>/`` (and ``FAILED`` in its own run directory, unless another
process holds that); at the end the callback prints a table of the jobs (status and key
metrics), reports this sweep's failures only (each job's directory, log file and traceback) and
exits 1 if there were any. The same command again retries the failed jobs and skips those that
finished (:func:`finished_run`), which are not trained again. In MLflow the parent
run is named after the sweep's overrides, each job's run after its own values of the swept keys.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes
from topo_models.safe_load import read_torch_file
from topo_train.config_diff import config_differences
from topo_train.run_names import legacy_dirname, run_dirname
from topo_train.run_summary import last_values, sweep_table
from topo_train.tracking import PARENT_RUN_ENV, ensure_experiment
from topo_train.train import MODEL_FILE
from topo_train.trainer import METRICS_FILE

log = logging.getLogger(__name__)

FAILED_MARKER = "FAILED"
FAILURES_DIR = ".failures"
SWEEP_ID_ENV = "TOPO_SWEEP_ID"
SWEEP_NAME_ENV = "TOPO_SWEEP_NAME"
SWEPT_KEYS_ENV = "TOPO_SWEPT_KEYS"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def kept_overrides(task_overrides: list[str], exclude_keys: list[str]) -> list[str]:
    """The overrides that name a sweep or a run (not paths and devices), sorted."""
    return sorted(o for o in task_overrides if _key(o) not in exclude_keys)


def sweep_name(
    task_overrides: list[str], exclude_keys: list[str], parent: Path | None = None
) -> str:
    """The sweep's directory name: its overrides (minus paths and devices), paste-safe as a
    run's (``loss.alpha=0,1`` → ``loss.alpha-0+1``). With ``parent``, a directory an older
    version named ``loss.alpha=0,1`` is kept when the new one does not exist yet."""
    kept = kept_overrides(task_overrides, exclude_keys)
    name = run_dirname(kept)
    legacy = legacy_dirname(",".join(kept))
    if parent is not None and not (parent / name).exists() and (parent / legacy).is_dir():
        return legacy
    return name


def swept_keys(task_overrides: list[str]) -> list[str]:
    """The keys a sweep's overrides give several values (``a=1,2``, ``range(…)``, …)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return sorted({o.key_or_group for o in parsed if o.is_sweep_override()})


def swept_overrides(job_overrides: list[str]) -> list[str]:
    """A sweep job's overrides of the keys its sweep varies (none outside a sweep)."""
    keys = set(json.loads(os.environ.get(SWEPT_KEYS_ENV, "[]")))
    return [o for o in job_overrides if _key(o) in keys]


def record_failure(
    run_dir: Path, sweep_dir: Path, job_name: str, mark_run_dir: bool, log_file: Path | None = None
) -> Path:
    """Write the current exception's traceback where this sweep's callback will find it (first
    lines: the run directory and the job's log file, which the sweep's report names)."""
    text = f"run_dir: {run_dir}\nlog: {log_file or '-'}\n{traceback.format_exc()}"
    sweep_id = os.environ.get(SWEEP_ID_ENV, "no-sweep-id")
    path = sweep_dir / FAILURES_DIR / sweep_id / f"{job_name}.txt"
    atomic_write_bytes(text.encode(), path)
    if mark_run_dir:
        atomic_write_bytes(text.encode(), run_dir / FAILED_MARKER)
    return path


def failure_record(path: Path) -> tuple[str, str]:
    """(run directory, log file) of a failure written by :func:`record_failure`."""
    lines = path.read_text().splitlines()
    run_dir = lines[0].removeprefix("run_dir: ") if lines else str(path)
    log_file = (
        lines[1].removeprefix("log: ") if len(lines) > 1 and lines[1].startswith("log: ") else "-"
    )
    return run_dir, log_file


def finished_run(run_dir: Path, config: dict[str, Any]) -> dict[str, float] | None:
    """The last metrics of a run that already finished in ``run_dir`` with ``config`` (its
    ``model.pt`` written from the same config, no ``FAILED`` marker); None: train it.

    Re-running a sweep after some of its jobs failed then trains only those; a finished job
    is not trained (nor its files and MLflow run rewritten) again. A different config is not
    skipped: the run's own resume check refuses or restarts it.
    """
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file() or (run_dir / FAILED_MARKER).exists():
        return None
    try:
        saved = read_torch_file(model_path)
    except TopoError as error:
        log.warning("%s is unreadable (%s); training the job again", model_path, error.found)
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("config_yaml"), str):
        return None
    earlier = OmegaConf.to_container(OmegaConf.create(saved["config_yaml"]))
    if config_differences(earlier, config):
        return None
    last = last_values(run_dir / METRICS_FILE)
    last.pop("step", None)
    return {k: float(v) for k, v in last.items() if isinstance(v, int | float)}


# The parent run of the sweep in progress in this process: (tracking URI, run id). Ctrl-C ends a
# sweep without on_multirun_end; the command's Ctrl-C handler closes the run with it.
_open_parent: tuple[str, str] | None = None


def end_interrupted_sweep() -> None:
    """Mark this process's open sweep parent run KILLED (after Ctrl-C), as its jobs are."""
    global _open_parent
    if _open_parent is None:
        return
    import mlflow

    uri, run_id = _open_parent
    _open_parent = None
    mlflow.MlflowClient(uri).set_terminated(run_id, status="KILLED")


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
        overrides = list(config.hydra.overrides.task)
        os.environ[SWEEP_NAME_ENV] = sweep_name(overrides, excluded)
        parent = Path(config.hydra.sweep.dir).parent  # where an older one may be
        os.environ[SWEEP_NAME_ENV] = sweep_name(overrides, excluded, parent)
        os.environ[SWEPT_KEYS_ENV] = json.dumps(swept_keys(overrides))
        log.info("sweep directory %s", config.hydra.sweep.dir)
        tracking = config.get("tracking")
        if tracking is None or "tracking_uri" not in tracking:
            return
        import mlflow

        self.tracking_uri = str(tracking.tracking_uri)
        experiment_id = ensure_experiment(self.tracking_uri, str(tracking.experiment_name))
        client = mlflow.MlflowClient(self.tracking_uri)
        kept = kept_overrides(overrides, excluded)
        swept = set(swept_keys(kept))
        # what the sweep varies first, then what its jobs share
        ordered = sorted(kept, key=lambda o: _key(o) not in swept)
        name = "sweep " + (" ".join(ordered) or "default")
        run = client.create_run(experiment_id, run_name=name, tags={"topo.sweep": "parent"})
        self.parent_run_id = run.info.run_id
        global _open_parent
        _open_parent = (self.tracking_uri, self.parent_run_id)
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        log.info("MLflow parent run %s for this sweep", self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = sorted((sweep_dir / FAILURES_DIR / str(self.sweep_id)).glob("*.txt"))
        failures = [failure_record(r) for r in records]
        failed = [run_dir for run_dir, _ in failures]
        if self.parent_run_id is not None:
            import mlflow

            client = mlflow.MlflowClient(self.tracking_uri)
            client.set_terminated(self.parent_run_id, status="FAILED" if failed else "FINISHED")
            global _open_parent
            _open_parent = None
            os.environ.pop(PARENT_RUN_ENV, None)
        for name in (SWEEP_ID_ENV, SWEEP_NAME_ENV, SWEPT_KEYS_ENV):
            os.environ.pop(name, None)
        if sweep_dir.is_dir():
            log.info("%s", sweep_table(sweep_dir, failed))
        if failed:
            jobs = "\n".join(
                f"  {run_dir}\n    log: {log_file}\n    traceback: {record}"
                for (run_dir, log_file), record in zip(failures, records, strict=True)
            )
            log.error(
                "%d sweep job(s) failed; the others completed:\n%s\nRun the same command again to "
                "retry the failed job(s): finished jobs are skipped, not trained again.",
                len(failed),
                jobs,
            )
            # Hydra turns callback exceptions into warnings; the sweep's exit status must say it.
            raise SystemExit(1)
