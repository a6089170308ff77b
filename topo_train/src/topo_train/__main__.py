"""``python -m topo_train [overrides]`` — the Hydra entry point around :func:`train`.

In a multirun (``-m``) one failing job must not stop the sweep: its error is logged and recorded
for the sweep's callback (see :mod:`topo_train.sweep`), which reports the sweep's failed jobs at
the end.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from topo_train.run_lock import RunDirectoryBusy
from topo_train.run_names import MAX_DIRNAME, short_dirname
from topo_train.sweep import FAILED_MARKER, record_failure
from topo_train.train import make_positions, train

log = logging.getLogger("topo_train")
__all__ = ["MAX_DIRNAME", "main", "short_dirname"]


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict | None:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    with open_dict(cfg):
        if cfg.get("run_dir") is None:
            cfg.run_dir = str(output_dir)
    if cfg.get("task", "train") == "positions":
        make_positions(cfg)
        return None
    marker = Path(cfg.run_dir) / FAILED_MARKER
    marker.unlink(missing_ok=True)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return train(cfg)
    try:
        return train(cfg)
    except Exception as error:  # one job's failure must not stop the sweep
        log.error("job failed: %s", error)
        record_failure(
            Path(cfg.run_dir),
            Path(hydra_cfg.sweep.dir),
            f"{hydra_cfg.job.num}-{Path(cfg.run_dir).name}",
            mark_run_dir=not isinstance(error, RunDirectoryBusy),  # not another's directory
        )
        return None


if __name__ == "__main__":
    main()
