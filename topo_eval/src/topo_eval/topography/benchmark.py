"""``task=regulariser_benchmark``: every run of the regulariser benchmark measured the same way.

The runs come from ``experiment=regulariser_benchmark`` (a Hydra sweep directory, an MLflow
parent run, or the DVC pipeline's run folder). Each is scored by the topography report on the
sheet its method shapes — TDANN's positions for the spatial correlation loss and the control,
the channel sheet of the regulariser, tiled over the map's output positions, for a weight
regulariser (``topo_models.positions.tile_channels``; the channel positions the run learned for
SpatialNetworks' costs) — and by its validation accuracy. Output:
``benchmark.csv`` (one row per run), the accuracy–topography Pareto plot, each headline metric
against strength per method, a grid of orientation maps (method × strength), ``index.html``.

The regularisers are rebuilt from each checkpoint's config only through :data:`REGULARISERS`
(plain data, no nested targets): a file never chooses what is called.
"""

from __future__ import annotations

import itertools
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
from topo_models.losses import ChannelSpatialCosts, NeighbourCosineLoss, TopoLoss, WiringCost
from topo_models.positions import NetworkPositions, tile_channels
from topo_models.rebuild import build_from_config
from topo_models.safe_load import read_torch_file
from topo_models.trained import load_trained_model

log = logging.getLogger("topo_eval")
TABLE = "benchmark.csv"
LEVELS = ("weak", "medium", "strong")
REGULARISERS = {
    "topo_models.losses.TopoLoss": TopoLoss,
    "topo_models.losses.WiringCost": WiringCost,
    "topo_models.losses.NeighbourCosineLoss": NeighbourCosineLoss,
    "topo_models.losses.ChannelSpatialCosts": ChannelSpatialCosts,
}
# The run's last checkpoint: it holds the objective's state, where regularisers keep what they
# learn (ChannelSpatialCosts' channel positions).
LAST_CHECKPOINT = "last.pt"
# Per layer, averaged over the layers that have it: the benchmark's headline columns.
HEADLINE = {
    "correlation_near": "response correlation of the nearest unit pairs",
    "orientation_smoothness": "orientation-preference smoothness (V1 layer)",
    "pinwheel_density": "pinwheels per column² (V1 layer)",
    "effective_dimensionality": "effective dimensionality",
}
TOPOGRAPHY = "correlation_near above chance"
OVER_CONTROL = "topography over control"  # the Pareto plot's y


