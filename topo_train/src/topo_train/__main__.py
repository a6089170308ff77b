"""``python -m topo_train [overrides]`` — the Hydra entry point around :func:`train`.

In a multirun (``-m``) one failing job must not stop the sweep: its error is logged and recorded
for the sweep's callback (see :mod:`topo_train.sweep`), which reports the sweep's failed jobs at
the end. Ctrl-C stops a run without a traceback (exit status 130): its last checkpoint stays as
it was, and the same command resumes it.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from topo_train.run_lock import RunDirectoryBusy
from topo_train.run_names import readable_run_name
from topo_train.sweep import (
    FAILED_MARKER,
    end_interrupted_sweep,
    finished_run,
    record_failure,
    swept_overrides,
)
from topo_train.train import make_positions, train, with_objective_requirements

log = logging.getLogger("topo_train")
__all__ = ["main"]

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
USER_CONFIGS = "conf"  # hydra.searchpath of conf/train.yaml, relative to the run's directory

# Hydra warns about every search path that does not exist; most runs have no configs of their own.
warnings.filterwarnings(
    "ignore", message=f"provider=hydra.searchpath in main, path={USER_CONFIGS} is not available"
)


def run_name(hydra_cfg: DictConfig) -> str:
    """The MLflow run's name: the command's overrides (minus paths and devices); in a sweep,
    only those that differ between its jobs."""
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys)
    overrides = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0] not in excluded]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        swept = swept_overrides(overrides)
        overrides = swept or overrides
    return readable_run_name(sorted(overrides))


def interrupted_line() -> str:
    """What to do after Ctrl-C: the same command resumes (under DVC, the same ``dvc repro``)."""
    if os.environ.get("DVC_STAGE"):  # set by DVC for a stage's command
        return (
            f"interrupted; resume with the same dvc command (dvc repro): stage "
            f"{os.environ['DVC_STAGE']} continues from its last checkpoint"
        )
    command = shlex.join(["python", "-m", "topo_train", *sys.argv[1:]])
    return f"interrupted; resume the run with the same command: {command}"


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
    failed_before = marker.exists()  # retried: never skipped as finished
    marker.unlink(missing_ok=True)
    logging.captureWarnings(True)  # warnings land in the run's log file too
    try:
        metrics = _run(cfg, hydra_cfg, retry=failed_before)
    except KeyboardInterrupt:
        log.warning("%s", interrupted_line())  # in the run's log file as well as on screen
        raise SystemExit(INTERRUPTED_EXIT) from None
    if output_dir.resolve() != Path(cfg.run_dir).resolve():  # run_dir= named another directory
        log.info("the log of this run: %s", output_dir / f"{hydra_cfg.job.name}.log")
    return metrics


def _run(cfg: DictConfig, hydra_cfg: DictConfig, retry: bool = False) -> dict | None:
    """Train; in a sweep, skip a job that already finished and record a failure instead of
    raising it."""
    name = run_name(hydra_cfg)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return train(cfg, run_name=name)
    run_dir = Path(cfg.run_dir)
    try:
        if not retry:
            config = OmegaConf.to_container(with_objective_requirements(cfg), resolve=True)
            finished = finished_run(run_dir, config)
            if finished is not None:
                log.info(
                    "%s already finished with this config: skipped (not trained again)", run_dir
                )
                return finished
        return train(cfg, run_name=name)
    except Exception as error:  # one job's failure must not stop the sweep
        log.error("job failed: %s", error)
        record_failure(
            run_dir,
            Path(hydra_cfg.sweep.dir),
            f"{hydra_cfg.job.num}-{run_dir.name}",
            mark_run_dir=not isinstance(error, RunDirectoryBusy),  # not another's directory
            log_file=Path(hydra_cfg.runtime.output_dir) / f"{hydra_cfg.job.name}.log",
        )
        return None


def cli() -> None:
    """:func:`main`, with Ctrl-C before or after a run (while Hydra composes) ending quietly
    too."""
    try:
        main()
    except KeyboardInterrupt:
        end_interrupted_sweep()
        print(interrupted_line(), file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None
    except SystemExit as exit_:  # a job's own Ctrl-C line is printed; end its sweep too
        if exit_.code == INTERRUPTED_EXIT:
            end_interrupted_sweep()
        raise


if __name__ == "__main__":
    cli()
