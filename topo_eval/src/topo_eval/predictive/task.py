"""``task=predictive``: score a trained Sensorium model and write its tables, figures and
submission files."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from topo_eval.data_loading import build_data_module, with_training_data
from topo_eval.figure_files import write_figure
from topo_eval.predictive.figures import (
    plot_correlation_histograms,
    plot_oracle,
    plot_rf_positions,
    plot_rf_recovery,
    plot_shift_recovery,
)
from topo_eval.predictive.ground_truth import session_truth, shift_recovery
from topo_eval.predictive.metrics import FEV_THRESHOLD
from topo_eval.predictive.report import Loader, neuron_table, session_table, write_tables
from topo_eval.predictive.submission import write_submission
from topo_models import TopoError

log = logging.getLogger("topo_eval")


def predictive_loaders(
    data: DictConfig, tiers: Sequence[str], checkpoint: str | Path | None = None
) -> dict[str, Mapping[str, Loader]]:
    """``{tier: {data_key: DataLoader}}`` of the wanted tiers that the data have.

    ``data`` is either the training data group (``_target_: …SensoriumData``: the same paths,
    neuron selection and scale as at training) or plain ``static_loaders`` arguments.
    """
    from topo_data import TopoDataError
    from topo_data.sensorium import static_loaders

    if "_target_" not in data:
        loaders = static_loaders(**OmegaConf.to_container(data, resolve=True))
        return {tier: loaders[tier] for tier in tiers if tier in loaders}
    module = build_data_module(data, file=checkpoint)
    found = {}
    for tier in tiers:
        try:
            found[tier] = module.loaders(tier)
        except TopoDataError:
            log.info("no %s tier in the data", tier)
    return found


HEADLINE = ("correlation", "correlation_to_average", "feve")  # sessions.csv's pooled row
# also reported when sessions.csv has them (feve_competition always; the rest with the truth)
OPTIONAL = (
    "feve_competition",
    "feve_true_noise",
    "oracle_correlation",
    "oracle_correlation_to_average",
    "oracle_feve_competition",
    "correlation_fraction_of_oracle",
    "rf_r_x",
    "rf_r_y",
    "rf_smooth_r_x",
    "rf_smooth_r_y",
    "rf_ceiling_r2_x",
    "rf_ceiling_r2_y",
    "shift_r_x",
    "shift_r_y",
)


def predictive_task(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """``python -m topo_eval task=predictive``: ``run_predictive`` on the data the model was
    trained on (from the checkpoint) unless ``data`` is given; (sessions.csv, the pooled
    scores of the tier as ``<tier>/correlation``, ``…/correlation_to_average``, ``…/feve``,
    and those of ``OPTIONAL`` that the table has and are finite)."""
    path = run_predictive(with_training_data(cfg), output_dir)
    pooled = pd.read_csv(path).iloc[-1]
    tier = cfg.get("tier", "test")
    metrics = {f"{tier}/{name}": float(pooled[name]) for name in HEADLINE}
    for name in OPTIONAL:
        if name in pooled and pd.notna(pooled[name]):
            metrics[f"{tier}/{name}"] = float(pooled[name])
    return path, metrics


def run_predictive(cfg: DictConfig, output_dir: Path) -> Path:
    """Write neurons.csv, sessions.csv, figures/ and submissions/<data_key>/; return the path
    of sessions.csv.

    Config keys: ``checkpoint`` (a predictive model file for
    ``topo_models.predictive.load_checkpoint``); ``data`` (see ``predictive_loaders``; it must
    select the neurons and inputs the model was trained on); ``tier`` (scored, default
    ``test``); ``submission_tiers`` (default ``[test, final_test]``; tiers the data lack are
    skipped); ``device`` (default ``cpu``); ``fev_threshold`` (default 0.15).
    """
    data = cfg.get("data")
    if data is None or not ("paths" in data or "_target_" in data):
        raise TopoError(
            "the predictive task needs the data to score",
            field="data",
            expected="the training data group (_target_) or static_loaders arguments (paths)",
            found=None if data is None else sorted(data),
        )
    tier = cfg.get("tier", "test")
    device = cfg.get("device", "cpu")
    threshold = float(cfg.get("fev_threshold", FEV_THRESHOLD))
    submission_tiers = list(cfg.get("submission_tiers", ["test", "final_test"]) or [])
    from topo_models.predictive import load_checkpoint

    model = load_checkpoint(cfg.checkpoint, map_location="cpu")
    loaders = predictive_loaders(
        data, list(dict.fromkeys([tier, *submission_tiers])), cfg.get("checkpoint")
    )

    output_dir = Path(output_dir)
    neurons = neuron_table(model, loaders, tier, device, threshold)
    sessions = session_table(neurons, threshold)
    _, sessions_path = write_tables(neurons, sessions, output_dir)
    for data_key in dict.fromkeys(neurons.data_key):
        write_figure(
            plot_rf_positions(neurons, data_key),
            output_dir / "figures" / f"rf_positions_{data_key}.png",
        )
    write_figure(plot_correlation_histograms(neurons), output_dir / "figures" / "correlation.png")
    _truth_figures(model, loaders[tier], neurons, output_dir / "figures")
    for submission_tier in submission_tiers:
        for data_key, loader in loaders.get(submission_tier, {}).items():
            path = write_submission(
                model,
                loader,
                output_dir / "submissions" / data_key,
                data_key,
                submission_tier,
                device,
            )
            log.info("submission %s", path)
    pooled = sessions.iloc[-1]
    if "oracle_correlation" in pooled and pd.notna(pooled.oracle_correlation):
        log.info(
            "%s against the simulator's truth: correlation %.3f of the true rates' %.3f (%.0f %%), "
            "FEVE with the true noise %.3f (competition's %.3f), RF r x %.2f y %.2f",
            tier,
            pooled.correlation,
            pooled.oracle_correlation,
            100 * pooled.correlation_fraction_of_oracle,
            pooled.feve_true_noise,
            pooled.feve_competition,
            pooled.rf_r_x,
            pooled.rf_r_y,
        )
    log.info(
        "%s: %d neurons, correlation %.3f, correlation to average %.3f, FEVE %.3f → %s",
        tier,
        pooled.n_neurons,
        pooled.correlation,
        pooled.correlation_to_average,
        pooled.feve,
        output_dir,
    )
    return sessions_path


def _truth_figures(
    model: object, loaders: Mapping[str, Loader], neurons: pd.DataFrame, folder: Path
) -> None:
    """RF recovery, oracle and (with a shifter) shift recovery figures of every session that
    carries the simulator's truth."""
    for data_key, loader in loaders.items():
        truth = session_truth(loader.dataset)
        if truth is None:
            continue
        write_figure(plot_rf_recovery(neurons, data_key), folder / f"rf_recovery_{data_key}.png")
        write_figure(plot_oracle(neurons, data_key), folder / f"oracle_{data_key}.png")
        shifts = shift_recovery(model, loader, data_key, truth)
        if shifts is not None:
            write_figure(
                plot_shift_recovery(*shifts, data_key), folder / f"shift_recovery_{data_key}.png"
            )
