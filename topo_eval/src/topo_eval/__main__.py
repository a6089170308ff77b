"""``python -m topo_eval task=<name> …``: one evaluation task, chosen from the ``task`` config
group (``conf/task/<name>.yaml`` in this package, or ``conf/topo_eval/task/<name>.yaml`` of the
directory it runs from).

Tasks: ``responses`` (the default: ``checkpoint=… positions=… [image=…]``), ``predictive``
(``checkpoint=…/model.pt [data=…]``), the spatial multi-task stages ``record | split | score |
plot | multitask`` (``checkpoint=…/model.pt``), ``multitask_sweep sweep_dir=…``, ``retina_run
[retina.input=…] output_dir=…``, ``retina_fit checkpoint=…/model.pt`` (a fitted LN retina
model: cells.csv, kernels), ``retina_report [retina.preset=…]`` (a retina's polarity,
contrast response, transience and transfer functions), ``topography checkpoint=…/model.pt``
(maps, smoothness, pinwheels, category patches, wiring, dimensionality: a table, figures and
index.html), ``topography_sweep sweep_dir=…`` and ``positions positions=…`` (a position
set's statistics).
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Protocol

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from topo_eval.data_loading import with_training_data
from topo_eval.tracking import log_to_mlflow

__all__ = [
    "EvalTask",
    "evaluate",
    "main",
    "run_task",
    "task_summary",
    "with_training_data",
]  # old path too

log = logging.getLogger("topo_eval")
SUMMARY_ITEMS = 8  # figures and metrics named in the summary; the rest are counted
USER_CONFIGS = "conf/topo_eval"  # hydra.searchpath of conf/eval.yaml, relative to the run's cwd

# Hydra warns about every search path that does not exist; most runs have no user configs.
warnings.filterwarnings(
    "ignore", message=f"provider=hydra.searchpath in main, path={USER_CONFIGS} is not available"
)


class EvalTask(Protocol):
    """What a task file's ``_target_`` names: a function that writes the task's outputs into
    ``output_dir`` and returns (the path of its main table, headline metrics for MLflow — empty
    when it has none). ``cfg`` is the whole composed config; the task reads its own keys."""

    def __call__(self, cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]: ...


def run_task(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Run the task ``cfg.task`` names; (its table's path, its metrics)."""
    task: EvalTask = get_method(cfg.task._target_)
    return task(cfg, output_dir)


def task_summary(
    cfg: DictConfig,
    output_dir: Path,
    table: Path,
    metrics: dict[str, float],
    run_id: str | None,
) -> str:
    """What a finished task made: where its table and figures are, its headline metrics, the
    MLflow run (if tracked) and what to look at next (the task file's ``next``, whose
    ``{output_dir}``, ``{table}`` and ``{checkpoint}`` are filled in)."""
    files = sorted(p for p in output_dir.rglob("*") if p.is_file()) if output_dir.is_dir() else []
    figures = [p.relative_to(output_dir).as_posix() for p in files if p.suffix == ".png"]
    lines = [
        f"task={cfg.task.name} finished: {len(files)} files in {output_dir}",
        f"  table:   {table}",
    ]
    if figures:
        lines.append(f"  figures: {_listed(figures)}")
    if metrics:
        lines.append(f"  metrics: {_listed([f'{k}={_number(v)}' for k, v in metrics.items()])}")
    if run_id:
        uri = cfg.tracking.tracking_uri
        lines.append(
            f"  MLflow:  run {run_id} in experiment {cfg.tracking.experiment_name} ({uri}); "
            f"browse with: mlflow ui --backend-store-uri {uri}"
        )
    else:
        lines.append("  MLflow:  not tracked (tracking.enabled=true logs the table and figures)")
    hint = str(cfg.task.get("next") or "")
    if hint:
        checkpoint = OmegaConf.select(cfg, "checkpoint", default=None, throw_on_missing=False)
        values = {"output_dir": output_dir, "table": table, "checkpoint": checkpoint}
        for name, value in values.items():
            hint = hint.replace("{" + name + "}", str(value))
        lines.append("  next:    " + hint)
    return "\n".join(lines)


def _listed(items: list[str]) -> str:
    """The first ``SUMMARY_ITEMS`` items, then how many more there are."""
    more = len(items) - SUMMARY_ITEMS
    return ", ".join(items[:SUMMARY_ITEMS]) + (f" (and {more} more)" if more > 0 else "")


def _number(value: float) -> str:
    """A metric as read: whole numbers in full (30000 frames), others to 4 significant digits."""
    value = float(value)
    return f"{value:.0f}" if value.is_integer() else f"{value:.4g}"


def evaluate(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float], str | None]:
    """What `python -m topo_eval` does with a composed config, in this process (a notebook, a
    pipeline or a test need no new interpreter): run the task, log it to MLflow where tracked,
    log the summary. Returns (the task's table, its metrics, the MLflow run id or None)."""
    table, metrics = run_task(cfg, output_dir)
    enabled = cfg.tracking.enabled
    if enabled is None:  # the task file says: scores are results worth keeping, not inspections
        enabled = cfg.task.tracked
    run_id = log_to_mlflow(cfg, output_dir, table, metrics) if enabled else None
    log.info("%s", task_summary(cfg, output_dir, table, metrics, run_id))
    return table, metrics, run_id


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg, Path(cfg.output_dir or HydraConfig.get().runtime.output_dir))


def cli() -> None:
    """:func:`main`, with Ctrl-C ending in one line instead of a traceback (exit status 130)."""
    try:
        main()
    except KeyboardInterrupt:
        print(
            "interrupted; rerun the same command (files are written whole, so none is left "
            "half-written; task=retina_run continues from its last chunk)",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


if __name__ == "__main__":
    cli()
