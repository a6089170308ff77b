"""The positions of every topographic layer of a network, one ``.npz`` per layer.

A directory of TDANN position files (``layer1.0.npz … layer4.1.npz``, or spacetorch's
``.pkl`` pickles, read by a restricted unpickler) is one ``NetworkPositions``; the key of each
layer is its file stem, as in spacetorch's ``load_from_dir``. Where a
layer has both files the ``.npz`` is used, and the log says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from topo_models.errors import TopoError
from topo_models.positions.layer_positions import (
    LayerPositions,
    check_scale_sidecar,
    read_scale_sidecar,
    write_scale_sidecar,
)

log = logging.getLogger(__name__)
VERSION_SCALES = {1: "training", 2: "human"}  # spacetorch's version.txt: 1 macaque, 2 human


def read_version_scale(directory: Path) -> str | None:
    """The scale a spacetorch ``version.txt`` states (1: training/macaque, 2: human), if any."""
    path = directory / "version.txt"
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        version = int(float(text))
    except ValueError:
        version = None
    if version not in VERSION_SCALES:
        raise TopoError(
            "unknown positions version",
            file=path,
            field="version",
            expected=sorted(VERSION_SCALES),
            found=text,
        )
    return VERSION_SCALES[version]


def natural_key(name: str) -> list[str | int]:
    """Sort key that compares the numbers in a name as numbers: layer2.0 < layer10.0."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class NetworkPositions(Mapping[str, LayerPositions]):
    """Read-only mapping ``layer name -> LayerPositions`` in layer order, with one scale.

    Args:
        layers: the layers, in network order; each key must equal its layer's ``name``.
        scale: ``"training"``, ``"human"`` or None; every layer must carry the same label.
    """

    def __init__(self, layers: Mapping[str, LayerPositions], scale: str | None = None) -> None:
        self.source_files: dict[str, Path] = {}  # layer → file it was loaded from
        if not layers:
            raise TopoError("NetworkPositions needs at least one layer", field="layers", found={})
        for key, layer in layers.items():
            if not isinstance(layer, LayerPositions):
                raise TopoError(
                    "every layer must be a LayerPositions",
                    field=str(key),
                    found=type(layer).__name__,
                )
            if key != layer.name:
                raise TopoError(
                    "mapping key and layer name differ", field=str(key), found=repr(layer.name)
                )
            if layer.scale != scale:
                raise TopoError(
                    "layer scale differs from the network's; do not mix scales",
                    field=f"{key}.scale",
                    expected=repr(scale),
                    found=repr(layer.scale),
                )
        self._layers: dict[str, LayerPositions] = dict(layers)
        self._scale = scale

    @property
    def scale(self) -> str | None:
        """The scale label shared by all layers (None = unspecified)."""
        return self._scale

    @property
    def dims(self) -> dict[str, tuple[int, ...]]:
        """``{layer name: dims}``, e.g. to compare with a model's feature shapes."""
        return {name: layer.dims for name, layer in self._layers.items()}

    def __getitem__(self, name: str) -> LayerPositions:
        try:
            return self._layers[name]
        except KeyError:
            raise KeyError(f"no positions for layer {name!r}; have {list(self._layers)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        return f"NetworkPositions(layers={list(self._layers)}, scale={self._scale!r})"

    @classmethod
    def load(cls, directory: str | Path) -> NetworkPositions:
        """Load every ``*.npz`` (or ``*.pkl``) of ``directory`` in natural layer order.

        The scale comes from topo's ``positions.json`` or, failing that, spacetorch's
        ``version.txt``; with neither it stays unspecified (None), never guessed.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TopoError(
                "position directory not found", file=directory, expected="a directory of .npz"
            )
        chosen: dict[str, Path] = {}
        for path in sorted(directory.glob("*.pkl")) + sorted(directory.glob("*.npz")):
            if path.stem in chosen:
                log.info(
                    "%s: both %s and %s exist; using %s",
                    path.stem,
                    chosen[path.stem].name,
                    path.name,
                    path.name,
                )
            chosen[path.stem] = path  # .npz, globbed last, wins as in spacetorch
        if not chosen:
            raise TopoError(
                "no position files in directory",
                file=directory,
                expected="<layer>.npz (or spacetorch <layer>.pkl) files",
                found=sorted(p.name for p in directory.iterdir()),
            )
        layers: dict[str, LayerPositions] = {}
        for stem in sorted(chosen, key=lambda name: (natural_key(name), name)):
            path = chosen[stem]
            layer = LayerPositions.load(path)
            if layer.name != stem:
                raise TopoError(
                    "layer name inside the file differs from the file name",
                    file=path,
                    field="name",
                    expected=repr(stem),
                    found=repr(layer.name),
                )
            layers[stem] = layer
        sidecar, stated = read_scale_sidecar(directory), read_version_scale(directory)
        if sidecar is not None and stated is not None and sidecar != stated:
            raise TopoError(
                "positions.json and version.txt disagree on the scale",
                file=directory,
                field="scale",
                expected=sidecar,
                found=stated,
            )
        scale = sidecar or stated
        if sidecar is None and stated is not None:
            layers = {name: replace(layer, scale=stated) for name, layer in layers.items()}
        positions = cls(layers, scale=scale)
        positions.source_files = {stem: chosen[stem] for stem in layers}
        return positions

    def save(self, directory: str | Path) -> Path:
        """Write ``<name>.npz`` per layer (each atomically) and the scale sidecar.

        Raises TopoError before writing anything if the directory is labelled with another scale.
        """
        directory = Path(directory)
        check_scale_sidecar(directory, self._scale)
        directory.mkdir(parents=True, exist_ok=True)
        if self._scale is not None:
            write_scale_sidecar(directory, self._scale)
        for layer in self._layers.values():
            layer.save(directory)
        return directory

    def check_dims(
        self, expected: Mapping[str, tuple[int, ...]], source: str | Path | None = None
    ) -> None:
        """Fail unless every layer of ``expected`` is here with exactly those dims.

        Args:
            expected: ``{layer name: dims}``, e.g. from ``layer_dims(model, input_size)``.
            source: where the positions came from (file or directory), named in the error.
        """
        for name, dims in expected.items():
            want = tuple(int(d) for d in dims)
            if name not in self._layers:
                raise TopoError(
                    f"positions lack layer {name!r}",
                    file=source,
                    field=name,
                    expected=f"dims {want}",
                    found=f"layers {list(self._layers)}",
                )
            have = self._layers[name].dims
            if have != want:
                raise TopoError(
                    f"positions of layer {name!r} have other dims than the model's features",
                    file=source,
                    field=name,
                    expected=f"dims {want}",
                    found=f"dims {have}",
                )
