"""Generators of position sets: where to put a model's units before training.

``RetinotopicLayout`` is TDANN's "retinotopic init" with the optional "fuzzy" jitter
(see docs/tdann.md); ``UniformLayout`` scatters units uniformly (the demo's toy recipe,
but with TDANN's local square-window neighbourhoods). Both read each layer's cortical area from
``model.cortical_areas`` and the sheet sizes and window widths from a ``SheetScale`` preset.

topo's generalisation to other input sizes: TDANN's widths are for 224-px inputs. A smaller
input shrinks every feature map, so at a fixed width each window would hold fewer units. The
width is therefore multiplied by ``zoom = reference_input_size / min(H, W)`` (capped at the
sheet size), which keeps roughly TDANN's number of units per window; and a map of ``n``
positions gets the hypercolumn overlap of TDANN's map of ``n * zoom`` positions, so that its
sheet is as retinotopic at the window's scale as TDANN's.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.positions.layer_positions import LayerPositions
from topo_models.positions.neighborhoods import precompute_neighborhoods
from topo_models.positions.network_positions import NetworkPositions
from topo_models.positions.sheets import SheetScale, get_scale

log = logging.getLogger(__name__)


def _input_hw(input_size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) of an int or (H, W) input size."""
    if isinstance(input_size, (int, np.integer)) and not isinstance(input_size, bool):
        size = (int(input_size), int(input_size))
    elif isinstance(input_size, Sequence) and len(input_size) == 2:
        size = tuple(input_size)
    else:
        size = ()
    if len(size) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise TopoError(
            "bad input size", field="input_size", expected="a positive int or (H, W)", found=size
        )
    return int(size[0]), int(size[1])


def layer_dims(model: nn.Module, input_size: int | Sequence[int]) -> dict[str, tuple[int, ...]]:
    """``{layer: feature shape without batch}`` from one dry forward of a zero image.

    The model runs in eval mode (so BatchNorm statistics are untouched) under ``no_grad``;
    every submodule's previous train/eval mode is restored afterwards.
    """
    height, width = _input_hw(input_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            result = model(torch.zeros(1, 3, height, width, device=device, dtype=dtype))
    finally:
        for module, mode in modes:
            module.training = mode
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping)):
        raise TopoError(
            "a topographic model's forward must return (output, features)",
            field=type(model).__name__,
            expected="(tensor, {layer: tensor})",
            found=type(result).__name__,
        )
    return {name: tuple(int(d) for d in feat.shape[1:]) for name, feat in result[1].items()}


def _hypercolumn_centres(size: int, sheet_mm: float, zoom: float = 1.0) -> tuple[np.ndarray, float]:
    """Anchor centres and patch half-width along one axis of ``size`` positions.

    TDANN's ``compute_rf_centers``: overlap = min(0.1 * 56 / size, 1) grows as maps shrink,
    rf_width = sheet / (size - size * overlap + overlap), centres = linspace(r, sheet - r, size).
    Its sizes are those of 224-px inputs, so ``size`` counts as ``size * zoom`` in the overlap
    (zoom = 224 / input): at 64 px layer2.0's 8 positions overlap 0.2 like TDANN's 28, not 0.7,
    whose patches (2.1 times as wide) left the V1 windows almost without retinotopy and the
    spatial loss nothing to organise there (benchmarks/RESULTS.md, 2026-12-06).
    """
    overlap = min(0.1 * 56 / (size * zoom), 1.0)
    half = sheet_mm / (size - size * overlap + overlap) / 2.0
    return np.linspace(half, sheet_mm - half, size), half


