"""``Retina``: the VirtualRetina-like model assembled from its stages (reference/retina.md §1).

``luminance → OPL → Bipolar ─┬→ GanglionInput(+1) → GanglionSpiking → ganglion_spikes_ON``
``                           └→ GanglionInput(−1) → GanglionSpiking → ganglion_spikes_OFF``

ON and OFF share OPL and bipolar (§1.7). Physical parameters are addressed by dotted paths
``<stage>.<name>`` with stages ``opl``, ``bipolar``, ``on``, ``off`` (ganglion input) and
``on_spikes``, ``off_spikes``; as constructor keywords the dot becomes an underscore
(``opl_sigma_center=0.05``, ``on_i_0=37.0``, ``off_spikes_refr_mu=0.003``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.retina.parameters import PhysicalStage
from topo_models.retina.resolution import Resolution
from topo_models.retina.stages import OPL, Bipolar, GanglionInput, GanglionSpiking

CHANNELS = ("ON", "OFF")


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

    def describe(self) -> list[tuple[str, float, str, str]]:
        """(path, value, unit, one-line doc) for every physical parameter."""
        rows = []
        for stage_name, stage in self.stages().items():
            for spec, param in stage.physical_parameters():
                rows.append((f"{stage_name}.{spec.name}", param.item(), spec.unit, spec.doc))
        return rows

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

    def reset(self) -> None:
        """Forget all streaming state (filters, bipolar, LIF and its noise generator)."""
        for stage in self.stages().values():
            stage.reset()

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
        top = self.resolution.input_luminance_range
        if x.numel() == 0:
            return x
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > top:
            message = "luminance outside [0, input_luminance_range]"
            if self.strict_luminance:
                raise TopoError(
                    message, field="video", expected=f"[0, {top}]", found=f"[{low}, {high}]"
                )
            warnings.warn(f"{message}: found [{low}, {high}], range {top}", stacklevel=3)
        return x

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

    def run(self, video: torch.Tensor | np.ndarray, chunk: int = 100) -> dict[str, torch.Tensor]:
        """Stream ``video`` through the model ``chunk`` frames at a time, carrying all state.

        Outputs are concatenated along time and equal a single call (exactly for the
        deterministic stages and for the seeded spikes). Gradients do not cross chunks.
        """
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise TopoError(
                "chunk is a number of frames", field="chunk", expected=">= 1", found=chunk
            )
        x = self._as_video(video)
        pieces: dict[str, list[torch.Tensor]] = {}
        for part in torch.split(x, chunk, dim=2):
            for key, value in self._step(part).items():
                pieces.setdefault(key, []).append(value)
        return {key: torch.cat(values, dim=2) for key, values in pieces.items()}
