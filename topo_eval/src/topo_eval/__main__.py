"""``python -m topo_eval task=<name> …``: one evaluation task, chosen from the ``task`` config
group (``conf/task/<name>.yaml`` in this package, or ``conf/topo_eval/task/<name>.yaml`` of the
directory it runs from).

Tasks: ``responses`` (the default: ``checkpoint=… positions=… [image=…]``), ``predictive``
(``checkpoint=…/model.pt [data=…]``), the spatial multi-task stages ``record | split | score |
plot | multitask`` (``checkpoint=…/model.pt``), ``multitask_sweep sweep_dir=…``, ``retina_run
[retina.input=…] output_dir=…`` and ``retina_fit checkpoint=…/model.pt`` (a fitted LN retina
model: cells.csv, kernels).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method
from omegaconf import DictConfig

from topo_eval.data_loading import with_training_data
from topo_eval.tracking import log_to_mlflow

__all__ = ["EvalTask", "main", "run_task", "with_training_data"]  # with_training_data: old path

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


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    output_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    table, metrics = run_task(cfg, output_dir)
    enabled = cfg.tracking.enabled
    if enabled is None:  # the task file says: scores are results worth keeping, not inspections
        enabled = cfg.task.tracked
    if enabled:
        log_to_mlflow(cfg, output_dir, table, metrics)


if __name__ == "__main__":
    main()
