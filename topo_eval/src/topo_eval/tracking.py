"""One MLflow run per tracked evaluation: its config, its table and figures, its metrics."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def log_to_mlflow(
    cfg: DictConfig, output_dir: Path, table_path: Path, metrics: dict[str, float] | None = None
) -> str:
    """One MLflow run holding the config, the table, the figures and any headline metrics;
    returns its id.

    The task's own config (``cfg.task``, one file of the ``task`` group) says what to log as
    params — its ``name`` as ``task``, then the top-level keys in ``params`` — and which path
    names the run: ``"<name> <last part of cfg[run_name_from]>"`` (``output_dir`` when unset).
    """
    import mlflow

    task = cfg.task
    client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(cfg.tracking.experiment_name)
    )
    source = cfg.get(task.run_name_from) or output_dir
    run = client.create_run(experiment_id, run_name=f"{task.name} {Path(source).name}")
    config = OmegaConf.to_container(cfg, resolve=True)
    client.log_param(run.info.run_id, "task", task.name)
    for key in task.params:
        client.log_param(run.info.run_id, key, str(config.get(key)))
    client.log_dict(run.info.run_id, config, "config.yaml")
    for name, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, name, float(value))
    client.log_artifact(run.info.run_id, str(table_path))
    if (output_dir / "index.html").is_file():  # a report page; its figures are logged beside it
        client.log_artifact(run.info.run_id, str(output_dir / "index.html"))
    for figures in sorted(output_dir.rglob("figures")):  # multitask: one per stage directory
        if figures.is_dir():
            relative = figures.relative_to(output_dir).as_posix()
            client.log_artifacts(run.info.run_id, str(figures), relative)
    client.set_terminated(run.info.run_id)
    return run.info.run_id
