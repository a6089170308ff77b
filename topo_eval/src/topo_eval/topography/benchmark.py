"""``task=regulariser_benchmark``: every run of the regulariser benchmark measured the same way.

The runs come from ``experiment=regulariser_benchmark`` (a Hydra sweep directory, an MLflow
parent run, or the DVC pipeline's run folder). Each is scored by the topography report on the
sheet its method shapes — TDANN's positions for the spatial correlation loss and the control,
the channel sheet of the regulariser, tiled over the map's output positions, for a weight
regulariser (``topo_models.positions.tile_channels``) — and by its validation accuracy. Output:
``benchmark.csv`` (one row per run), the accuracy–topography Pareto plot, each headline metric
against strength per method, a grid of orientation maps (method × strength), ``index.html``.

The regularisers are rebuilt from each checkpoint's config only through :data:`REGULARISERS`
(plain data, no nested targets): a file never chooses what is called.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from topo_eval.figure_files import write_figure
from topo_eval.topography.benchmark_figures import (
    plot_map_grid,
    plot_metrics_by_strength,
    plot_pareto,
)
from topo_eval.topography.report_html import write_report
from topo_eval.topography.sweep import _saved_config, sweep_runs
from topo_eval.topography.task import staged_output, topography_report
from topo_models import TopoError
from topo_models.losses import NeighbourCosineLoss, TopoLoss, WiringCost
from topo_models.positions import NetworkPositions, tile_channels
from topo_models.rebuild import build_from_config
from topo_models.trained import load_trained_model

log = logging.getLogger("topo_eval")
TABLE = "benchmark.csv"
LEVELS = ("weak", "medium", "strong")
REGULARISERS = {
    "topo_models.losses.TopoLoss": TopoLoss,
    "topo_models.losses.WiringCost": WiringCost,
    "topo_models.losses.NeighbourCosineLoss": NeighbourCosineLoss,
}
# Per layer, averaged over the layers that have it: the benchmark's headline columns.
HEADLINE = {
    "correlation_near": "response correlation of the nearest unit pairs",
    "orientation_smoothness": "orientation-preference smoothness (V1 layer)",
    "pinwheel_density": "pinwheels per column² (V1 layer)",
    "effective_dimensionality": "effective dimensionality",
}
TOPOGRAPHY = "correlation_near above chance"  # the Pareto plot's y


def run_regulariser_benchmark(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Every run's topography report in ``<output_dir>/<run>/``; ``benchmark.csv`` and figures."""
    runs = benchmark_runs(cfg.get("sweep_dir"), cfg.tracking.tracking_uri)
    log.info("regulariser benchmark: %d runs", len(runs))
    with staged_output(output_dir, TABLE) as staging:
        rows, maps = [], {}
        for index, (name, run_dir) in enumerate(runs.items()):
            log.info("run %d/%d: %s", index + 1, len(runs), name)
            checkpoint = run_dir / "model.pt"
            row = {"run": name, **benchmark_settings(checkpoint)}
            row["accuracy"] = validation_accuracy(run_dir)
            positions = method_positions(checkpoint, staging / name / "positions")
            result = topography_report(
                checkpoint,
                cfg.topography,
                staging / name,
                None if positions is None else str(positions),
                cfg.get("device", "cpu"),
            )
            row.update(headline_columns(result.table))
            rows.append(row)
            if result.orientation_map is not None:
                maps[name] = (row["method"], row["level"], *result.orientation_map, result.units)
        table = pd.DataFrame(rows).sort_values(["method", "strength"], kind="stable")
        figures = benchmark_figures(table, maps, staging / "figures")
        links = [(f"{name}/index.html", f"{name}: its own report") for name in runs]
        notes = [
            f"runs: {cfg.get('sweep_dir')}",
            "accuracy: validation accuracy at the run's last validation",
            f"{TOPOGRAPHY}: per layer, averaged over the layers with positions",
            "positions: TDANN's for tdann and the control; a weight regulariser's channel "
            "sheet, tiled over each map's output positions, for the others",
        ]
        write_report(staging / "index.html", "Regulariser benchmark", table, figures, notes, links)
        table.to_csv(staging / TABLE, index=False)
    metrics = {
        f"{row['run']}/{column}": float(row[column])
        for row in rows
        for column in ("accuracy", TOPOGRAPHY, *HEADLINE)
        if column in row and np.isfinite(row[column])
    }
    return Path(output_dir) / TABLE, metrics


