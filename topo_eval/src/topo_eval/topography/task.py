"""``task=topography``: every topography analysis that applies to one trained run, as
``topography.csv`` (one row per layer × metric), ``figures/*.png`` and ``index.html``.

The model, its positions and the stimulus sets are checked before anything is computed; the
outputs are built in a temp folder beside ``output_dir`` and moved in with the table last, so a
failure leaves no output behind. Responses are cached per run (see ``stimulus_responses``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from torch import nn

from topo_data.images import write_category_set
from topo_eval.model_loading import load_trained_model, positions_beside
from topo_eval.tdann.task import trained_input_size
from topo_eval.topography.category_report import category_analysis
from topo_eval.topography.network_report import (
    correlation_analysis,
    dimensionality_analysis,
    wiring_analysis,
)
from topo_eval.topography.report_html import write_report
from topo_eval.topography.report_table import Report, Sheet
from topo_eval.topography.stimulus_responses import (
    ModelInput,
    StimulusSet,
    cache_folder,
    category_stimulus_set,
    checkpoint_fingerprint,
    feature_shapes,
    grating_set,
    model_input,
    responses_to_stimuli,
)
from topo_eval.topography.v1_report import v1_analysis
from topo_models import TopoError
from topo_models.positions import SCALES, NetworkPositions, convert_scale

log = logging.getLogger("topo_eval")
TABLE = "topography.csv"
REPORT = "index.html"
ANALYSES = ("v1", "category", "correlation", "dimensionality", "wiring")


@dataclass
class Network:
    """A trained model, what it takes as input, and its layers' places on the sheet."""

    checkpoint: Path
    model: nn.Module
    given: ModelInput
    shapes: dict[str, tuple[int, ...]]  # every feature layer's shape without batch
    sheets: dict[str, Sheet]  # layers with positions, in network order
    areas: dict[str, str]  # layer → cortical area (empty for spatial networks)
    note: str  # where the positions came from and at which scale they are analysed


@dataclass
class TopographyResult:
    """What one report wrote, and what a sweep's report takes from it."""

    table_path: Path
    table: pd.DataFrame
    metrics: dict[str, float]
    orientation_map: tuple[np.ndarray, tuple[float, float, float, float]] | None
    units: str  # of the map's axes