def retinotopic_coordinates(
    dims: tuple[int, int, int], sheet_mm: float, rng: np.random.Generator, zoom: float = 1.0
) -> np.ndarray:
    """(C*H*W, 2) mm positions of a conv layer, TDANN's hypercolumn tiling.

    Unit (c, i, j) (channel, row, column) sits at (x = centre_x[j], y = centre_y[i]) plus a
    Uniform(-r, r) offset per axis, r being that axis's patch half-width; rows are in
    channel-major flatten order. Values are clipped to [0, sheet] against float rounding.
    ``zoom``: 224 / the input size, for TDANN's overlap at other inputs (1: TDANN's formula).
    """
    if len(dims) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in dims):
        raise TopoError("retinotopic layers need (C, H, W) dims", field="dims", found=dims)
    if not (math.isfinite(sheet_mm) and sheet_mm > 0):
        raise TopoError("sheet size must be positive mm", field="sheet_mm", found=sheet_mm)
    channels, height, width = (int(d) for d in dims)
    if not (math.isfinite(zoom) and zoom > 0):
        raise TopoError("zoom must be positive", field="zoom", found=zoom)
    centres_x, half_x = _hypercolumn_centres(width, sheet_mm, zoom)
    centres_y, half_y = _hypercolumn_centres(height, sheet_mm, zoom)
    offsets = rng.uniform(-1.0, 1.0, size=(channels, height, width, 2))
    x = centres_x[None, None, :] + offsets[..., 0] * half_x
    y = centres_y[None, :, None] + offsets[..., 1] * half_y
    coords = np.stack([x.reshape(-1), y.reshape(-1)], axis=1)
    return np.clip(coords, 0.0, sheet_mm).astype(np.float32)


