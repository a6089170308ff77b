"""Benchmark of the V1 topography analyses (issue 17): one 100,000-unit layer on 640 gratings.

Synthetic responses (640 images × 100,000 units, float32) of a layer whose units sit on a
36.75 mm sheet with a planted orientation map (a sum of plane waves of a 3.5 mm period, so it
has pinwheels), von Mises orientation tuning of random sharpness, a preferred spatial
frequency and colour, and noise; the grating metadata is the real one of
``topo_data.images.sine_gratings()`` (TDANN's 640 gratings). No model is involved.

1. The full V1 analysis, timed against the budget of 60 s on 2 cores: ``v1_tuning`` (scaling,
   tuning curves, circular variance, vectorised von Mises fits), the display orientation map
   (1.5 / 0.15 mm), smoothness curves with chance for orientation, SF and colour (75th
   percentile peak-to-peak mask, 20 × 1,000 units, 9 bins) and pinwheels (1.5 / 0.45 mm).
2. ``preferred_orientation`` against TDANN's definition run as one ``scipy.optimize.curve_fit``
   per unit, on the first units of the layer (per-unit times extrapolated): the speed ratio
   (budget ≥ 50) and the largest angular disagreement (budget ≤ 0.5 deg).

Prints one line per measurement: ``name: value unit (ratio X.XX vs <baseline>)``.
Run: ``python benchmarks/topography_v1.py`` (about a minute on 2 cores, ~1.5 GB).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy.optimize import curve_fit
from scipy.special import i0

from topo_data.images import sine_gratings
from topo_eval.topography import (
    difference_over_distance,
    find_pinwheels,
    max_distance,
    preferred_orientation,
    smoothed_map,
    smoothness,
    top_quartile_mask,
    v1_tuning,
)

HYPERCOLUMN_MM = 3.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--sheet-mm", type=float, default=36.75)
    parser.add_argument("--reference-units", type=int, default=300, help="curve_fit loop size")
    parser.add_argument("--budget-s", type=float, default=60.0, help="full analysis budget")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def planted_layer(args: argparse.Namespace, metadata) -> tuple[np.ndarray, np.ndarray, dict]:
    """Coordinates (units, 2) mm, responses (640, units) float32 and the planted preferences."""
    rng = np.random.default_rng(args.seed)
    coords = rng.uniform(0, args.sheet_mm, (args.units, 2))
    angles = rng.uniform(0, 2 * np.pi, 24)
    waves = 2 * np.pi / HYPERCOLUMN_MM * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    field = np.exp(1j * (coords @ waves.T + rng.uniform(0, 2 * np.pi, 24))).sum(axis=1)
    orientation = np.mod(np.degrees(np.angle(field)) / 2, 180.0)
    sfs = np.unique(metadata.sf_cycles_per_image)
    planted = {
        "orientation": orientation,
        "sf": rng.choice(sfs, args.units),
        "colour": rng.choice(["bw", "rc"], args.units),
        "kappa": rng.uniform(0.3, 3.0, args.units),
    }
    theta = np.deg2rad(metadata.orientation_deg.to_numpy(np.float32))[:, None]
    sf_index = np.searchsorted(sfs, metadata.sf_cycles_per_image.to_numpy())[:, None]
    colour = metadata.color.to_numpy()[:, None]
    responses = np.empty((len(metadata), args.units), dtype=np.float32)
    for start in range(0, args.units, 10_000):  # blocks: temporaries of ~25 MB
        cut = slice(start, start + 10_000)
        delta = theta - np.deg2rad(orientation[cut]).astype(np.float32)
        tuned = np.exp(planted["kappa"][cut].astype(np.float32) * (np.cos(2 * delta) - 1))
        sf_distance = sf_index - np.searchsorted(sfs, planted["sf"][cut])
        sf_gain = np.exp(-0.5 * sf_distance.astype(np.float32) ** 2)
        colour_gain = np.where(colour == planted["colour"][cut], 1.0, 0.7).astype(np.float32)
        noise = rng.standard_normal(tuned.shape, dtype=np.float32) * np.float32(0.05)
        responses[:, cut] = np.maximum(tuned * sf_gain * colour_gain + noise, 0)  # ReLU-like
    return coords, responses, planted


def v1_analysis(coords: np.ndarray, responses: np.ndarray, metadata, sheet_mm: float) -> dict:
    """The issue's full V1 analysis of one layer: what ``figures`` and the report need."""
    tuning = v1_tuning(responses, metadata)
    display = smoothed_map(coords, tuning.orientation_deg, 1.5, 0.15, period=180.0)
    mask = top_quartile_mask(tuning.peak_to_peak) & np.isfinite(tuning.orientation_deg)
    colour_index = (tuning.colour == "rc").astype(np.float64)
    sf_index = np.searchsorted(tuning.sfs, tuning.sf).astype(np.float64)
    curves = {
        name: difference_over_distance(
            coords[mask], values[mask], max_distance(HYPERCOLUMN_MM), period=period
        )
        for name, values, period in (
            ("orientation", tuning.orientation_deg, 180.0),
            ("sf", sf_index, None),
            ("colour", colour_index, None),
        )
    }
    pinwheels = find_pinwheels(
        coords, tuning.orientation_deg, hypercolumn_mm=HYPERCOLUMN_MM, sheet_width_mm=sheet_mm
    )
    return {"tuning": tuning, "display": display, "curves": curves, "pinwheels": pinwheels}


