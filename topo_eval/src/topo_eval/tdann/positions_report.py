"""``task=positions``: what a position set looks like, layer by layer, before any training.

For every layer of a directory of ``<layer>.npz`` files it measures the sheet (extent), the
stored neighbourhood table (P rows of Q units, and whether each row fits one window of the
stored width), a survey of fresh windows dropped as TDANN drops them (units per window, empty
windows, the fraction TDANN's 5th-percentile trim would keep, against the count a uniform
density would give), the density along the sheet's edges, and retinotopy (Pearson correlation
of a unit's feature-map column with x and row with y). See docs/tdann.md, "Inspecting a
position set".
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from topo_eval.figure_files import write_figure  # noqa: E402
from topo_eval.model_loading import positions_beside
from topo_models import TopoError  # noqa: E402
from topo_models.atomic import atomic_write_bytes  # noqa: E402
from topo_models.positions import LayerPositions, NetworkPositions, layer_dims  # noqa: E402

log = logging.getLogger("topo_eval")
TABLE = "positions.csv"
SPARSE_BELOW = 0.1  # an edge bin is sparse below this fraction of the sheet's mean density
MARGIN_BINS = 100  # bins per axis of the sparse-margin profile
TRIM_MIN, TRIM_MAX = 25, 500  # TDANN's collapse_and_trim_neighborhoods bounds


def resolve_positions(
    positions: str | Path | None, checkpoint: str | Path | None
) -> tuple[NetworkPositions, str]:
    """The position set to report on and where it came from: ``positions`` if given, else the
    ``positions/`` beside ``checkpoint``. With a checkpoint, every layer must match the model's
    features at its trained input size (same layers, same dims)."""
    if positions is None and checkpoint is None:
        raise TopoError(
            "nothing to report on",
            field="positions",
            expected="positions=<dir of <layer>.npz> or checkpoint=<model.pt> with positions/ "
            "beside it",
        )
    if positions is None:
        positions = positions_beside(checkpoint)  # type: ignore[arg-type]
    found = NetworkPositions.load(positions)
    if checkpoint is not None:
        from topo_eval.model_loading import load_trained_model
        from topo_eval.tdann.task import trained_input_size

        if not Path(checkpoint).is_file():
            raise TopoError("checkpoint not found", file=checkpoint, field="checkpoint")
        model = load_trained_model(checkpoint)
        shapes = layer_dims(model, trained_input_size(Path(checkpoint)))
        extra = [name for name in found if name not in shapes]
        if extra:
            raise TopoError(
                "positions have layers the model does not",
                file=positions,
                field=extra[0],
                expected=f"layers {list(shapes)}",
                found=f"layers {list(found)}",
            )
        found.check_dims(shapes, positions)
    return found, str(positions)


def window_counts(
    coordinates: np.ndarray, width_mm: float, n_windows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units inside ``n_windows`` square windows of side ``width_mm``, dropped as TDANN drops
    them (centres uniform in [min + r, max - r] per axis, r clamped to half the extent).

    Returns ``(counts (n_windows,), centres (n_windows, 2), half widths (2,))``; a unit on a
    window's border counts as inside (to a relative 1e-9, so rounding of the centre cannot drop
    the units on the edge of a window as wide as the sheet).
    """
    coords = np.asarray(coordinates, dtype=np.float64)
    low, high = coords.min(axis=0), coords.max(axis=0)
    half = np.minimum(width_mm / 2.0, (high - low) / 2.0)
    centres = rng.uniform(low + half, high - half, size=(n_windows, 2))
    scale = np.where(half > 0, half, 1.0)  # a window is then the Chebyshev ball of radius 1
    tree = cKDTree(coords / scale)
    counts = tree.query_ball_point(centres / scale, r=1.0 + 1e-9, p=np.inf, return_length=True)
    return np.asarray(counts, dtype=np.int64), centres, half


def neighborhood_spans(layer: LayerPositions) -> np.ndarray:
    """(P,) mm: the larger of x and y extents of each stored neighbourhood's units; a row
    drawn from one window of the stored width spans at most that width."""
    spans = np.zeros(len(layer.neighborhood_indices), dtype=np.float64)
    for axis in (0, 1):  # one axis at a time: a (P, Q) gather instead of (P, Q, 2)
        values = layer.coordinates[:, axis][layer.neighborhood_indices]
        spans = np.maximum(spans, values.max(axis=1) - values.min(axis=1))
    return spans


