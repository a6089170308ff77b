"""MLflow runs of ``dvc exp run`` grouped as a Hydra sweep's are: one parent, one child each.

``dvc exp run -S loss.alpha=…`` (in the workspace, or queued with ``--queue`` and run with
``--run-all``) gives every stage's command ``DVC_EXP_NAME`` (the experiment),
``DVC_EXP_BASELINE_REV`` (the commit the experiments start from) and ``DVC_ROOT`` (the
repository, also when a queued experiment runs in a temporary copy under ``.dvc/tmp/exps``).
The experiments of one baseline are the variants of one sweep, so their training runs go under
one parent run per baseline revision in the MLflow experiment, found by its tag or created once
(under the store's lock, so that queue workers running side by side make one). A Hydra sweep's
own parent (``TOPO_MLFLOW_PARENT_RUN_ID``) wins. A relative SQLite store is the repository's:
the temporary copy of a queued experiment would otherwise get a database of its own, deleted
with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topo_train.tracking import PARENT_RUN_ENV, store_lock

NAME_ENV = "DVC_EXP_NAME"
BASELINE_ENV = "DVC_EXP_BASELINE_REV"
ROOT_ENV = "DVC_ROOT"
STAGE_ENV = "DVC_STAGE"
BASELINE_TAG = "topo.dvc_baseline_rev"  # on the parent run of a baseline's experiments
SWEEP_TAG = "topo.sweep"  # "parent", as on a Hydra sweep's parent run
SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class DvcExperiment:
    """The DVC experiment this process runs a stage of."""

    name: str
    baseline_rev: str
    root: Path
    stage: str


def current() -> DvcExperiment | None:
    """The experiment from DVC's environment; None outside ``dvc exp run`` (plain
    ``dvc repro`` sets no experiment name)."""
    name, baseline = os.environ.get(NAME_ENV), os.environ.get(BASELINE_ENV)
    if not name or not baseline:
        return None
    root = Path(os.environ.get(ROOT_ENV) or os.getcwd())
    return DvcExperiment(name, baseline, root, os.environ.get(STAGE_ENV, ""))


def _workspace_root(start: Path) -> Path | None:
    """The DVC repository (a folder holding ``.dvc/``) that ``start`` is in."""
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def tracking_uri(uri: str, cwd: Path | None = None) -> str:
    """``uri``, with a relative SQLite path inside a DVC experiment taken from the same place in
    the repository (``DVC_ROOT``) instead of the temporary copy the stage may run in."""
    experiment = current()
    if experiment is None or not uri.startswith(SQLITE_PREFIX):
        return uri
    path = Path(uri[len(SQLITE_PREFIX) :])
    if path.is_absolute():
        return uri
    cwd = Path.cwd() if cwd is None else cwd
    copy_root = _workspace_root(cwd.resolve())
    inside = Path() if copy_root is None else cwd.resolve().relative_to(copy_root)
    return f"{SQLITE_PREFIX}{(experiment.root / inside / path).resolve()}"


def parent_run_id(client: Any, experiment_id: str, tracking: str, baseline_rev: str) -> str:
    """The parent run of ``baseline_rev``'s experiments: the tagged one, else a new one.

    The parent only groups its children, so it is created FINISHED (DVC runs no command when a
    queue ends that could close it)."""
    query = f"tags.`{BASELINE_TAG}` = '{baseline_rev}' and tags.`{SWEEP_TAG}` = 'parent'"
    with store_lock(tracking, "dvc_parent"):
        found = client.search_runs([experiment_id], filter_string=query, max_results=1)
        if found:
            return found[0].info.run_id
        run = client.create_run(
            experiment_id,
            run_name=f"dvc exp {baseline_rev[:7]}",
            tags={SWEEP_TAG: "parent", BASELINE_TAG: baseline_rev},
        )
        client.set_terminated(run.info.run_id, status="FINISHED")
        return run.info.run_id


def run_tags(client: Any, experiment_id: str, tracking: str) -> dict[str, str]:
    """Tags of a run started now: under its baseline's parent, with the experiment's name and
    stage; none outside a DVC experiment or inside a Hydra sweep (which has its parent)."""
    experiment = current()
    if experiment is None or os.environ.get(PARENT_RUN_ENV):
        return {}
    parent = parent_run_id(client, experiment_id, tracking, experiment.baseline_rev)
    return {
        "mlflow.parentRunId": parent,
        "dvc.exp_name": experiment.name,
        "dvc.stage": experiment.stage,
        BASELINE_TAG: experiment.baseline_rev,
    }
