"""TDANN's SineGrating2019 stimulus set, generated in code instead of downloaded.

TDANN (Margalit et al. 2024) records responses to 640 full-field sine gratings to swap
pre-optimise unit positions and to measure orientation and spatial-frequency maps: 8
orientations (0, 22.5, ..., 157.5 deg) x 8 spatial frequencies (``linspace(5.5, 110, 9)[:-1]``
cycles/image) x 5 phases (``linspace(0, 2 pi, 6)[:-1]`` rad) x 2 colours (black/white and
red/cyan), as in Margalit et al. 2024. ``write_sine_grating_folder`` writes
them with file names that TDANN's loader parses (``parse_sine_grating_name`` applies its rule).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from topo_data.errors import TopoDataError

COLORS = ("bw", "rc")
"""``bw``: all channels equal the grating; ``rc``: red = grating, green = blue = 1 - grating."""

DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE = tuple(float(f) for f in np.linspace(5.5, 110, 9)[:-1])
"""5.5, 18.6, 31.6, 44.7, 57.8, 70.8, 83.9, 96.9 cycles/image (TDANN SineGrating2019)."""

METADATA_COLUMNS = ("orientation_deg", "sf_cycles_per_image", "phase_rad", "color")

_PREFIX = "sine"
_FILLERS = ("deg", "cy", "phase")  # 3, 2 and 5 characters: what TDANN's loader drops.
_IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}


def _check_positive_int(value: object, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TopoDataError(
            "Bad sine grating argument.",
            field=field,
            expected=f"an integer >= {minimum}",
            found=repr(value),
        )
    return int(value)


def _check_frequencies(frequencies: Sequence[float] | None, size: int) -> np.ndarray:
    if frequencies is None:
        frequencies = DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE
    try:
        values = np.asarray(frequencies, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    nyquist = size / 2
    if (
        values is None
        or values.ndim != 1
        or values.size == 0
        or not np.all(np.isfinite(values))
        or np.any(values <= 0)
        or np.any(values >= nyquist)
        or np.unique(values).size != values.size
    ):
        raise TopoDataError(
            "Spatial frequencies must be distinct, positive and below the Nyquist limit of the "
            "image (size / 2); pass a larger size or fewer/lower frequencies_cycles_per_image.",
            field="frequencies_cycles_per_image",
            expected=f"a non-empty sequence of distinct values in (0, {nyquist:g}) cycles/image",
            found=repr(frequencies),
        )
    return values


def _check_colors(colors: Sequence[str]) -> tuple[str, ...]:
    if isinstance(colors, str):
        colors = (colors,)
    colors = tuple(colors)
    if not colors or len(set(colors)) != len(colors) or not set(colors) <= set(COLORS):
        raise TopoDataError(
            "Bad grating colours.",
            field="colors",
            expected=f"a non-empty sequence of distinct names from {COLORS}",
            found=repr(colors),
        )
    return colors


def sine_gratings(
    size: int = 224,
    *,
    orientations: int = 8,
    frequencies_cycles_per_image: Sequence[float] | None = None,
    phases: int = 5,
    colors: Sequence[str] = COLORS,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Full-field sine gratings, TDANN's SineGrating2019 set by default (640 images).

    Pixel value ``g = 0.5 + 0.5 cos(2 pi f (x cos(theta) + y sin(theta)) / size + phase)`` with
    ``x = column`` and ``y = -row`` (pixel indices, origin at the top-left pixel): theta is
    measured from the image x axis (columns, pointing right) counter-clockwise with y pointing
    UP, so theta = 90 deg gives horizontal stripes that vary down the rows, and theta = 45 deg a
    wave vector pointing up-right. ``f`` is in cycles per image width.

    Args:
        size: image height and width in pixels, >= 8; every frequency must be < size / 2.
        orientations: number of orientations, ``k * 180 / orientations`` deg.
        frequencies_cycles_per_image: spatial frequencies; default
            ``numpy.linspace(5.5, 110, 9)[:-1]`` (needs size >= 194).
        phases: number of phases, ``numpy.linspace(0, 2 pi, phases + 1)[:-1]`` rad.
        colors: subset of ``("bw", "rc")``; ``bw`` has all channels equal to ``g``, ``rc`` has
            red = ``g`` and green = blue = ``1 - g``.

    Returns:
        images: (n, 3, size, size) float32 in [0, 1], ``n = colors x orientations x sfs x
        phases``, ordered colour (slowest), orientation, spatial frequency, phase (fastest).
        metadata: one row per image in the same order, columns ``orientation_deg``,
        ``sf_cycles_per_image``, ``phase_rad``, ``color``.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise TopoDataError(
            "Bad sine grating image size.", field="size", expected="an integer >= 8", found=size
        )
    size = int(size)
    orientations = _check_positive_int(orientations, "orientations", 1)
    phases = _check_positive_int(phases, "phases", 1)
    frequencies = _check_frequencies(frequencies_cycles_per_image, size)
    colors = _check_colors(colors)

    angles_deg = np.arange(orientations) * (180.0 / orientations)
    phase_rad = np.linspace(0.0, 2 * math.pi, phases + 1)[:-1]

    theta = torch.as_tensor(np.deg2rad(angles_deg), dtype=torch.float64)[:, None, None, None, None]
    sf = torch.as_tensor(frequencies, dtype=torch.float64)[None, :, None, None, None]
    phase = torch.as_tensor(phase_rad, dtype=torch.float64)[None, None, :, None, None]
    pixels = torch.arange(size, dtype=torch.float64)
    x = pixels[None, :]  # columns, pointing right
    y = -pixels[:, None]  # y = -row: pointing up
    projection = x * torch.cos(theta) + y * torch.sin(theta)  # (orient, 1, 1, size, size)
    grating = 0.5 + 0.5 * torch.cos(2 * math.pi * sf * projection / size + phase)
    grating = grating.reshape(-1, size, size).to(torch.float32).clamp_(0.0, 1.0)

    per_color = {
        "bw": torch.stack([grating, grating, grating], dim=1),
        "rc": torch.stack([grating, 1.0 - grating, 1.0 - grating], dim=1),
    }
    images = torch.cat([per_color[c] for c in colors], dim=0)

    color_grid, angle_grid, sf_grid, phase_grid = np.meshgrid(
        np.arange(len(colors)), angles_deg, frequencies, phase_rad, indexing="ij"
    )
    metadata = pd.DataFrame(
        {
            "orientation_deg": angle_grid.ravel(),
            "sf_cycles_per_image": sf_grid.ravel(),
            "phase_rad": phase_grid.ravel(),
            "color": np.asarray(colors, dtype=object)[color_grid.ravel()],
        }
    )
    return images, metadata


def sine_grating_name(
    orientation_deg: float, sf_cycles_per_image: float, phase_rad: float, color: str, ext: str
) -> str:
    """File name that TDANN's loader parses, e.g. ``sine_22.5deg_18.6cy_1.3phase_bw.png``.

    Fields split on ``_``; fillers ``deg``/``cy``/``phase`` are the 3/2/5 characters the loader
    drops. Spatial frequency and phase are rounded to one decimal, as in TDANN's file names.
    """
    return (
        f"{_PREFIX}_{orientation_deg:g}{_FILLERS[0]}_{sf_cycles_per_image:.1f}{_FILLERS[1]}"
        f"_{phase_rad:.1f}{_FILLERS[2]}_{color}.{ext}"
    )


def parse_sine_grating_name(name: str | Path) -> dict[str, float | str]:
    """Parse a grating file name with TDANN's rule (split on ``_``, drop 3/2/5 characters).

    Returns:
        ``orientation_deg``, ``sf_cycles_per_image``, ``phase_rad`` (floats, rounded as in the
        name) and ``color`` (the last field without its extension).
    """
    fields = Path(name).name.rsplit(".", 1)[0].split("_")
    try:
        if len(fields) != 5:
            raise ValueError
        parsed: dict[str, float | str] = {
            "orientation_deg": float(fields[1][:-3]),
            "sf_cycles_per_image": float(fields[2][:-2]),
            "phase_rad": float(fields[3][:-5]),
            "color": fields[4],
        }
    except ValueError:
        raise TopoDataError(
            "Not a sine grating file name.",
            file=str(name),
            expected="<prefix>_<angle>xxx_<sf>xx_<phase>xxxxx_<color>.<ext>",
            found=Path(name).name,
        ) from None
    return parsed


def write_sine_grating_folder(
    directory: str | Path, size: int = 224, *, image_format: str = "png"
) -> Path:
    """Write the 640 SineGrating2019 images and ``metadata.csv`` into ``directory``.

    The folder is built in a temporary directory beside ``directory`` and moved into place with
    ``os.replace``, so readers never see a half-written set. An existing empty directory is
    replaced; a non-empty one is never overwritten.

    Args:
        directory: destination folder; its parent is created if needed.
        size: image size in pixels (>= 194 for the default frequencies).
        image_format: ``"png"`` (lossless) or ``"jpg"`` (JPEG quality 95, as TDANN's files).

    Returns:
        The destination folder. ``metadata.csv`` has a ``file`` column plus the columns of
        :func:`sine_gratings`, one row per image in its order.
    """
    root = Path(directory)
    if image_format not in _IMAGE_FORMATS:
        raise TopoDataError(
            "Bad image format.",
            field="image_format",
            expected=sorted(_IMAGE_FORMATS),
            found=repr(image_format),
        )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise TopoDataError(
            "Refusing to overwrite an existing non-empty path.",
            file=root,
            expected="a missing or empty directory",
            found="existing files",
        )
    images, metadata = sine_gratings(size)
    pixels = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    names = [
        sine_grating_name(
            row.orientation_deg, row.sf_cycles_per_image, row.phase_rad, row.color, image_format
        )
        for row in metadata.itertuples()
    ]

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        options = {"quality": 95} if image_format == "jpg" else {}
        for name, array in zip(names, pixels, strict=True):
            Image.fromarray(array).save(staging / name, _IMAGE_FORMATS[image_format], **options)
        metadata.insert(0, "file", names)
        metadata.to_csv(staging / "metadata.csv", index=False)
        try:
            os.replace(staging, root)
        except OSError as error:  # a non-empty directory appeared meanwhile
            raise TopoDataError(
                "Could not move the grating folder into place.",
                file=root,
                expected="a missing or empty directory",
                found=str(error),
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
