"""Category selectivity of a VTC-like layer: t maps, patches, selectivity smoothness and
co-localisation (TDANN's VTC figures, on a labelled image set such as fLoc)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from topo_eval.topography import figures
from topo_eval.topography.category import (
    colocalisation,
    find_patches,
    selectivity_maps,
    selectivity_smoothness,
)
from topo_eval.topography.report_table import Report, Sheet, mean_smoothness


def category_analysis(
    report: Report,
    layer: str,
    responses: np.ndarray,
    labels: Sequence[str],
    sheet: Sheet,
    *,
    patch_sigma_mm: float,
    patch_threshold: float,
    patch_min_area_mm2: float,
    patch_max_area_mm2: float,
    smoothness_max_mm: float,
    colocalisation_window_mm: float,
    colocalisation_t: float,
    n_samples: int,
    sample_size: int,
    seed: int,
) -> None:
    """t map per category, patches, selectivity smoothness and co-localisation. A unit that
    never varies has no t (0/0); it counts as unselective (t = 0)."""
    scale = sheet.per_mm
    categories, t_maps = selectivity_maps(responses, np.asarray(labels))
    t_maps = np.nan_to_num(t_maps, nan=0.0, posinf=0.0, neginf=0.0)
    mean_response = np.asarray(responses, np.float64).mean(axis=0)
    patches = {}
    curves = {}
    for name, t in zip(categories, t_maps, strict=True):
        patches[name] = find_patches(
            sheet.coords,
            t,
            sigma_mm=patch_sigma_mm * scale,
            threshold=patch_threshold,
            min_area_mm2=patch_min_area_mm2 * scale**2,
            max_area_mm2=patch_max_area_mm2 * scale**2,
            unit_radius_mm=1.0 * scale,
            alpha_per_mm=0.1 / scale,
            category=str(name),
        )
        report.row(layer, "category", f"{name}_patches", len(patches[name]), sheet)
        area = np.mean([p.area_mm2 for p in patches[name]]) if patches[name] else np.nan
        report.row(layer, "category", f"{name}_patch_area", area, sheet)
        report.row(layer, "category", f"{name}_selective_fraction", np.mean(t > 4.0), None)
        if (mean_response > 0.5).sum() >= 2:
            curves[str(name)] = selectivity_smoothness(
                sheet.coords,
                t,
                mean_response,
                max_dist_mm=smoothness_max_mm * scale,
                n_samples=n_samples,
                sample_size=sample_size,
                seed=seed,
            )
            value, chance = mean_smoothness(curves[str(name)])
            report.row(layer, "category", f"{name}_smoothness", value, sheet, chance=chance)
    names = [str(c) for c in categories]
    report.figure(
        f"{layer}_selectivity.png",
        figures.plot_selectivity_maps(sheet.coords, t_maps, names, patches, layer, sheet.units),
        f"{layer}: selectivity t of each category against the others, patch centres ×",
    )
    if curves:
        report.figure(
            f"{layer}_selectivity_smoothness.png",
            figures.plot_distance_curves(
                curves, f"{layer}: |Δt| vs distance", "|Δt| / chance", sheet.units
            ),
            f"{layer}: how selectivity differs with distance, over chance",
        )
    together = colocalisation(
        sheet.coords, t_maps, colocalisation_window_mm * scale, colocalisation_t
    )
    pairs = np.triu_indices(len(names), k=1)
    for i, j in zip(*pairs, strict=True):
        metric = f"colocalisation_{names[i]}_{names[j]}"
        report.row(layer, "category", metric, together[i, j], sheet)
    report.figure(
        f"{layer}_colocalisation.png",
        figures.plot_matrix(
            np.nan_to_num(together, nan=0.5), names, f"{layer}: co-localisation", "(1 + r) / 2"
        ),
        f"{layer}: how much the categories' selective units share windows "
        f"({colocalisation_window_mm:g} mm, human scale)",
    )
