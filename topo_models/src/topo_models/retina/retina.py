"""``Retina``: the VirtualRetina-like model assembled from its stages.

``luminance → OPL → Bipolar ─┬→ GanglionInput(+1) → GanglionSpiking → ganglion_spikes_ON``
``                           └→ GanglionInput(−1) → GanglionSpiking → ganglion_spikes_OFF``

ON and OFF share OPL and bipolar. Physical parameters are addressed by dotted paths
``<stage>.<name>`` with stages ``opl``, ``bipolar``, ``on``, ``off`` (ganglion input) and
``on_spikes``, ``off_spikes``; as constructor keywords the dot becomes an underscore
(``opl_sigma_center=0.05``, ``on_i_0=37.0``, ``off_spikes_refr_mu=0.003``); each is also an
attribute (``retina.opl.sigma_center``, a scalar ``nn.Parameter``). ``find`` / ``parameter``
browse the tree; ``from_preset`` and ``from_virtualretina_xml`` build configured retinas.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from topo_models.atomic import atomic_write_bytes
from topo_models.errors import TopoError
from topo_models.retina.parameters import ParameterInfo, PhysicalStage
from topo_models.retina.presets import preset_parameters
from topo_models.retina.resolution import Resolution
from topo_models.retina.spiking import GanglionSpiking
from topo_models.retina.stages import OPL, Bipolar, GanglionInput
from topo_models.retina.steady_state import set_steady_state
from topo_models.retina.virtualretina_xml import read_virtualretina_xml

CHANNELS = ("ON", "OFF")
PARAMETER_FILE_FORMAT = 1


class Retina(nn.Module):
    """VirtualRetina-like retina with exact streaming state.

    Args:
        resolution: px/deg, frames/s, luminance range; ``Resolution()`` if None.
        spikes: run the LIF stage (outputs ``ganglion_spikes_ON/OFF``, 0/1 in the input dtype);
            if False the outputs are the ganglion input currents ``ganglion_input_ON/OFF`` (Hz).
        seed: seed of the ON spiking noise; OFF uses ``seed + 1``.
        strict_luminance: raise instead of warn when the input leaves ``[0, luminance_range]``.
        **physical_parameters: ``<stage>_<name>=value``; ``valid_keywords()`` lists them.
    """

    def __init__(
        self,
        resolution: Resolution | None = None,
        spikes: bool = True,
        seed: int = 0,
        strict_luminance: bool = False,
        **physical_parameters: float,
    ) -> None:
        super().__init__()
        self.resolution = Resolution() if resolution is None else resolution
        self.spikes = bool(spikes)
        self.strict_luminance = bool(strict_luminance)
        res = self.resolution
        self.opl = OPL(res)
        self.bipolar = Bipolar(res)
        self.on = GanglionInput(res, sign=1.0)
        self.off = GanglionInput(res, sign=-1.0)
        self.on_spikes = GanglionSpiking(res, seed=seed)
        self.off_spikes = GanglionSpiking(res, seed=seed + 1)
        keywords = self.valid_keywords()
        unknown = sorted(set(physical_parameters) - set(keywords))
        if unknown:
            raise TopoError(
                "unknown Retina parameter",
                field=", ".join(unknown),
                expected=sorted(keywords),
                found=unknown,
            )
        self.load_parameters_dict({keywords[k]: v for k, v in physical_parameters.items()})

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> Retina:
        """A retina with preset ``name`` (``presets.PRESETS``) and constructor ``overrides``.

        Physical keywords in ``overrides`` (``on_i_0=50.0``) replace the preset's values; the
        others (``resolution``, ``spikes``, ``seed``, ``strict_luminance``) pass through.
        """
        values = {path.replace(".", "_"): v for path, v in preset_parameters(name).items()}
        return cls(**{**values, **overrides})

    @classmethod
    def from_virtualretina_xml(cls, path: str | Path, **kwargs: object) -> Retina:
        """A retina with a VirtualRetina file's resolution and parameters (``virtualretina_xml``).

        ``kwargs`` are constructor keywords; physical ones override the file's values. The
        resolution comes from the file, so passing ``resolution`` is an error.
        """
        if "resolution" in kwargs:
            raise TopoError(
                "the resolution comes from the VirtualRetina file",
                file=path,
                field="resolution",
                expected="no resolution keyword (edit retina@temporal-step__sec etc.)",
                found=kwargs["resolution"],
            )
        config = read_virtualretina_xml(path)
        values = {p.replace(".", "_"): v for p, v in config.parameters.items()}
        return cls(resolution=config.resolution, **{**values, **kwargs})

    def stages(self) -> dict[str, PhysicalStage]:
        """Stage name → stage, in processing order."""
        return {
            "opl": self.opl,
            "bipolar": self.bipolar,
            "on": self.on,
            "off": self.off,
            "on_spikes": self.on_spikes,
            "off_spikes": self.off_spikes,
        }

    def valid_keywords(self) -> dict[str, str]:
        """Constructor keyword → dotted parameter path."""
        return {path.replace(".", "_"): path for path in self.parameters_dict()}

    def parameters_dict(self) -> dict[str, float]:
        """Every physical parameter as ``{"stage.name": value}`` (units: ``describe()``)."""
        return {path: value for path, value, _, _ in self.describe()}

    def describe(self) -> list[ParameterInfo]:
        """(path, value, unit, one-line doc) for every physical parameter."""
        rows = []
        for stage_name, stage in self.stages().items():
            for spec, param in stage.physical_parameters():
                path = f"{stage_name}.{spec.name}"
                rows.append(ParameterInfo(path, param.item(), spec.unit, spec.doc))
        return rows

    def find(self, text: str) -> list[ParameterInfo]:
        """Parameters whose path or doc contains ``text`` (case-insensitive), in stage order.

        ``find("tau")`` lists every time constant, ``find("σ")`` every Gaussian width,
        ``find("on.")`` the ON ganglion input.
        """
        needle = str(text).casefold()
        return [row for row in self.describe() if needle in f"{row.path}\n{row.doc}".casefold()]

    def parameter(self, path: str) -> ParameterInfo:
        """Value, unit and doc of the parameter at dotted ``path`` (``"opl.sigma_center"``)."""
        rows = {row.path: row for row in self.describe()}
        if path not in rows:
            close = difflib.get_close_matches(str(path), list(rows), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TopoError(
                f"unknown physical parameter path{hint}",
                field=str(path),
                expected=sorted(rows),
                found=path,
            )
        return rows[path]

    def load_parameters_dict(self, values: dict[str, float]) -> None:
        """Set parameters from ``{"stage.name": value}``; kernels follow at the next call."""
        stages = self.stages()
        known = self.parameters_dict()
        for path, value in values.items():
            if path not in known:
                raise TopoError(
                    "unknown physical parameter path",
                    field=path,
                    expected=sorted(known),
                    found=path,
                )
            stage_name, name = path.split(".", 1)
            stages[stage_name].set_physical(name, value, path)

    def save_parameters(self, path: str | Path) -> Path:
        """Write every physical parameter to a JSON file, atomically.

        ``{"format": 1, "resolution": {...}, "parameters": {"stage.name": {"value", "unit",
        "doc"}}}``: readable by ``load_parameters`` and by people.
        """
        path = Path(path)
        payload = {
            "format": PARAMETER_FILE_FORMAT,
            "resolution": dataclasses.asdict(self.resolution),
            "parameters": {
                row.path: {"value": row.value, "unit": row.unit, "doc": row.doc}
                for row in self.describe()
            },
        }
        atomic_write_bytes((json.dumps(payload, indent=2) + "\n").encode(), path)
        return path

    def load_parameters(self, path: str | Path) -> None:
        """Set the parameters saved by ``save_parameters`` (the resolution must match)."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
            values = {key: float(entry["value"]) for key, entry in payload["parameters"].items()}
            saved_resolution = Resolution(**payload["resolution"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TopoError(
                "not a retina parameter file",
                file=path,
                expected='JSON written by Retina.save_parameters ("parameters": {path: {value}})',
                found=f"{type(error).__name__}: {error}",
            ) from error
        if saved_resolution != self.resolution:
            raise TopoError(
                "the file was saved at another resolution; build the retina with it",
                file=path,
                field="resolution",
                expected=self.resolution,
                found=saved_resolution,
            )
        try:
            self.load_parameters_dict(values)
        except TopoError as error:
            raise TopoError(str(error).splitlines()[0], file=path, field=error.field) from error

    def reset(self) -> None:
        """Forget all streaming state (filters, bipolar, LIF and its noise position)."""
        for stage in self.stages().values():
            stage.reset()

    def streaming_state(self) -> dict[str, torch.Tensor]:
        """Everything a movie carries between chunks, as ``{"stage.attribute": tensor}``.

        Filter and bipolar frames, the LIF potentials and refractory counts, and the spiking
        noise position (``on_spikes.step``): save it with ``torch.save`` and pass it to
        ``load_streaming_state`` to continue the movie later, bit for bit as if never stopped.
        Parameters are not included (``parameters_dict`` / ``save_parameters``).
        """
        return {
            f"{stage_name}.{key}": value
            for stage_name, stage in self.stages().items()
            for key, value in stage.streaming_state().items()
        }

    def load_streaming_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue the movie whose ``streaming_state()`` this is (stages absent start fresh)."""
        stages = self.stages()
        grouped: dict[str, dict[str, torch.Tensor]] = {name: {} for name in stages}
        for key, value in state.items():
            stage_name, _, attribute = str(key).partition(".")
            if stage_name not in stages or not attribute:
                raise TopoError(
                    "unknown streaming-state entry",
                    field=str(key),
                    expected=sorted(f"{n}.{a}" for n, st in stages.items() for a in st.STATE),
                    found=key,
                )
            grouped[stage_name][attribute] = value
        for stage_name, stage in stages.items():
            stage.load_streaming_state(grouped[stage_name], prefix=f"{stage_name}.")

    def initialize_steady_state(
        self,
        background_luminance: float,
        height: int,
        width: int,
        batch: int = 1,
        channels: int = 1,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Start a new movie as if a uniform screen of ``background_luminance`` had always been on.

        VirtualRetina's initialisation: the OPL, bipolar and ganglion
        filters get their steady state (``steady_state.py``), so a uniform movie at that
        luminance gives a constant output from frame 0. The spiking stages are reset (their
        noise is not a steady state); the next movie must have frames
        ``(batch, channels, height, width)`` in ``dtype`` (default dtype if None).
        """
        self._check_luminance(
            float(background_luminance), float(background_luminance), "background", stacklevel=3
        )
        shape = (int(batch), int(channels), int(height), int(width))
        if min(shape) < 1:
            raise TopoError(
                "the steady-state frame shape must be positive",
                field="batch, channels, height, width",
                expected=">= 1 each",
                found=shape,
            )
        self.reset()
        dtype = torch.get_default_dtype() if dtype is None else dtype
        ganglia = (self.on, self.off)
        set_steady_state(
            self.opl, self.bipolar, ganglia, background_luminance, shape, dtype, device
        )

    def _as_video(self, video: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(video)) if isinstance(video, np.ndarray) else video
        if not isinstance(x, torch.Tensor):
            raise TopoError(
                "video must be a tensor",
                field="video",
                expected="torch.Tensor",
                found=type(video).__name__,
            )
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        if x.dim() != 5:
            raise TopoError(
                "the retina takes a 5-D video",
                field="video",
                expected="(batch, channels, time, height, width)",
                found=tuple(x.shape),
            )
        if not bool(torch.isfinite(x).all()):
            raise TopoError("the video has NaN or inf values", field="video", expected="finite")
        if x.numel() == 0:
            return x
        self._check_luminance(float(x.min()), float(x.max()), "video")
        return x

    def _check_luminance(self, low: float, high: float, field: str, stacklevel: int = 4) -> None:
        """Warn (or raise if ``strict_luminance``) when [low, high] leaves the luminance range."""
        top = self.resolution.input_luminance_range
        if not (np.isfinite(low) and np.isfinite(high)):
            raise TopoError("luminance must be finite", field=field, found=f"[{low}, {high}]")
        if low < 0 or high > top:
            message = "luminance outside [0, input_luminance_range]"
            if self.strict_luminance:
                raise TopoError(
                    message, field=field, expected=f"[0, {top}]", found=f"[{low}, {high}]"
                )
            warnings.warn(f"{message}: found [{low}, {high}], range {top}", stacklevel=stacklevel)

    def forward(self, video: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """video: (batch, channels, time, height, width) luminance → named outputs, same shape.

        Continues the current movie (state carried from the previous call); ``reset()`` first to
        start a new one.
        """
        return self._step(self._as_video(video))

    def _step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One chunk of an already checked video through all stages."""
        for stage in self.stages().values():
            stage.check_parameters()
        bipolar = self.bipolar(self.opl(x))
        outputs = {}
        for name, ganglion, spiking in (
            ("ON", self.on, self.on_spikes),
            ("OFF", self.off, self.off_spikes),
        ):
            current = ganglion(bipolar)
            if self.spikes:
                outputs[f"ganglion_spikes_{name}"] = spiking(current)
            else:
                outputs[f"ganglion_input_{name}"] = current
        return outputs

    def run(
        self, video: torch.Tensor | np.ndarray, chunk: int = 100, warmup_frames: int = 0
    ) -> dict[str, torch.Tensor]:
        """Stream ``video`` through the model ``chunk`` frames at a time, carrying all state.

        Outputs are concatenated along time and equal a single call (exactly for the
        deterministic stages and for the seeded spikes). Gradients do not cross chunks.

        ``warmup_frames`` = N first streams N copies of the video's first frame (in chunks, without
        gradients) and discards their outputs: the result equals running ``[first]*N + video``
        and dropping the first N frames; it keeps the video's length. The warm-up continues the
        current state and draws spiking noise like any other frames. For an exactly settled
        start on a uniform background use ``initialize_steady_state`` instead.
        """
        for name, value, low in (("chunk", chunk, 1), ("warmup_frames", warmup_frames, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TopoError(
                    f"{name} is a number of frames", field=name, expected=f">= {low}", found=value
                )
        x = self._as_video(video)
        if warmup_frames:
            if x.shape[2] == 0:
                raise TopoError(
                    "warm-up repeats the first frame of an empty video",
                    field="warmup_frames",
                    expected="a video with at least one frame",
                    found=tuple(x.shape),
                )
            first = x[:, :, :1]
            with torch.no_grad():
                for start in range(0, warmup_frames, chunk):
                    n = min(chunk, warmup_frames - start)
                    self._step(first.expand(-1, -1, n, -1, -1))
        pieces: dict[str, list[torch.Tensor]] = {}
        for part in torch.split(x, chunk, dim=2):
            for key, value in self._step(part).items():
                pieces.setdefault(key, []).append(value)
        return {key: torch.cat(values, dim=2) for key, values in pieces.items()}
