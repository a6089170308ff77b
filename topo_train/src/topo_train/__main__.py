"""``python -m topo_train [overrides]`` — the Hydra entry point around :func:`train`.

In a multirun (``-m``) one failing job must not stop the sweep: its error is logged and written
to ``FAILED`` in its output directory, and the sweep callback reports every failed job at the end.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from topo_train.sweep import FAILED_MARKER
from topo_train.train import make_positions, train

log = logging.getLogger("topo_train")
MAX_DIRNAME = 120


def short_dirname(overrides: str) -> str:
    """Run directory name from the overrides ("default" without any), hashed when too long for
    a file name (255 bytes)."""
    if not overrides:
        return "default"
    if len(overrides) <= MAX_DIRNAME:
        return overrides
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:12]
    return f"{overrides[: MAX_DIRNAME - 13]}-{digest}"


OmegaConf.register_new_resolver("topo_dirname", short_dirname, replace=True)


@hydra.main(version_base="1.3", config_path="../../../conf", config_name="train")
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
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(traceback.format_exc())
        return None


if __name__ == "__main__":
    main()
