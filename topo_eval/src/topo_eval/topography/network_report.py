"""Analyses of any layers with positions: wiring length between two sheets, dimensionality of
the responses, and response correlation against distance on the sheet."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from topo_eval.topography import figures
from topo_eval.topography.correlation import correlation_vs_distance
from topo_eval.topography.dimensionality import (
    effective_dimensionality,
    pca_eigenvalues,
    power_law_exponent,
)
from topo_eval.topography.report_table import Report, Sheet, nanmean
from topo_eval.topography.wiring import active_mask, wiring_length

HUMAN_VTC_DIMENSIONALITY = 16.7  # mean of TDANN's 16 human VTC hemispheres (NSD)


def wiring_analysis(
    report: Report,
    source: str,
    target: str,
    responses: Mapping[str, np.ndarray],
    sheets: Mapping[str, Sheet],
    *,
    fibre_radius_mm: float,
    active_percentile: float,
    window_mm: float | None,
    windows: int,
    patterns: int,
    seed: int,
) -> None:
    """Mean wiring length of ``patterns`` activity patterns from ``source`` to ``target``,
    over the whole sheet or (``window_mm``, TDANN's V1) over ``windows`` random square windows
    holding the units of both sheets that fall in them."""
    first, second = responses[source], responses[target]
    chosen = np.linspace(0, len(first) - 1, min(patterns, len(first))).round().astype(int)
    source_active = active_mask(first[chosen], active_percentile)
    target_active = active_mask(second[chosen], active_percentile)
    scale = sheets[source].per_mm
    here, there = sheets[source].coords, sheets[target].coords
    if window_mm is None:
        boxes = [(None, None)]
    else:
        side = window_mm * scale
        low, high = here.min(axis=0), np.maximum(here.max(axis=0) - side, here.min(axis=0))
        corners = np.random.default_rng(seed).uniform(low, high, (windows, 2))
        boxes = [(corner, corner + side) for corner in corners]
    lengths = []
    for lower, upper in boxes:  # a few windows × patterns, each a handful of KMeans fits
        inside_s = _inside(here, lower, upper)
        inside_t = _inside(there, lower, upper)
        if inside_s.sum() < 2 or inside_t.sum() < 2:
            continue
        lengths += [
            wiring_length(
                here[inside_s],
                a[inside_s],
                there[inside_t],
                b[inside_t],
                fibre_radius_mm=fibre_radius_mm * scale,
                seed=seed,
            )
            for a, b in zip(source_active, target_active, strict=True)
        ]
    value = np.mean(lengths) if lengths else np.nan
    report.row(target, "wiring", f"wiring_length_from_{source}", value, sheets[source])


def _inside(coords: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None) -> np.ndarray:
    if lower is None:
        return np.ones(len(coords), bool)
    return ((coords >= lower) & (coords <= upper)).all(axis=1)


def dimensionality_analysis(
    report: Report,
    layers: Sequence[str],
    responses: Callable[[str], np.ndarray],
    shapes: Mapping[str, tuple[int, ...]],
    areas: Mapping[str, str],
    *,
    last_pc: int,
) -> None:
    """Effective dimensionality and power-law exponent of each layer's channel responses
    (max over space, as TDANN), and their spectra in one figure."""
    spectra = {}
    for layer in layers:
        found = responses(layer)
        channels = found.reshape(len(found), shapes[layer][0], -1).max(axis=2)
        spectra[layer] = pca_eigenvalues(channels)
        if not spectra[layer].sum() > 0:
            continue
        reference = HUMAN_VTC_DIMENSIONALITY if areas.get(layer) == "VTC" else None
        report.row(
            layer,
            "dimensionality",
            "effective_dimensionality",
            effective_dimensionality(spectra[layer]),
            None,
            reference=reference,
        )
        last = min(last_pc, int((spectra[layer] > 0).sum()))
        if last > 2:
            exponent = power_law_exponent(spectra[layer], 2, last)
            report.row(layer, "dimensionality", "power_law_exponent", exponent, None)
    if spectra:
        report.figure(
            "eigenspectra.png",
            figures.plot_eigenspectra(spectra),
            "PCA spectra of each layer's channel responses (max over space)",
        )


def correlation_analysis(
    report: Report,
    layers: Sequence[str],
    responses: Callable[[str], np.ndarray],
    sheets: Mapping[str, Sheet],
    *,
    max_fraction: float,
    n_samples: int,
    sample_size: int,
    seed: int,
) -> None:
    """Response correlation against distance for every layer (up to ``max_fraction`` of the
    sheet's extent): the generic check that near units respond alike."""
    curves = {}
    for layer in layers:
        sheet = sheets[layer]
        extent = float(np.ptp(sheet.coords, axis=0).max())
        if not extent > 0:
            continue
        found = correlation_vs_distance(
            responses(layer),
            sheet.coords,
            max_fraction * extent,
            n_samples=n_samples,
            sample_size=sample_size,
            seed=seed,
        )
        curves[layer] = found
        mean, chance = nanmean(found.curves, axis=0), nanmean(found.chance, axis=0)
        finite = np.flatnonzero(np.isfinite(mean))
        if len(finite):
            near, far = finite[0], finite[-1]
            report.row(
                layer, "correlation", "correlation_near", mean[near], sheet, chance=chance[near]
            )
            report.row(
                layer, "correlation", "correlation_far", mean[far], sheet, chance=chance[far]
            )
    if curves:
        report.figure(
            "correlation_vs_distance.png",
            figures.plot_distance_curves(
                curves,
                "response correlation vs distance",
                "correlation",
                ratio=False,
                units=next(iter(sheets.values())).units,
            ),
            "Mean response correlation of unit pairs against their distance (dashed: chance)",
        )