def run_topography(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """``python -m topo_eval task=topography checkpoint=…/model.pt [positions=…]``."""
    positions = OmegaConf.select(cfg, "positions", default=None, throw_on_missing=False)
    result = topography_report(
        Path(cfg.checkpoint), cfg.topography, output_dir, positions, cfg.get("device", "cpu")
    )
    return result.table_path, result.metrics


def load_network(checkpoint: Path, positions: str | None = None) -> Network:
    """The model of ``checkpoint`` with its positions: ``positions=`` if given, a spatial
    network's learned ones, else the run's ``positions/`` beside ``model.pt``."""
    if not checkpoint.is_file():
        raise TopoError("checkpoint not found", file=checkpoint, field="checkpoint")
    model = load_trained_model(checkpoint)
    given = model_input(model, trained_input_size(checkpoint))
    shapes = feature_shapes(model, given)
    if positions is not None:
        found, source = NetworkPositions.load(positions), str(positions)
    elif hasattr(model, "spatial_layers"):
        from topo_models.spatial.sheet import learned_sheet_positions

        found, source = learned_sheet_positions(model), f"learned with the weights ({checkpoint})"
    else:
        directory = positions_beside(checkpoint)
        found, source = NetworkPositions.load(directory), str(directory)
    for layer in found:
        units = int(np.prod(shapes.get(layer, (0,))))
        if layer in shapes and units != len(found[layer].coordinates):
            raise TopoError(
                "positions do not match the layer",
                file=found.source_files.get(layer, source),
                field=layer,
                expected=f"{units} units of shape {shapes[layer]}",
                found=f"{len(found[layer].coordinates)} coordinates",
            )
    areas = dict(getattr(model, "cortical_areas", {}) or {})
    sheets, note = analysis_sheets(found, [name for name in found if name in shapes], areas)
    return Network(checkpoint, model, given, shapes, sheets, areas, f"positions: {source}; {note}")


def analysis_sheets(
    positions: NetworkPositions, layers: list[str], areas: dict[str, str]
) -> tuple[dict[str, Sheet], str]:
    """Each layer's coordinates at the scale of TDANN's defaults (human mm), and what was done.

    Training-scale positions are converted to human scale (``convert_scale``); positions with no
    scale stay in their own units, and each layer's mm parameters are scaled by its extent over
    the human sheet of its area (V1 for a layer without one)."""
    if positions.scale == "training" and all(layer in areas for layer in positions):
        positions = convert_scale(positions, "human", areas)
        note = (
            "training-scale positions converted to human scale (×1.5 for V1, ×7 for VTC), so "
            "distances are human-scale mm and TDANN's parameters apply unchanged"
        )
    elif positions.scale == "human":
        note = "human-scale positions: distances in mm, TDANN's parameters unchanged"
    else:
        note = (
            "positions without a usable scale: distances in the sheet's own units, each mm "
            "parameter (human scale) scaled by the sheet's extent over the human sheet of its area"
        )
    sheets = {}
    for layer in layers:
        coords = np.asarray(positions[layer].coordinates, np.float64)
        if positions.scale == "human":
            sheets[layer] = Sheet(coords, 1.0, "human mm")
            continue
        human = SCALES["human"].size_mm(areas.get(layer, "V1"))
        per_mm = float(np.ptp(coords, axis=0).max()) / human or 1.0
        sheets[layer] = Sheet(coords, per_mm, f"sheet units ({per_mm:.3g} per human mm)")
    return sheets, note


def plan_layers(network: Network, layers: DictConfig, fibres: DictConfig) -> dict[str, list]:
    """The layers of each analysis: the configured ones (checked), else the defaults —
    V1 on layer2.0 (else the first layer with positions), category on the last layer with
    positions (image models), correlation and dimensionality on every layer with positions,
    wiring between adjacent layers of one area that has a fibre radius."""
    placed = list(network.sheets)
    if not placed:
        raise TopoError(
            "no layer of the model has positions",
            file=network.checkpoint,
            field="positions",
            expected=sorted(network.shapes),
        )
    images = network.given.imagenet_normalised
    defaults = {
        "v1": ["layer2.0"] if "layer2.0" in placed else placed[:1],
        "category": placed[-1:] if images else [],
        "correlation": placed,
        "dimensionality": placed,
        "wiring": [
            [a, b]
            for a, b in zip(placed, placed[1:], strict=False)
            if network.areas.get(a, "V1") == network.areas.get(b, "V1")
            and network.areas.get(a, "V1") in fibres
        ],
    }
    plan = {}
    for kind in ANALYSES:
        given = layers.get(kind)
        chosen = defaults[kind] if given is None else OmegaConf.to_container(given)
        for name in np.asarray(chosen, dtype=object).ravel():
            _check_layer(network, str(name), f"topography.layers.{kind}")
        plan[kind] = [list(pair) for pair in chosen] if kind == "wiring" else list(chosen)
    return plan


def _check_layer(network: Network, name: str, field: str) -> None:
    if name not in network.shapes:
        raise TopoError(
            "the model has no such layer",
            file=network.checkpoint,
            field=field,
            expected=sorted(network.shapes),
            found=name,
        )
    if name not in network.sheets:
        raise TopoError(
            "the layer has no positions", field=field, expected=list(network.sheets), found=name
        )


def category_root(options: DictConfig) -> Path:
    """The category folder given, else the built-in stand-in (written once)."""
    if options.categories:
        return Path(options.categories)
    built = options.category_set
    return write_category_set(
        Path(built.root) / f"s{built.image_size}_n{built.images_per_category}_seed{built.seed}",
        int(built.image_size),
        int(built.images_per_category),
        int(built.seed),
    )


@contextlib.contextmanager
def staged_output(output_dir: Path, table: str) -> Iterator[Path]:
    """A temp folder beside ``output_dir`` to write into; on success its files move into
    ``output_dir`` (``table`` last, so a table means a complete report); on error it goes."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would follow it into place
    try:
        yield staging
        if not output_dir.exists() or (output_dir.is_dir() and not any(output_dir.iterdir())):
            os.replace(staging, output_dir)
            return
        for entry in sorted(staging.iterdir(), key=lambda p: p.name == table):
            target = output_dir / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def topography_report(
    checkpoint: Path,
    options: DictConfig,
    output_dir: Path,
    positions: str | None = None,
    device: str = "cpu",
) -> TopographyResult:
    """Every analysis of ``plan_layers`` for one run, written into ``output_dir``."""
    network = load_network(Path(checkpoint), positions)
    plan = plan_layers(network, options.layers, options.wiring.fibre_radius_mm)
    images = network.given.imagenet_normalised
    generic_layers = plan["correlation"] + plan["dimensionality"]
    generic_layers += [layer for pair in plan["wiring"] for layer in pair]
    sets: dict[str, StimulusSet] = {}
    if plan["v1"] or not images:
        sets["gratings"] = grating_set(network.given, **options.gratings)
    if plan["category"] or (images and generic_layers):
        sets["categories"] = category_stimulus_set(category_root(options), network.given)
    generic = "categories" if "categories" in sets else "gratings"
    needs = {"gratings": list(plan["v1"]), "categories": list(plan["category"])}
    needs[generic] += generic_layers
    responses = {}
    fingerprint = checkpoint_fingerprint(network.checkpoint)
    cache_root = Path(options.cache_dir or network.checkpoint.parent / "topography_cache")
    for name, stimuli in sets.items():
        wanted = list(dict.fromkeys(needs[name]))
        cache = cache_folder(cache_root, stimuli, network.given, fingerprint)
        responses[name] = responses_to_stimuli(
            network.model,
            stimuli,
            wanted,
            cache=cache if options.cache else None,
            batch_size=int(options.batch_size),
            device=device,
            progress=bool(options.progress),
        )
    with staged_output(output_dir, TABLE) as staging:
        report = Report(staging / "figures")
        orientation = _run_analyses(report, network, plan, sets, responses, generic, options)
        table = report.table()
        notes = [
            f"checkpoint: {network.checkpoint}",
            network.note,
            *[f"{name}: {len(s)} images, {s.parameters}" for name, s in sets.items()],
            *[f"{kind} layers: {plan[kind]}" for kind in ANALYSES],
        ]
        figures = [(f"figures/{name}", caption) for name, caption in report.figures]
        write_report(staging / REPORT, "Topography report", table, figures, notes)
        table.to_csv(staging / TABLE, index=False)
    log.info("topography of %s: %d rows → %s", network.checkpoint, len(table), output_dir)
    units = network.sheets[(plan["v1"] or list(network.sheets))[0]].units
    path = Path(output_dir) / TABLE
    return TopographyResult(path, table, report.metrics(), orientation, units)


def _run_analyses(
    report: Report,
    network: Network,
    plan: dict[str, list],
    sets: dict[str, StimulusSet],
    responses: dict,
    generic: str,
    options: DictConfig,
):
    """Each planned analysis in turn (a log line each: some take a while)."""
    sheets, seed = network.sheets, int(options.seed)
    orientation = None
    for layer in plan["v1"]:
        log.info("V1 tuning, maps, smoothness and pinwheels of %s", layer)
        found = v1_analysis(
            report,
            layer,
            responses["gratings"][layer],
            sets["gratings"].metadata,
            sheets[layer],
            seed=seed,
            **options.v1,
        )
        orientation = orientation or found
    for layer in plan["category"]:
        log.info("category selectivity of %s", layer)
        category_analysis(
            report,
            layer,
            responses["categories"][layer],
            sets["categories"].metadata.category.to_numpy(),
            sheets[layer],
            seed=seed,
            **options.category,
        )
    for source, target in plan["wiring"]:
        log.info("wiring length %s → %s", source, target)
        area = network.areas.get(source, "V1")
        wiring_analysis(
            report,
            source,
            target,
            {layer: responses[generic][layer] for layer in (source, target)},
            sheets,
            fibre_radius_mm=float(options.wiring.fibre_radius_mm[area]),
            active_percentile=float(options.wiring.active_percentile[area]),
            window_mm=options.wiring.window_mm.get(area),
            windows=int(options.wiring.windows),
            patterns=int(options.wiring.patterns),
            seed=seed,
        )
    if plan["dimensionality"]:
        log.info("dimensionality of %d layers", len(plan["dimensionality"]))
        dimensionality_analysis(
            report,
            plan["dimensionality"],
            lambda layer: responses[generic][layer],
            network.shapes,
            network.areas,
            **options.dimensionality,
        )
    if plan["correlation"]:
        log.info("response correlation vs distance of %d layers", len(plan["correlation"]))
        correlation_analysis(
            report,
            plan["correlation"],
            lambda layer: responses[generic][layer],
            sheets,
            seed=seed,
            **options.correlation,
        )
    return orientation
