"""The firing-rate encoder: core → (shifted) Gaussian readout → ELU + 1.

One shared core, one readout (and optionally one shifter) per data key, as neuralpredictors'
``FiringRateEncoder``. The output ELU(x + offset) + 1 is positive, so
it can be the rate of a Poisson loss. State-dict prefixes are ``core.``, ``readout.<key>.`` and
``shifter.<key>.`` like the published checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.readouts.gaussian import Reduction
from topo_models.predictive.readouts.multi import MultipleFullGaussian2d
from topo_models.predictive.shifters import MLPShifter, StaticAffine2dShifter

__all__ = ["FiringRateEncoder"]


class FiringRateEncoder(nn.Module):
    """Predict firing rates (B, n_neurons[data_key]) from images.

    Args:
        core: a module whose ``forward(x)`` returns ``(output, features)`` (output (B, C, H, W),
            features a dict of every layer's activation) and which has ``regularizer()``.
        readout: one readout per data key.
        shifter: one shifter per data key; when given, every forward needs ``pupil_center``.
        elu_offset: added before the output ELU.
    """

    def __init__(
        self,
        core: nn.Module,
        readout: MultipleFullGaussian2d,
        shifter: MLPShifter | StaticAffine2dShifter | None = None,
        elu_offset: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(readout, MultipleFullGaussian2d):
            raise TopoError(
                "the readout must hold one readout per data key",
                field="readout",
                expected="MultipleFullGaussian2d",
                found=type(readout).__name__,
            )
        if shifter is not None:
            missing = [k for k in readout if k not in shifter]
            if missing:
                raise TopoError(
                    "the shifter lacks data keys of the readout",
                    field="shifter",
                    expected=list(readout),
                    found=list(shifter),
                )
        self.core = core
        self.readout = readout
        self.shifter = shifter
        self.elu_offset = float(elu_offset)

    @property
    def data_keys(self) -> list[str]:
        return list(self.readout.keys())

    def positions(self, data_key: str | None = None) -> torch.Tensor:
        """Eval readout positions (n, 2) of ``data_key``, grid units (x = width, y = height)."""
        return self.readout.positions(data_key)

    def core_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The core's ``(output, features)``, checked."""
        result = self.core(images)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise TopoError(
                "the core must return (output, features)",
                field="core",
                expected="(Tensor, dict[str, Tensor])",
                found=type(result).__name__,
            )
        return result

    def forward(
        self,
        images: torch.Tensor,
        data_key: str | None = None,
        pupil_center: torch.Tensor | None = None,
        behavior: torch.Tensor | None = None,
        trial_idx: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
        detach_core: bool = False,
        sample: bool | None = None,
        out_idx: object | None = None,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rates ELU(readout + elu_offset) + 1, shape (B, n) — or ``(rates, features)``.

        Args:
            images: (B, C, H, W) normalised images (behaviour planes already appended).
            data_key: which readout; optional with a single one.
            pupil_center: (B, 2), required with a shifter.
            behavior: accepted so whole batches can be passed; the baseline uses behaviour only
                as input channels (there is no modulator), so it is not read.
            trial_idx: (B, k) appended to the MLP shifter's input; unused without a shifter.
            shift: (B, 2) readout shift for models without a shifter; an error with one.
            detach_core: stop gradients from the readout into the core (``features`` are not
                detached, so spatial losses on them still train the core).
            sample: override the readout's train/eval position sampling.
            out_idx: compute only these neurons.
            return_features: also return the core's features dict (for spatial losses).
        """
        del behavior  # part of the batch interface; no modulator reads it
        key = self.readout.resolve_key(data_key)
        output, features = self.core_forward(images)
        if detach_core:
            output = output.detach()
        if self.shifter is not None:
            if shift is not None:
                raise TopoError(
                    "this model computes its shift from pupil_center; do not pass shift too",
                    field="shift",
                )
            if pupil_center is None:
                raise TopoError(
                    "this model has a shifter and needs the pupil centre of every image",
                    field="pupil_center",
                    expected="pupil_center of shape (B, 2)",
                )
            shift = self.shifter[key](pupil_center, trial_idx)
        readout = self.readout[key](output, sample=sample, shift=shift, out_idx=out_idx)
        rates = F.elu(readout + self.elu_offset) + 1.0
        return (rates, features) if return_features else rates

    def regularizer(
        self, data_key: str | None = None, reduction: Reduction = "sum", detach_core: bool = False
    ) -> torch.Tensor:
        """Core regulariser + readout[data_key] regulariser (+ shifter[data_key]).

        The published trainer adds the core term only when the core trains and never the shifter
        term; the shifter term is 0 for the MLP shifter anyway. ``detach_core`` detaches the core
        term (its value is still included).
        """
        key = self.readout.resolve_key(data_key)
        core = torch.as_tensor(self.core.regularizer())
        total = (core.detach() if detach_core else core) + self.readout.regularizer(key, reduction)
        if self.shifter is not None:
            total = total + self.shifter.regularizer(key)
        return total
