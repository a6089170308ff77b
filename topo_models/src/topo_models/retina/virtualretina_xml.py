"""Read and write VirtualRetina's XML retina description.

The file is ``retina-description-file/retina`` with ``outer-plexiform-layer/linear-version``
(+ ``undershoot``), ``contrast-gain-control`` and up to two ``ganglion-layer`` elements (each with
an optional ``spiking-channel``). A layer's ``sign`` attribute says ON (+1) or OFF (−1); without
it the first layer is ON and the second OFF. Attributes map onto our dotted parameter paths; the
``retina`` element's time step, px/deg and luminance range become the ``Resolution``.

Unlike the original (which skipped whatever it did not know) an unknown element or
attribute is a ``TopoError`` naming the file, the element path and the known names. Settings
VirtualRetina has but this model deliberately does not implement (leaky heat equation,
microsaccades, log-polar scheme, unit arrays, random initial V, a cascade order ``center-n`` > 0)
raise one warning listing them. Files with a DOCTYPE or entity declarations are refused (no
entity expansion from untrusted files).
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from topo_models.atomic import atomic_write_bytes
from topo_models.errors import TopoError
from topo_models.retina.parameters import check_value
from topo_models.retina.resolution import Resolution
from topo_models.retina.virtualretina_schema import (
    CONTRAST_GAIN_CONTROL,
    GANGLION_LAYER,
    LINEAR_VERSION,
    RESOLUTION_ATTRIBUTES,
    RETINA,
    ROOT,
    SPECS,
    SPIKING_CHANNEL,
    UNDERSHOOT,
    UNUSED_ATTRIBUTES,
    UNUSED_ELEMENTS,
)


@dataclass(frozen=True)
class VirtualRetinaConfig:
    """What a VirtualRetina file sets.

    Args:
        parameters: ``{"stage.name": value}`` for the attributes present in the file (absent ones
            keep the model's defaults when loaded).
        resolution: from ``retina``'s ``temporal-step__sec`` (1/frames per second),
            ``pixels-per-degree`` and ``input-luminosity-range``; absent ones take
            ``Resolution()``'s defaults. ``filter_epsilon`` is not part of the format.
        ignored: ``element@attribute`` / element paths present in the file but not used.
    """

    parameters: dict[str, float]
    resolution: Resolution = field(default_factory=Resolution)
    ignored: tuple[str, ...] = ()


class _HasParameters(Protocol):
    resolution: Resolution

    def parameters_dict(self) -> dict[str, float]: ...


class _DeclarationRefused(Exception):
    """Raised from expat's handlers to stop parsing at a DOCTYPE or entity declaration."""


def _refuse_declarations(data: bytes, path: Path) -> None:
    """Pre-parse with expat and stop at a DOCTYPE or entity declaration, before any expansion."""
    parser = xml.parsers.expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise _DeclarationRefused

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except _DeclarationRefused:
        raise TopoError(
            "DOCTYPE and entity declarations are refused in a VirtualRetina file "
            "(entity expansion attacks); remove the <!DOCTYPE ...> block",
            file=path,
            expected="plain XML without a DTD",
            found="<!DOCTYPE",
        ) from None
    except xml.parsers.expat.ExpatError as err:
        raise TopoError("not well-formed XML", file=path, found=str(err)) from None


class _Reader:
    """Walks one parsed file, collecting parameters and ignored settings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parameters: dict[str, float] = {}
        self.ignored: list[str] = []

    def number(self, text: str, where: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise TopoError("not a finite number", file=self.path, field=where, found=text)
        return value

    def attributes(
        self,
        elem: ET.Element,
        where: str,
        stage: str,
        mapping: Mapping[str, str],
        extra: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """Store mapped attributes under ``stage``; return the ``extra`` (structural) ones."""
        unused = UNUSED_ATTRIBUTES.get(elem.tag, ())
        structural = {}
        for name, text in elem.attrib.items():
            spot = f"{where}@{name}"
            if name in mapping:
                path, number = f"{stage}.{mapping[name]}", self.number(text, spot)
                try:
                    value = check_value(SPECS[stage][mapping[name]], number, path)
                except TopoError as err:
                    raise TopoError(
                        f"invalid value for {path}",
                        file=self.path,
                        field=spot,
                        expected=err.expected,
                        found=text,
                    ) from None
                self.parameters[path] = value
            elif name == "center-n__uint" and text.strip() in ("0", "0.0"):
                continue  # order 0 is the single exponential the model implements
            elif name in unused:
                self.ignored.append(spot)
            elif name in extra:
                structural[name] = text
            else:
                raise TopoError(
                    "unknown attribute in a VirtualRetina file",
                    file=self.path,
                    field=spot,
                    expected=sorted([*mapping, *unused, *extra]),
                    found=name,
                )
        return structural

    def children(
        self, elem: ET.Element, where: str, known: Mapping[str, int]
    ) -> dict[str, list[ET.Element]]:
        """Children by tag; ``known`` gives the most of each; unused elements are only noted."""
        unused = UNUSED_ELEMENTS.get(elem.tag, ())
        found: dict[str, list[ET.Element]] = {tag: [] for tag in known}
        for child in elem:
            if not isinstance(child.tag, str):
                continue  # comments and processing instructions
            if child.tag in unused:
                self.ignored.append(f"{where}/{child.tag}")
                continue
            if child.tag not in known:
                raise TopoError(
                    "unknown element in a VirtualRetina file",
                    file=self.path,
                    field=f"{where}/{child.tag}",
                    expected=sorted([*known, *unused]),
                    found=child.tag,
                )
            found[child.tag].append(child)
            if len(found[child.tag]) > known[child.tag]:
                raise TopoError(
                    f"too many <{child.tag}> elements",
                    file=self.path,
                    field=f"{where}/{child.tag}",
                    expected=f"at most {known[child.tag]}",
                    found=len(found[child.tag]),
                )
        return found

    def resolution(self, elem: ET.Element, where: str) -> Resolution:
        values = {}
        for name, text in elem.attrib.items():
            if name not in RESOLUTION_ATTRIBUTES:
                raise TopoError(
                    "unknown attribute in a VirtualRetina file",
                    file=self.path,
                    field=f"{where}@{name}",
                    expected=list(RESOLUTION_ATTRIBUTES),
                    found=name,
                )
            values[name] = self.number(text, f"{where}@{name}")
        fields = {}
        if "temporal-step__sec" in values:
            step = values["temporal-step__sec"]
            rate = 1.0 / step if step > 0 else step
            nearest = round(rate)
            fields["steps_per_second"] = (
                float(nearest) if abs(rate - nearest) < 1e-9 * rate else rate
            )
        if "pixels-per-degree" in values:
            fields["pixels_per_degree"] = values["pixels-per-degree"]
        if "input-luminosity-range" in values:
            fields["input_luminance_range"] = values["input-luminosity-range"]
        try:
            return replace(Resolution(), **fields)
        except TopoError as err:
            raise TopoError(
                "invalid resolution",
                file=self.path,
                field=f"{where} ({err.field})",
                found=err.found,
            ) from None

    def ganglion_layers(self, layers: list[ET.Element], where: str) -> None:
        taken: dict[str, str] = {}
        for index, layer in enumerate(layers):
            spot = f"{where}/ganglion-layer[{index + 1}]"
            sign_text = layer.attrib.get("sign")
            sign = (
                (1.0, -1.0)[index] if sign_text is None else self.number(sign_text, spot + "@sign")
            )
            if sign not in (1.0, -1.0):
                raise TopoError(
                    "ganglion-layer sign is ON or OFF",
                    file=self.path,
                    field=spot + "@sign",
                    expected="1 or -1",
                    found=sign_text,
                )
            cell = "on" if sign > 0 else "off"
            if cell in taken:
                raise TopoError(
                    "two ganglion layers have the same sign; the model has one ON and one OFF",
                    file=self.path,
                    field=spot,
                    expected="one layer with sign 1 and one with sign -1",
                    found=f"{taken[cell]} and {spot}",
                )
            taken[cell] = spot
            self.attributes(layer, spot, cell, GANGLION_LAYER, extra=("sign",))
            channels = self.children(layer, spot, {"spiking-channel": 1})["spiking-channel"]
            for channel in channels:
                channel_spot = f"{spot}/spiking-channel"
                self.attributes(channel, channel_spot, f"{cell}_spikes", SPIKING_CHANNEL)
                self.children(channel, channel_spot, {})

    def read(self, root: ET.Element) -> VirtualRetinaConfig:
        if root.tag != ROOT or root.attrib:
            raise TopoError(
                "not a VirtualRetina retina description",
                file=self.path,
                field="root element",
                expected=f"<{ROOT}> without attributes",
                found=f"<{root.tag}> {dict(root.attrib) or ''}".strip(),
            )
        retinas = self.children(root, ROOT, {RETINA: 1})[RETINA]
        if not retinas:
            raise TopoError("no <retina> element", file=self.path, field=ROOT, expected=RETINA)
        where = f"{ROOT}/{RETINA}"
        retina = retinas[0]
        resolution = self.resolution(retina, where)
        known = {"outer-plexiform-layer": 1, "contrast-gain-control": 1, "ganglion-layer": 2}
        parts = self.children(retina, where, known)
        for opl in parts["outer-plexiform-layer"]:
            opl_where = f"{where}/outer-plexiform-layer"
            self.attributes(opl, opl_where, "opl", {})
            for linear in self.children(opl, opl_where, {"linear-version": 1})["linear-version"]:
                linear_where = f"{opl_where}/linear-version"
                self.attributes(linear, linear_where, "opl", LINEAR_VERSION)
                for under in self.children(linear, linear_where, {"undershoot": 1})["undershoot"]:
                    self.attributes(under, f"{linear_where}/undershoot", "opl", UNDERSHOOT)
                    self.children(under, f"{linear_where}/undershoot", {})
        for cgc in parts["contrast-gain-control"]:
            cgc_where = f"{where}/contrast-gain-control"
            self.attributes(cgc, cgc_where, "bipolar", CONTRAST_GAIN_CONTROL)
            self.children(cgc, cgc_where, {})
        self.ganglion_layers(parts["ganglion-layer"], where)
        return VirtualRetinaConfig(dict(self.parameters), resolution, tuple(self.ignored))


def read_virtualretina_xml(path: str | Path) -> VirtualRetinaConfig:
    """Parse a VirtualRetina XML file into our parameter paths and resolution.

    Raises:
        TopoError: unreadable or malformed file, DOCTYPE/entities, unknown element or attribute,
            a value that is not a number or is outside its domain.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TopoError("cannot read the VirtualRetina file", file=path, found=str(err)) from None
    _refuse_declarations(data, path)
    reader = _Reader(path)
    config = reader.read(ET.fromstring(data))
    if config.ignored:
        warnings.warn(
            f"{path}: VirtualRetina settings not used by this model: {', '.join(config.ignored)}",
            stacklevel=2,
        )
    return config


def _format(value: float) -> str:
    """Shortest text that reads back to ``value``; float32-exact values use float32's digits.

    Model parameters are float32 tensors, so ``0.05`` is stored as 0.05000000074505806; writing
    ``0.05`` reads back to the same float32.
    """
    number = float(value)
    single = np.float32(number)
    return str(single) if float(single) == number and math.isfinite(number) else repr(number)


def virtualretina_xml_bytes(parameters: Mapping[str, float], resolution: Resolution) -> bytes:
    """The XML text of ``parameters`` (dotted paths; absent ones are left out) and resolution."""
    unknown = sorted(set(parameters) - {f"{s}.{n}" for s, specs in SPECS.items() for n in specs})
    if unknown:
        raise TopoError(
            "unknown physical parameter path",
            field=", ".join(unknown),
            expected=sorted(f"{s}.{n}" for s, specs in SPECS.items() for n in specs),
            found=unknown,
        )

    def attrs(stage: str, mapping: Mapping[str, str]) -> dict[str, str]:
        return {
            xml_name: _format(parameters[f"{stage}.{name}"])
            for xml_name, name in mapping.items()
            if f"{stage}.{name}" in parameters
        }

    root = ET.Element(ROOT)
    retina = ET.SubElement(
        root,
        RETINA,
        {
            "temporal-step__sec": repr(resolution.dt),
            "pixels-per-degree": repr(float(resolution.pixels_per_degree)),
            "input-luminosity-range": repr(float(resolution.input_luminance_range)),
        },
    )
    linear, undershoot = attrs("opl", LINEAR_VERSION), attrs("opl", UNDERSHOOT)
    if linear or undershoot:
        opl = ET.SubElement(
            ET.SubElement(retina, "outer-plexiform-layer"), "linear-version", linear
        )
        if undershoot:
            ET.SubElement(opl, "undershoot", undershoot)
    cgc = attrs("bipolar", CONTRAST_GAIN_CONTROL)
    if cgc:
        ET.SubElement(retina, "contrast-gain-control", cgc)
    for cell, sign in (("on", "1"), ("off", "-1")):
        layer, spiking = attrs(cell, GANGLION_LAYER), attrs(f"{cell}_spikes", SPIKING_CHANNEL)
        if layer or spiking:
            element = ET.SubElement(retina, "ganglion-layer", {"sign": sign, **layer})
            if spiking:
                ET.SubElement(element, "spiking-channel", spiking)
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def write_virtualretina_xml(source: VirtualRetinaConfig | _HasParameters, path: str | Path) -> None:
    """Write a retina (``parameters_dict()`` and ``resolution``) or a config as VirtualRetina XML.

    ``read_virtualretina_xml`` reads the file back to the same values. The write is atomic.
    """
    if isinstance(source, VirtualRetinaConfig):
        parameters, resolution = source.parameters, source.resolution
    elif hasattr(source, "parameters_dict") and isinstance(
        getattr(source, "resolution", None), Resolution
    ):
        parameters, resolution = source.parameters_dict(), source.resolution
    else:
        raise TopoError(
            "nothing to write as VirtualRetina XML",
            field="source",
            expected="Retina or VirtualRetinaConfig",
            found=type(source).__name__,
        )
    atomic_write_bytes(virtualretina_xml_bytes(parameters, resolution), Path(path))