def retinotopy(dims: tuple[int, ...], coordinates: np.ndarray) -> tuple[float, float]:
    """Pearson r of each unit's feature-map column with x and row with y (flat order C, H, W);
    NaN for layers without an (H, W) map or an axis of one position."""
    if len(dims) != 3:
        return float("nan"), float("nan")
    _, height, width = dims
    flat = np.arange(len(coordinates))
    column, row = flat % width, (flat // width) % height
    return _pearson(column, coordinates[:, 0]), _pearson(row, coordinates[:, 1])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.astype(np.float64).mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 0 else float("nan")


def edge_density(coordinates: np.ndarray, edge_fraction: float) -> float:
    """Density of units in the band within ``edge_fraction`` of a side from any edge of the
    sheet (the bounding box), over the sheet's mean density: 1 for a uniform sheet, 0 for an
    empty border."""
    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    extent = high - low
    band = edge_fraction * extent
    inner = ((coordinates > low + band) & (coordinates < high - band)).all(axis=1)
    band_area = 1.0 - float(np.prod(np.maximum(1.0 - 2.0 * edge_fraction, 0.0) * (extent > 0)))
    if band_area <= 0:
        return float("nan")
    return float((~inner).mean() / band_area)


def sparse_margin(coordinates: np.ndarray) -> float:
    """Fraction of the sheet's side, inward from an edge, over which the density along that
    axis stays below ``SPARSE_BELOW`` of its mean (mean of the four edges; 0 = dense to the
    border). Measured on ``MARGIN_BINS`` bins of each axis's marginal histogram."""
    margins = []
    for axis in (0, 1):
        values = coordinates[:, axis]
        if np.ptp(values) == 0:
            continue
        counts = np.histogram(values, bins=MARGIN_BINS, range=(values.min(), values.max()))[0]
        dense = counts >= SPARSE_BELOW * len(values) / MARGIN_BINS
        margins += [np.argmax(dense), np.argmax(dense[::-1])]
    return float(np.mean(margins) / MARGIN_BINS) if margins else float("nan")


def layer_statistics(
    layer: LayerPositions, n_windows: int, edge_fraction: float, rng: np.random.Generator
) -> tuple[list[tuple[str, float, str]], np.ndarray]:
    """``[(statistic, value, unit), …]`` of one layer, and its window survey's counts."""
    coords = np.asarray(layer.coordinates, dtype=np.float64)
    extent = np.ptp(coords, axis=0)
    width = layer.neighborhood_width
    rows_p, rows_q = layer.neighborhood_indices.shape
    in_width = float(np.mean(neighborhood_spans(layer) <= width * (1 + 1e-6)))
    counts, _, half = window_counts(coords, width, n_windows, rng)
    p5 = float(np.percentile(counts, 5))
    trimmed = max(int(min(max(p5, TRIM_MIN), TRIM_MAX, len(coords))), 2)
    area = float(np.prod(extent))
    uniform = len(coords) * float(np.prod(2 * half)) / area if area > 0 else float("nan")
    r_x, r_y = retinotopy(layer.dims, coords)
    stats = [
        ("units", len(coords), "units"),
        ("extent_x", float(extent[0]), "mm"),
        ("extent_y", float(extent[1]), "mm"),
        ("neighborhood_width", width, "mm"),
        ("neighborhoods", rows_p, "rows"),
        ("neighborhood_units", rows_q, "units"),
        ("neighborhoods_in_width", in_width, "fraction"),
        ("windows", n_windows, "windows"),
        ("window_units_min", int(counts.min()), "units"),
        ("window_units_p5", p5, "units"),
        ("window_units_median", float(np.median(counts)), "units"),
        ("window_units_max", int(counts.max()), "units"),
        ("window_units_uniform", uniform, "units"),
        ("windows_empty", float(np.mean(counts == 0)), "fraction"),
        ("windows_kept", float(np.mean(counts >= trimmed)), "fraction"),
        ("edge_density", edge_density(coords, edge_fraction), "ratio"),
        ("sparse_margin", sparse_margin(coords), "fraction"),
        ("retinotopy_x", r_x, "r"),
        ("retinotopy_y", r_y, "r"),
    ]
    return [(name, float(value), unit) for name, value, unit in stats], counts


def positions_table(
    positions: NetworkPositions, n_windows: int = 20000, edge_fraction: float = 0.1, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row per layer × statistic (columns layer, statistic, value, unit, scale), and each
    layer's window-survey counts. Each layer's windows come from its own stream (seed, index)."""
    if isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows < 1:
        raise TopoError(
            "bad window count", field="windows", expected="an int >= 1", found=n_windows
        )
    if not 0 < edge_fraction < 0.5:
        raise TopoError(
            "bad edge band", field="edge_fraction", expected="in (0, 0.5)", found=edge_fraction
        )
    rows, counts = [], {}
    for index, (name, layer) in enumerate(positions.items()):
        stats, counts[name] = layer_statistics(
            layer, n_windows, edge_fraction, np.random.default_rng([seed, index])
        )
        rows += [(name, stat, value, unit) for stat, value, unit in stats]
    table = pd.DataFrame(rows, columns=["layer", "statistic", "value", "unit"])
    table["scale"] = positions.scale or "unlabelled"
    return table, counts


def plot_layer_positions(
    layer: LayerPositions, stats: pd.Series, counts: np.ndarray, scale: str | None
) -> plt.Figure:
    """Three panels: unit density on the sheet (relative to the mean; one window drawn for
    size), the units-per-window histogram, and the retinotopy scatter (map index against mm)."""
    coords = np.asarray(layer.coordinates, dtype=np.float64)
    figure, (sheet, histogram, scatter) = plt.subplots(1, 3, figsize=(15, 4.6))
    bins = int(np.clip(np.sqrt(len(coords) / 20), 5, 60))  # about 20 units per bin on average
    density, x_edges, y_edges = np.histogram2d(coords[:, 0], coords[:, 1], bins=bins)
    image = sheet.imshow(
        density.T / density.mean(),
        extent=(x_edges[0], x_edges[-1], y_edges[-1], y_edges[0]),  # y grows downwards
        cmap="magma",
        vmin=0,
        vmax=2,
    )
    width = layer.neighborhood_width
    sheet.add_patch(plt.Rectangle((x_edges[0], y_edges[0]), width, width, fill=False, color="c"))
    figure.colorbar(image, ax=sheet, label="units / mean density")
    sheet.set(xlabel="x (mm)", ylabel="y (mm)", title=f"density (cyan: one {width:.3g} mm window)")
    histogram.hist(counts, bins=min(60, max(int(counts.max()) + 1, 2)), color="0.5")
    for key, style, label in (
        ("neighborhood_units", "--", "stored Q"),
        ("window_units_uniform", ":", "uniform density"),
    ):
        histogram.axvline(stats[key], color="k", linestyle=style, label=f"{label} {stats[key]:.0f}")
    histogram.legend()
    histogram.set(
        xlabel="units per window",
        ylabel="windows",
        title=f"{stats['windows_empty']:.1%} empty, {stats['windows_kept']:.1%} kept by the trim",
    )
    sample = np.random.default_rng(0).permutation(len(coords))[:4000]
    if len(layer.dims) == 3:
        _, height, columns = layer.dims
        offset = np.random.default_rng(1).uniform(-0.3, 0.3, size=(len(sample), 2))
        scatter.scatter(sample % columns + offset[:, 0], coords[sample, 0], s=2, label="column, x")
        rows = (sample // columns) % height + offset[:, 1]
        scatter.scatter(rows, coords[sample, 1], s=2, label="row, y")
        scatter.legend(markerscale=5)
        scatter.set(
            xlabel="feature-map index",
            ylabel="mm",
            title=f"retinotopy r_x {stats['retinotopy_x']:.3f}, r_y {stats['retinotopy_y']:.3f}",
        )
    else:
        scatter.text(
            0.5, 0.5, "no feature map (1-D layer)", ha="center", transform=scatter.transAxes
        )
        scatter.set_axis_off()
    figure.suptitle(
        f"{layer.name}: {len(coords)} units, dims {layer.dims}, {scale or 'unlabelled'} scale, "
        f"{stats['neighborhoods']:.0f} neighbourhoods of {stats['neighborhood_units']:.0f}"
    )
    figure.tight_layout()
    return figure


def run_positions(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """``python -m topo_eval task=positions positions=<dir> | checkpoint=<model.pt>``:
    positions.csv and figures/<layer>.png; metrics: each layer's fraction of empty windows."""
    given = {
        key: OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        for key in ("positions", "checkpoint")
    }
    positions, source = resolve_positions(given["positions"], given["checkpoint"])
    task = cfg.task
    table, counts = positions_table(positions, task.windows, task.edge_fraction, task.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, layer in positions.items():
        stats = table[table.layer == name].set_index("statistic").value
        figure = plot_layer_positions(layer, stats, counts[name], positions.scale)
        write_figure(figure, output_dir / "figures" / f"{name}.png")
    csv_path = output_dir / TABLE
    atomic_write_bytes(table.to_csv(index=False).encode(), csv_path)
    log.info("statistics of %d layers of %s → %s", len(positions), source, output_dir)
    empty = table[table.statistic == "windows_empty"]
    return csv_path, {f"{row.layer}/windows_empty": row.value for row in empty.itertuples()}
