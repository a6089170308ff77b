"""``task=topography_sweep``: ``task=topography`` for every run of a training sweep, and its
metrics against the swept value (``sweep.csv``, figures, ``index.html`` linking each run's own
report). One command from a finished sweep to the report:

    python -m topo_train -m loss.alpha=0,0.25,2.5
    python -m topo_eval task=topography_sweep sweep_dir=runs/sweeps/topo_train/loss.alpha-0+0.25+2.5

Each job's swept values come from its ``.hydra/overrides.yaml`` (the keys whose values differ
between jobs), read back from the config saved in its ``model.pt``; each run's responses are
cached in its own directory, so a second report costs no forward pass.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

from topo_eval.figure_files import write_figure
from topo_eval.topography.figures import plot_maps_side_by_side, plot_sweep_metrics
from topo_eval.topography.report_html import write_report
from topo_eval.topography.task import TopographyResult, staged_output, topography_report
from topo_models import TopoError
from topo_models.safe_load import read_torch_file

log = logging.getLogger("topo_eval")
TABLE = "sweep.csv"
HEADLINE = (
    "fraction_selective",
    "orientation_smoothness",
    "pinwheel_density",
    "wiring_length",
    "effective_dimensionality",
    "faces_smoothness",
)
MAX_PANELS = 12
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def sweep_runs(sweep: str, tracking_uri: str | None = None) -> dict[str, Path]:
    """``{run name: run directory}`` of every finished job (a ``model.pt``, no ``FAILED``) under
    a sweep directory, or of every child of an MLflow parent run (their ``run_dir`` param)."""
    root = Path(sweep)
    if root.is_dir():
        found = {
            _run_name(path.parent, root): path.parent
            for path in sorted(root.rglob("model.pt"))
            if not (path.parent / "FAILED").exists()
        }
    elif RUN_ID.match(str(sweep)) and tracking_uri:
        found = _mlflow_children(str(sweep), tracking_uri)
    else:
        raise TopoError(
            "no sweep here",
            field="sweep_dir",
            expected="a training sweep's directory, or the MLflow id of its parent run",
            found=sweep,
        )
    if not found:
        raise TopoError(
            "no finished training runs in the sweep",
            file=sweep,
            field="sweep_dir",
            expected="<job>/model.pt for each job",
        )
    return found


def _run_name(run_dir: Path, root: Path) -> str:
    """The run's folder relative to the sweep's; the folder's own name when it is the root."""
    relative = run_dir.relative_to(root)
    return root.name if relative == Path(".") else relative.as_posix()


def _mlflow_children(parent: str, tracking_uri: str) -> dict[str, Path]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    return {
        Path(run.data.params["run_dir"]).name: Path(run.data.params["run_dir"])
        for run in children
        if (Path(run.data.params.get("run_dir", "")) / "model.pt").is_file()
    }


def swept_values(runs: dict[str, Path]) -> pd.DataFrame:
    """One row per run: the values of the keys its sweep varied (keys of the jobs'
    ``.hydra/overrides.yaml`` with more than one value, as the saved configs hold them), plus
    ``loss.alpha`` when the runs have one."""
    overrides = {name: _overrides(path) for name, path in runs.items()}
    keys = sorted({key for found in overrides.values() for key in found})
    varied = [k for k in keys if len({found.get(k) for found in overrides.values()}) > 1]
    rows = []
    for name, path in runs.items():
        config = _saved_config(path / "model.pt")
        row = {"run": name}
        for key in [*varied, *([] if "loss.alpha" in varied else ["loss.alpha"])]:
            value = OmegaConf.select(config, key, default=overrides[name].get(key))
            row[key] = _number(value)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.dropna(axis=1, how="all")


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    lines = yaml.safe_load(path.read_text()) or []
    return {
        line.split("=", 1)[0].lstrip("+~"): line.split("=", 1)[1] for line in lines if "=" in line
    }


def _saved_config(checkpoint: Path) -> DictConfig:
    saved = read_torch_file(checkpoint)
    text = saved.get("config_yaml", "{}") if isinstance(saved, dict) else "{}"
    return OmegaConf.create(text or "{}")


def _number(value: object) -> object:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None if value is None else str(value)


def _columns(result: TopographyResult) -> dict[str, float]:
    """``<layer>/<metric>`` and, where there is one, ``<layer>/<metric> chance``."""
    columns = {}
    for row in result.table.itertuples():
        columns[f"{row.layer}/{row.metric}"] = row.value
        if np.isfinite(row.chance):
            columns[f"{row.layer}/{row.metric} chance"] = row.chance
    return columns


def run_topography_sweep(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Every run's report in ``<output_dir>/<run>/``; ``sweep.csv`` and the sweep's figures."""
    runs = sweep_runs(cfg.get("sweep_dir"), cfg.tracking.tracking_uri)
    values = swept_values(runs)
    keys = [column for column in values.columns if column != "run"]
    numeric = [k for k in keys if pd.api.types.is_numeric_dtype(values[k])]
    x = numeric[0] if numeric else None
    log.info("topography of %d runs (swept: %s)", len(runs), ", ".join(keys) or "nothing")
    with staged_output(output_dir, TABLE) as staging:
        rows, maps = [], []
        for index, (name, run_dir) in enumerate(runs.items()):
            log.info("run %d/%d: %s", index + 1, len(runs), name)
            result = topography_report(
                run_dir / "model.pt",
                cfg.topography,
                staging / name,
                None,
                cfg.get("device", "cpu"),
            )
            rows.append(_columns(result))
            if result.orientation_map is not None:
                label = name if x is None else f"{x} = {values[x].iloc[index]:g}"
                maps.append((float(values[x].iloc[index]) if x else index, label, result))
        table = pd.concat([values, pd.DataFrame(rows)], axis=1)
        figures = _sweep_figures(table, x, maps, staging / "figures")
        links = [(f"{name}/index.html", f"{name}: its own report") for name in runs]
        notes = [f"sweep: {cfg.get('sweep_dir')}", f"swept: {', '.join(keys) or 'nothing'}"]
        write_report(staging / "index.html", "Topography of a sweep", table, figures, notes, links)
        table.to_csv(staging / TABLE, index=False)
    metrics = {
        f"{run}/{column}": float(value)
        for run, row in zip(runs, rows, strict=True)
        for column, value in row.items()
        if column.split("/")[-1].startswith(HEADLINE) and np.isfinite(value)
    }
    return Path(output_dir) / TABLE, metrics


def _sweep_figures(
    table: pd.DataFrame, x: str | None, maps: list, folder: Path
) -> list[tuple[str, str]]:
    """Headline metrics against the swept value; one orientation map per run."""
    figures = []
    if x is not None:
        metrics = [
            column
            for column in table.columns
            if "/" in column
            and not column.endswith(" chance")
            and column.split("/")[-1].startswith(HEADLINE)
        ][:MAX_PANELS]
        if metrics:
            write_figure(plot_sweep_metrics(table, x, metrics), folder / "metrics.png")
            figures.append(("figures/metrics.png", f"headline metrics against {x}"))
    if maps:
        maps.sort(key=lambda item: item[0])
        shown = [(label, *result.orientation_map) for _, label, result in maps]
        units = maps[0][2].units
        write_figure(plot_maps_side_by_side(shown, units), folder / "orientation_maps.png")
        figures.append(("figures/orientation_maps.png", "smoothed orientation map of each run"))
    return figures
