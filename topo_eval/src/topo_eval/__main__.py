"""``python -m topo_eval task=responses checkpoint=… positions=… [image=…]``,
``python -m topo_eval task=predictive checkpoint=…/model.pt [data=…]`` and the spatial
multi-task stages ``task=record | split | score | plot | multitask checkpoint=…/model.pt``,
``task=multitask_sweep sweep_dir=…``, ``task=retina_run [retina.input=…] output_dir=…`` and
``task=retina_fit checkpoint=…/model.pt`` (a fitted LN retina model: cells.csv, kernels)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from topo_data import eval_transform
from topo_data.embedded import photo_path
from topo_data.image_folder import load_rgb_image
from topo_eval.model_loading import load_trained_model
from topo_eval.predictive_task import run_predictive
from topo_eval.responses import plot_layer, registered_responses, write_figure
from topo_models import TopoError
from topo_models.atomic import atomic_write_bytes
from topo_models.positions import NetworkPositions
from topo_models.safe_load import read_torch_file

log = logging.getLogger("topo_eval")
MULTITASK = ("record", "split", "score", "plot", "multitask", "multitask_sweep")
TASKS = ("responses", "predictive", *MULTITASK, "retina_run", "retina_fit")
TRACKED_BY_DEFAULT = ("score", "multitask", "multitask_sweep", "retina_fit")


def trained_input_size(checkpoint: Path) -> int:
    """The input size a topo ``model.pt`` was trained at (224 for TDANN checkpoints)."""
    saved = read_torch_file(checkpoint)
    config = saved.get("config_yaml", "{}") if isinstance(saved, dict) else "{}"
    return int(OmegaConf.select(OmegaConf.create(config), "data.image_size", default=224))


def run_responses(cfg: DictConfig, output_dir: Path) -> Path:
    """Write responses.csv and figures/<layer>.png for one image; return the table's path."""
    model = load_trained_model(cfg.checkpoint)
    size = cfg.image_size or trained_input_size(Path(cfg.checkpoint))
    positions = NetworkPositions.load(cfg.positions)
    image_file = Path(cfg.image) if cfg.image else photo_path("astronaut")
    image = eval_transform(int(size))(load_rgb_image(str(image_file)))
    layers = list(cfg.layers) if cfg.layers else None
    table = registered_responses(model, positions, image, layers)
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "responses.csv"
    atomic_write_bytes(table.to_csv(index=False).encode(), csv_path)
    for layer in table.layer.unique():
        write_figure(plot_layer(table, layer), output_dir / "figures" / f"{layer}.png")
    log.info(
        "responses of %d units in %d layers → %s", len(table), table.layer.nunique(), output_dir
    )
    return csv_path


@hydra.main(version_base="1.3", config_path="../../../conf/topo_eval", config_name="eval")
def main(cfg: DictConfig) -> None:
    if cfg.task not in TASKS:
        raise TopoError("unknown evaluation task", field="task", expected=TASKS, found=cfg.task)
    output_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    metrics: dict[str, float] = {}
    if cfg.task == "predictive":
        table = run_predictive(with_training_data(cfg), output_dir)
    elif cfg.task in MULTITASK:
        table, metrics = run_multitask_task(cfg, output_dir)
    elif cfg.task == "retina_run":
        from topo_eval.retina_task import run_retina_task

        table, metrics = run_retina_task(cfg, output_dir)
    elif cfg.task == "retina_fit":
        from topo_eval.retina_fit_report import run_retina_fit

        table, metrics = run_retina_fit(with_training_data(cfg), output_dir)
    else:
        table = run_responses(cfg, output_dir)
    enabled = cfg.tracking.enabled
    if enabled is None:  # scores are results worth keeping; other tables are inspections
        enabled = cfg.task in TRACKED_BY_DEFAULT
    if enabled:
        log_to_mlflow(cfg, output_dir, table, metrics)


def run_multitask_task(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """One stage of the spatial multi-task workflow; (its table, metrics for MLflow)."""
    from topo_eval.multitask import stages

    if cfg.task == "multitask":
        return stages.run_multitask(cfg, output_dir)
    if cfg.task == "multitask_sweep":
        return stages.run_sweep(cfg, output_dir)
    if cfg.task == "score":
        return stages.run_score(cfg, output_dir)
    run = {"record": stages.run_record, "split": stages.run_split, "plot": stages.run_plot}
    return run[cfg.task](cfg, output_dir), {}


def with_training_data(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``data`` taken from the training run saved in the checkpoint when unset,
    so the model is scored on the sessions, neurons and inputs it was trained on."""
    if cfg.get("data") is not None:
        return cfg
    saved = read_torch_file(cfg.checkpoint)
    training = OmegaConf.create(saved.get("config_yaml", "{}") if isinstance(saved, dict) else "{}")
    if OmegaConf.select(training, "data") is None:
        raise TopoError(
            "the checkpoint does not say which data it was trained on; pass data=…",
            file=cfg.checkpoint,
            field="data",
            expected="a model.pt written by topo_train, or data.paths=[…] on the command line",
        )
    filled = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    filled.data = training.data
    return filled


def log_to_mlflow(
    cfg: DictConfig, output_dir: Path, table_path: Path, metrics: dict[str, float] | None = None
) -> str:
    """One MLflow run holding the config, the table, the figures and any headline metrics;
    returns its id."""
    import mlflow

    client = mlflow.MlflowClient(cfg.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(cfg.tracking.experiment_name)
    )
    if cfg.task == "retina_run":
        source = output_dir
    else:
        source = cfg.sweep_dir if cfg.task == "multitask_sweep" else cfg.checkpoint
    run = client.create_run(experiment_id, run_name=f"{cfg.task} {Path(source).name}")
    config = OmegaConf.to_container(cfg, resolve=True)
    keys = ("task", "checkpoint", "positions", "image", "image_size")
    if cfg.task == "predictive":
        keys = ("task", "checkpoint", "tier", "fev_threshold")
    elif cfg.task in MULTITASK:
        keys = ("task", "checkpoint", "sweep_dir", "multitask")
    elif cfg.task == "retina_run":
        keys = ("task", "output_dir", "retina")
    elif cfg.task == "retina_fit":
        keys = ("task", "checkpoint")
    for key in keys:
        client.log_param(run.info.run_id, key, str(config.get(key)))
    client.log_dict(run.info.run_id, config, "config.yaml")
    for name, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, name, float(value))
    client.log_artifact(run.info.run_id, str(table_path))
    for figures in sorted(output_dir.rglob("figures")):  # multitask: one per stage directory
        if figures.is_dir():
            relative = figures.relative_to(output_dir).as_posix()
            client.log_artifacts(run.info.run_id, str(figures), relative)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


if __name__ == "__main__":
    main()