def benchmark_runs(sources: object, tracking_uri: str | None) -> dict[str, Path]:
    """``{run name: run directory}`` of one sweep (a folder or an MLflow parent run id) or of
    several (a list: e.g. the sweep over methods and levels, and the control's run folder)."""
    listed = OmegaConf.to_container(sources) if OmegaConf.is_list(sources) else [sources]
    runs: dict[str, Path] = {}
    for source in listed:
        for name, run_dir in sweep_runs(source, tracking_uri).items():
            if name in runs and runs[name] != run_dir:
                raise TopoError(
                    "two runs of the benchmark have one name",
                    field="sweep_dir",
                    expected="run folders with different names",
                    found=f"{runs[name]} and {run_dir}",
                )
            runs[name] = run_dir
    return runs


def benchmark_settings(checkpoint: Path) -> dict[str, object]:
    """``method``, ``level`` and ``strength`` of a benchmark run, from its saved config."""
    config = _saved_config(checkpoint)
    method = OmegaConf.select(config, "benchmark.method", default=None)
    if method is None:
        raise TopoError(
            "not a run of the regulariser benchmark",
            file=checkpoint,
            field="benchmark.method",
            expected="a run of python -m topo_train experiment=regulariser_benchmark",
        )
    level = str(OmegaConf.select(config, "benchmark.level", default=""))
    strength = float(OmegaConf.select(config, "benchmark.strength", default=np.nan))
    return {"method": str(method), "level": level, "strength": strength}


def validation_accuracy(run_dir: Path) -> float:
    """``val/accuracy`` of the run's last validation (``metrics.jsonl``), NaN without one."""
    path = run_dir / "metrics.jsonl"
    found = np.nan
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            if isinstance(record, dict) and "val/accuracy" in record:
                found = float(record["val/accuracy"])
    return found


def method_positions(checkpoint: Path, folder: Path) -> Path | None:
    """The sheet a run's weight regularisers shape, written under ``folder`` (None when the run
    has none: its own positions are the ones its loss used).

    Each feature layer with positions whose name prefixes a regularised module (``layer2.0`` ←
    ``layer2.0.conv2``; the last such module with the layer's channel count) takes that
    module's channel positions, tiled over the layer's map."""
    config = _saved_config(checkpoint)
    entries = OmegaConf.select(config, "loss.regularisers", default=None) or []
    entries = OmegaConf.to_container(entries, resolve=True) if entries else []
    if not entries:
        return None
    model = load_trained_model(checkpoint)
    channels: dict[str, np.ndarray] = {}
    for index, entry in enumerate(entries):
        regulariser = build_from_config(
            entry, REGULARISERS, file=checkpoint, field=f"loss.regularisers[{index}]"
        )
        channels.update(regulariser.channel_positions(model))
    own = NetworkPositions.load(checkpoint.parent / "positions")
    layers = {}
    for name in own:
        layer = own[name]
        matching = [
            module
            for module, xy in channels.items()
            if module.startswith(f"{name}.") and len(layer.dims) == 3 and len(xy) == layer.dims[0]
        ]
        layers[name] = tile_channels(layer, channels[matching[-1]]) if matching else layer
    NetworkPositions(layers, scale=own.scale).save(folder)
    return folder


def headline_columns(table: pd.DataFrame) -> dict[str, float]:
    """Each headline metric averaged over layers, and the correlation's excess over chance."""
    columns = {}
    for metric in HEADLINE:
        rows = table[table.metric == metric]
        columns[metric] = float(rows.value.mean()) if len(rows) else np.nan
        if metric == "correlation_near" and len(rows):
            columns[TOPOGRAPHY] = float((rows.value - rows.chance).mean())
    columns.setdefault(TOPOGRAPHY, np.nan)
    return columns


def benchmark_figures(
    table: pd.DataFrame, maps: Mapping[str, tuple], folder: Path
) -> list[tuple[str, str]]:
    """The Pareto plot, metrics against strength, and the map grid (when maps were made)."""
    figures = []
    write_figure(plot_pareto(table, "accuracy", TOPOGRAPHY), folder / "pareto.png")
    figures.append(("figures/pareto.png", f"validation accuracy against {TOPOGRAPHY}"))
    shown = [c for c in (TOPOGRAPHY, "accuracy", *HEADLINE) if table[c].notna().any()]
    write_figure(plot_metrics_by_strength(table, shown), folder / "by_strength.png")
    figures.append(("figures/by_strength.png", "each metric against strength, per method"))
    if maps:
        write_figure(plot_map_grid(list(maps.values()), LEVELS), folder / "maps.png")
        figures.append(("figures/maps.png", "smoothed orientation maps: method × strength"))
    return figures