def jitter_coordinates(
    coords: np.ndarray, jitter_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """TDANN's "fuzzy" positions: Gaussian noise (SD ``jitter_mm``), then each axis is rescaled
    back to its original [min, max] so the sheet keeps its size."""
    if not (math.isfinite(jitter_mm) and jitter_mm >= 0):
        raise TopoError("jitter must be >= 0 mm", field="jitter_mm", found=jitter_mm)
    coords = np.asarray(coords, dtype=np.float64)
    if jitter_mm == 0 or len(coords) < 2:
        return coords.astype(np.float32)
    noisy = coords + rng.normal(0.0, jitter_mm, size=coords.shape)
    old_min, old_ptp = coords.min(axis=0), np.ptp(coords, axis=0)
    new_min, new_ptp = noisy.min(axis=0), np.ptp(noisy, axis=0)
    rescaled = (noisy - new_min) / np.where(new_ptp > 0, new_ptp, 1.0) * old_ptp + old_min
    # An axis with no extent (all units on a line) stays as it was.
    rescaled = np.where(old_ptp > 0, rescaled, coords)
    return rescaled.astype(np.float32)


def uniform_coordinates(n_units: int, sheet_mm: float, rng: np.random.Generator) -> np.ndarray:
    """(n_units, 2) mm positions uniform in [0, sheet]^2."""
    if not (math.isfinite(sheet_mm) and sheet_mm > 0):
        raise TopoError("sheet size must be positive mm", field="sheet_mm", found=sheet_mm)
    return rng.uniform(0.0, sheet_mm, size=(int(n_units), 2)).astype(np.float32)


def _check_int(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise TopoError(f"bad {name}", field=name, expected=f"an integer >= {least}", found=value)
    return int(value)


class _Layout(ABC):
    """Shared ``build``: dims from a dry forward, areas from the model, neighbourhoods."""

    def __init__(
        self, scale: str, n_neighborhoods: int, reference_input_size: int, seed: int
    ) -> None:
        self.sheet: SheetScale = get_scale(scale)
        self.scale = scale
        self.n_neighborhoods = _check_int("n_neighborhoods", n_neighborhoods, 1)
        self.reference_input_size = _check_int("reference_input_size", reference_input_size, 1)
        self.seed = _check_int("seed", seed, 0)

    @abstractmethod
    def _coordinates(
        self, dims: tuple[int, ...], sheet_mm: float, rng: np.random.Generator, zoom: float
    ) -> np.ndarray:
        """(N, 2) unit coordinates in mm for a layer of ``dims`` on a sheet ``sheet_mm`` wide;
        ``zoom`` = reference input size / the input's."""

    def build(self, model: nn.Module, input_size: int | Sequence[int]) -> NetworkPositions:
        """Positions for every feature layer of ``model`` at ``input_size`` (int or (H, W))."""
        dims_by_layer = layer_dims(model, input_size)
        areas = getattr(model, "cortical_areas", None)
        if not isinstance(areas, Mapping):
            raise TopoError(
                "the model does not say which cortical area each layer is",
                field=f"{type(model).__name__}.cortical_areas",
                expected="{layer: area}",
                found=type(areas).__name__,
            )
        zoom = self.reference_input_size / min(_input_hw(input_size))
        log.info(
            "building positions and neighbourhoods of %d layers (%s, %d windows per layer, "
            "seed %d)",
            len(dims_by_layer),
            type(self).__name__,
            self.n_neighborhoods,
            self.seed,
        )
        started = time.perf_counter()
        layers: dict[str, LayerPositions] = {}
        for index, (name, dims) in enumerate(dims_by_layer.items()):
            if name not in areas:
                raise TopoError(
                    f"layer {name!r} has no cortical area",
                    field=f"{type(model).__name__}.cortical_areas",
                    expected=f"an area for every feature layer {list(dims_by_layer)}",
                    found=dict(areas),
                )
            sheet_mm = self.sheet.size_mm(areas[name])
            width_mm = min(self.sheet.width_mm(areas[name]) * zoom, sheet_mm)
            # One stream per layer from (seed, layer index): layers never share random draws.
            rng = np.random.default_rng([self.seed, index])
            coords = self._coordinates(dims, sheet_mm, rng, zoom)
            indices = precompute_neighborhoods(
                coords, width_mm, self.n_neighborhoods, seed=int(rng.integers(2**63 - 1))
            )
            layers[name] = LayerPositions(name, dims, coords, indices, width_mm, self.scale)
            log.info(
                "  %s: %d units on a %.1f mm sheet, %d neighbourhoods of %d units in %.2f mm "
                "windows",
                name,
                len(coords),
                sheet_mm,
                *indices.shape,
                width_mm,
            )
        log.info("positions built in %.1f s", time.perf_counter() - started)
        return NetworkPositions(layers, scale=self.scale)


class RetinotopicLayout(_Layout):
    """TDANN's retinotopic init: hypercolumn tiling of conv maps, optional fuzzy jitter.

    Args:
        scale: sheet preset, ``"training"`` (TDANN's trained models) or ``"human"``.
        jitter_mm: SD of the "fuzzy" Gaussian jitter (TDANN: 0.3); 0 = none. Applied to every
            layer, range-preserving.
        n_neighborhoods: windows drawn per layer before trimming (TDANN: 20,000).
        reference_input_size: input size the preset's widths are for (TDANN: 224).
        seed: seeds every layer's positions and neighbourhoods.

    Layers with (C, H, W) dims get the retinotopic tiling; 1-D layers (N,) are uniform.
    """

    def __init__(
        self,
        scale: str = "training",
        jitter_mm: float = 0.0,
        n_neighborhoods: int = 20000,
        reference_input_size: int = 224,
        seed: int = 0,
    ) -> None:
        super().__init__(scale, n_neighborhoods, reference_input_size, seed)
        is_real = isinstance(jitter_mm, (int, float)) and not isinstance(jitter_mm, bool)
        if not (is_real and math.isfinite(jitter_mm) and jitter_mm >= 0):
            raise TopoError("bad jitter", field="jitter_mm", expected="mm >= 0", found=jitter_mm)
        self.jitter_mm = float(jitter_mm)

    def _coordinates(
        self, dims: tuple[int, ...], sheet_mm: float, rng: np.random.Generator, zoom: float
    ) -> np.ndarray:
        if len(dims) == 3:
            coords = retinotopic_coordinates(dims, sheet_mm, rng, zoom)  # type: ignore[arg-type]
        elif len(dims) == 1:
            coords = uniform_coordinates(dims[0], sheet_mm, rng)
        else:
            raise TopoError(
                "retinotopic layout supports (C, H, W) and (N,) layers",
                field="dims",
                found=dims,
            )
        return jitter_coordinates(coords, self.jitter_mm, rng)


class UniformLayout(_Layout):
    """Units uniform on each area's square sheet, with TDANN's local neighbourhoods.

    Args:
        scale: sheet preset, ``"training"`` or ``"human"``.
        n_neighborhoods: windows drawn per layer before trimming.
        reference_input_size: input size the preset's widths are for.
        seed: seeds every layer's positions and neighbourhoods.
    """

    def __init__(
        self,
        scale: str = "training",
        n_neighborhoods: int = 20000,
        reference_input_size: int = 224,
        seed: int = 0,
    ) -> None:
        super().__init__(scale, n_neighborhoods, reference_input_size, seed)

    def _coordinates(
        self, dims: tuple[int, ...], sheet_mm: float, rng: np.random.Generator, zoom: float
    ) -> np.ndarray:
        return uniform_coordinates(math.prod(dims), sheet_mm, rng)