def von_mises(x, a, kappa, x0):
    return a * np.exp(kappa * np.cos(x - x0)) / (2 * np.pi * i0(kappa))


def curve_fit_orientation(curve: np.ndarray, angles: np.ndarray) -> float:
    """TDANN's definition for one unit: close at 180, interpolate to 50, curve_fit, argmax."""
    closed = np.append(curve, curve[0])
    points = np.interp(np.linspace(0, 180, 50), np.append(angles, 180.0), closed)
    x = np.linspace(-np.pi, np.pi, 50)
    params, _ = curve_fit(von_mises, x, points, maxfev=10_000)
    fine = np.linspace(-np.pi, np.pi, 36_001)
    return float(np.rad2deg((fine[np.argmax(von_mises(fine, *params))] + np.pi) / 2) % 180)


def main() -> None:
    args = parse_args()
    _, metadata = sine_gratings()  # the real 640 gratings' metadata; the images are dropped
    coords, responses, planted = planted_layer(args, metadata)
    print(f"layer: {args.units} units on a {args.sheet_mm} mm sheet, {len(metadata)} gratings")

    start = time.perf_counter()
    result = v1_analysis(coords, responses, metadata, args.sheet_mm)
    elapsed = time.perf_counter() - start
    print(
        f"full V1 analysis: {elapsed:.1f} s (ratio {elapsed / args.budget_s:.2f} vs the "
        f"{args.budget_s:.0f} s budget: {'met' if elapsed <= args.budget_s else 'NOT met'})"
    )
    tracemalloc.start()  # a second, untimed pass: numpy reports its buffers to tracemalloc
    v1_analysis(coords, responses, metadata, args.sheet_mm)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        f"peak memory allocated by the analysis: {peak:.0f} MB (ratio "
        f"{peak / (responses.nbytes / 2**20):.2f} vs the {responses.nbytes / 2**20:.0f} MB of "
        f"responses it reads)"
    )
    tuning, pinwheels = result["tuning"], result["pinwheels"]
    error = np.abs(np.mod(tuning.orientation_deg - planted["orientation"] + 90, 180) - 90)
    print(
        f"planted orientation recovered: median error {np.median(error):.2f} deg; "
        f"fraction selective {tuning.fraction_selective:.3f}"
    )
    scores = {
        name: np.mean([smoothness(curve) for curve in curves.curves])
        for name, curves in result["curves"].items()
    }
    print("smoothness: " + ", ".join(f"{name} {score:.3f}" for name, score in scores.items()))
    print(
        f"pinwheels: {pinwheels.n_positive} + / {pinwheels.n_negative} -, density "
        f"{pinwheels.density:.2f} per hypercolumn^2 (display map {result['display'].values.shape})"
    )

    curves, angles = tuning.orientation_curves, tuning.orientations
    start = time.perf_counter()
    preferred_orientation(curves, angles)
    vectorised_all = (time.perf_counter() - start) / len(curves)
    sample = curves[: args.reference_units]
    start = time.perf_counter()
    vectorised = preferred_orientation(sample, angles)
    vectorised_sample = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    reference = np.array([curve_fit_orientation(curve, angles) for curve in sample])
    loop = (time.perf_counter() - start) / len(sample)
    disagreement = np.abs(np.mod(vectorised - reference + 90, 180) - 90)
    print(
        f"preferred_orientation, {len(curves)} units at once: {vectorised_all * 1e6:.1f} us/unit "
        f"(ratio {loop / vectorised_all:.1f} vs a curve_fit loop, {loop * 1e6:.0f} us/unit over "
        f"{len(sample)} units; budget >= 50: {'met' if loop / vectorised_all >= 50 else 'NOT met'})"
    )
    print(
        f"preferred_orientation, the same {len(sample)} units at once: "
        f"{vectorised_sample * 1e6:.1f} us/unit (ratio {loop / vectorised_sample:.1f} vs curve_fit)"
    )
    print(
        f"max disagreement with curve_fit: {disagreement.max():.4f} deg over {len(sample)} units "
        f"(budget <= 0.5: {'met' if disagreement.max() <= 0.5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
