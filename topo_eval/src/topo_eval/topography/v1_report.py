"""V1 analyses of a layer's responses to sine gratings: tuning, preference maps, smoothness
against chance, and pinwheels against macaque's density (TDANN's V1 figures)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from topo_eval.topography import figures
from topo_eval.topography.maps import smoothed_map
from topo_eval.topography.pinwheels import MACAQUE_PINWHEEL_DENSITY, find_pinwheels
from topo_eval.topography.report_table import Report, Sheet, map_extent, mean_smoothness
from topo_eval.topography.smoothness import (
    difference_over_distance,
    max_distance,
    top_quartile_mask,
)
from topo_eval.topography.tuning import v1_tuning

log = logging.getLogger("topo_eval")


def v1_analysis(
    report: Report,
    layer: str,
    responses: np.ndarray,
    metadata: pd.DataFrame,
    sheet: Sheet,
    *,
    hypercolumn_mm: float,
    map_width_mm: float,
    map_stride_mm: float,
    pinwheel_width_mm: float,
    pinwheel_stride_mm: float,
    pinwheel_threshold: float,
    pinwheel_max_spread: float,
    n_samples: int,
    sample_size: int,
    seed: int,
) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """Tuning to gratings, preference maps, smoothness against chance, pinwheels against
    macaque's pi. Returns the smoothed orientation map (values, extent) for sweeps."""
    tuning = v1_tuning(responses, metadata)
    report.row(layer, "v1", "fraction_selective", tuning.fraction_selective, None)
    report.row(layer, "v1", "responsive_units", tuning.responsive.sum(), None)
    coords, scale = sheet.coords, sheet.per_mm
    report.figure(
        f"{layer}_preferences.png",
        figures.plot_preference_maps(
            coords,
            tuning.orientation_deg,
            tuning.sf,
            tuning.colour,
            tuning.responsive,
            layer,
            sheet.units,
        ),
        f"{layer}: preferred orientation (selective units), spatial frequency and colour",
    )
    strong = top_quartile_mask(tuning.peak_to_peak) & np.isfinite(tuning.orientation_deg)
    properties = {
        "orientation": (tuning.orientation_deg, 180.0),
        "sf": (tuning.sf, None),
        "colour": ((tuning.colour == tuning.colours[-1]).astype(float), None),
    }
    curves = {}
    if strong.sum() >= 2:
        for name, (values, period) in properties.items():
            curves[name] = difference_over_distance(
                coords[strong],
                np.asarray(values, float)[strong],
                max_distance(hypercolumn_mm) * scale,
                period=period,
                n_samples=n_samples,
                sample_size=sample_size,
                seed=seed,
            )
            value, chance = mean_smoothness(curves[name])
            report.row(layer, "v1", f"{name}_smoothness", value, sheet, chance=chance)
        report.figure(
            f"{layer}_smoothness.png",
            figures.plot_distance_curves(
                curves,
                f"{layer}: preference difference vs distance (top-quartile units)",
                "|Δ preference| / chance",
                sheet.units,
            ),
            f"{layer}: how preferences differ with distance, over the shuffled-position chance",
        )
    tuned = np.isfinite(tuning.orientation_deg) & tuning.responsive
    if tuned.sum() < 3:
        log.info("%s: fewer than 3 responsive units; no orientation map", layer)
        return None
    display = smoothed_map(
        coords[tuned],
        tuning.orientation_deg[tuned],
        map_width_mm * scale,
        map_stride_mm * scale,
        period=180.0,
    )
    marks = _pinwheels(
        report,
        layer,
        coords[tuned],
        tuning.orientation_deg[tuned],
        sheet,
        hypercolumn_mm,
        pinwheel_width_mm,
        pinwheel_stride_mm,
        pinwheel_threshold,
        pinwheel_max_spread,
    )
    extent = map_extent(display)
    report.figure(
        f"{layer}_orientation_map.png",
        figures.plot_orientation_map(
            display.values,
            extent,
            marks,
            f"{layer}: smoothed orientation map, pinwheels (white +, black −)",
            sheet.units,
        ),
        f"{layer}: orientation preference smoothed over {map_width_mm:g} mm windows "
        f"(human scale) with the pinwheels counted",
    )
    return display.values, extent


def _pinwheels(
    report: Report,
    layer: str,
    coords: np.ndarray,
    orientation: np.ndarray,
    sheet: Sheet,
    hypercolumn_mm: float,
    width_mm: float,
    stride_mm: float,
    threshold: float,
    max_spread: float,
) -> np.ndarray | None:
    """Pinwheel count and density per hypercolumn area; their (x, y, sign) for the figure."""
    scale = sheet.per_mm
    if np.ptp(coords, axis=0).min() < 3 * stride_mm * scale:
        log.info("%s: sheet too small for a pinwheel grid", layer)
        return None
    found = find_pinwheels(
        coords,
        orientation,
        hypercolumn_mm=hypercolumn_mm * scale,
        width_mm=width_mm * scale,
        stride_mm=stride_mm * scale,
        max_spread=max_spread,
        threshold=threshold,
    )
    report.row(layer, "v1", "pinwheels", found.n_positive + found.n_negative, sheet)
    report.row(
        layer, "v1", "pinwheel_density", found.density, sheet, reference=MACAQUE_PINWHEEL_DENSITY
    )
    with np.errstate(invalid="ignore"):
        keep = (np.abs(found.winding) > threshold) & (found.map.spread[1:-1, 1:-1] < max_spread)
    rows, cols = np.nonzero(keep)
    return np.column_stack(
        [
            found.map.x_centres[cols + 1],
            found.map.y_centres[rows + 1],
            np.sign(found.winding[rows, cols]),
        ]
    )