def run_regulariser_benchmark(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Every run's topography report in ``<output_dir>/<run>/``; ``benchmark.csv`` and figures.

    The control is scored on every sheet a method of the grid shapes, too: a ResNet's units
    correlate with their neighbours on any retinotopic sheet, so a method's topography is its
    excess over the control on the same sheet (``topography over control``)."""
    runs = benchmark_runs(cfg.get("sweep_dir"), cfg.tracking.tracking_uri)
    log.info("regulariser benchmark: %d runs", len(runs))
    device = cfg.get("device", "cpu")
    with staged_output(output_dir, TABLE) as staging:
        rows, maps, sheets, controls = [], {}, {}, []
        made: dict[str, Path] = {}  # the tiled sheets written so far, by layout
        for index, (name, run_dir) in enumerate(runs.items()):
            log.info("run %d/%d: %s", index + 1, len(runs), name)
            checkpoint = run_dir / "model.pt"
            row = {"run": name, **benchmark_settings(checkpoint)}
            row["accuracy"] = validation_accuracy(run_dir)
            positions = method_positions(checkpoint, staging / "sheets", row["method"], made)
            row["sheet"] = "tdann" if positions is None else positions.name
            if positions is not None:
                sheets.setdefault(row["sheet"], positions)
            if row["method"] == "none":
                controls.append((name, checkpoint, row))
            given = None if positions is None else str(positions)
            result = topography_report(checkpoint, cfg.topography, staging / name, given, device)
            rows.append({**row, **headline_columns(result.table)})
            if result.orientation_map is not None:
                column = "control" if row["method"] == "none" else row["level"]
                maps[name] = (row["sheet"], column, *result.orientation_map, result.units)
        for (name, checkpoint, row), (method, positions) in itertools.product(
            controls, sheets.items()
        ):
            log.info("control %s on the %s sheet", name, method)
            scored = f"{name} on the {method} sheet"
            result = topography_report(
                checkpoint, cfg.topography, staging / scored, str(positions), device
            )
            rows.append({**row, "run": scored, "sheet": method, **headline_columns(result.table)})
            if result.orientation_map is not None:
                maps[scored] = (method, "control", *result.orientation_map, result.units)
        table = over_control(pd.DataFrame(rows)).sort_values(
            ["sheet", "method", "strength"], kind="stable"
        )
        figures = benchmark_figures(table, maps, staging / "figures")
        links = [(f"{name}/index.html", f"{name}: its own report") for name in table.run]
        notes = [
            f"runs: {cfg.get('sweep_dir')}",
            "accuracy: validation accuracy at the run's last validation",
            f"{TOPOGRAPHY}: per layer, averaged over the layers with positions",
            f"{OVER_CONTROL}: {TOPOGRAPHY} less the control's on the same sheet",
            "sheet: TDANN's positions for tdann and the control; a weight regulariser's channel "
            "sheet (for spatial_costs, the positions each run learned), tiled over each map's "
            "output positions, for the others (the control is "
            "scored on each of them too)",
        ]
        write_report(staging / "index.html", "Regulariser benchmark", table, figures, notes, links)
        table.to_csv(staging / TABLE, index=False)
    metrics = {
        f"{row['run']}/{column}": float(row[column])
        for row in table.to_dict("records")
        for column in ("accuracy", TOPOGRAPHY, OVER_CONTROL, *HEADLINE)
        if np.isfinite(row[column])
    }
    return Path(output_dir) / TABLE, metrics


def over_control(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``topography over control``: each row's score less the mean score of the
    control rows on its sheet (NaN where the grid has no control)."""
    control = table[table.method == "none"].groupby("sheet")[TOPOGRAPHY].mean()
    table = table.copy()
    table[OVER_CONTROL] = table[TOPOGRAPHY] - table.sheet.map(control)
    return table


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


def method_positions(
    checkpoint: Path, root: Path, method: str, made: dict[str, Path]
) -> Path | None:
    """The sheet a run's weight regularisers shape, written once per layout under ``root``
    (``<method>/``, or ``<run>/`` for positions the run learned; None when the run has none:
    its own positions are the ones its loss used).

    Each feature layer with positions whose name prefixes a regularised module (``layer2.0`` ←
    ``layer2.0.conv2``; the last such module with the layer's channel count) takes that
    module's channel positions, tiled over the layer's map. A fixed layout depends on which
    layers are regularised and how, not on their weights, so the runs of one method share it;
    learned channel positions are read from the run's last checkpoint, one sheet per run."""
    config = _saved_config(checkpoint)
    entries = OmegaConf.select(config, "loss.regularisers", default=None) or []
    entries = OmegaConf.to_container(entries, resolve=True) if entries else []
    if not entries:
        return None
    regularisers = [
        build_from_config(entry, REGULARISERS, file=checkpoint, field=f"loss.regularisers[{i}]")
        for i, entry in enumerate(entries)
    ]
    learned = any(isinstance(r, ChannelSpatialCosts) for r in regularisers)
    layout = json.dumps(
        [{**entry, "layer_weights": sorted(entry.get("layer_weights") or {})} for entry in entries],
        sort_keys=True,
        default=str,
    ) + (str(checkpoint) if learned else "")
    if layout in made:
        return made[layout]
    name = checkpoint.parent.name if learned else method
    folder = root / (name if not (root / name).exists() else f"{name}-{len(made)}")
    model = load_trained_model(checkpoint)
    if learned:
        objective = read_torch_file(checkpoint.parent / LAST_CHECKPOINT)["objective"]
        for index, regulariser in enumerate(regularisers):
            prefix = f"regularisers.{index}."
            regulariser.load_state_dict(
                {k[len(prefix) :]: v for k, v in objective.items() if k.startswith(prefix)}
            )
    channels: dict[str, np.ndarray] = {}
    for regulariser in regularisers:
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
    made[layout] = folder
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
    plotted = table[(table.method != "none") | (table.sheet == "tdann")]  # the control once
    y = OVER_CONTROL if plotted[OVER_CONTROL].notna().any() else TOPOGRAPHY
    write_figure(plot_pareto(plotted, "accuracy", y), folder / "pareto.png")
    figures.append(("figures/pareto.png", f"validation accuracy against {y}"))
    shown = [c for c in (OVER_CONTROL, "accuracy", *HEADLINE) if table[c].notna().any()]
    write_figure(plot_metrics_by_strength(plotted, shown), folder / "by_strength.png")
    figures.append(("figures/by_strength.png", "each metric against strength, per method"))
    if maps:
        write_figure(plot_map_grid(list(maps.values()), ("control", *LEVELS)), folder / "maps.png")
        figures.append(
            ("figures/maps.png", "smoothed orientation maps: sheet × strength, the control first")
        )
    return figures
