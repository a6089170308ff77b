"""One ``FullGaussian2d`` readout per data key (mouse/session), as neuralpredictors'
``MultipleFullGaussian2d``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.readouts.gaussian import FullGaussian2d, GaussType, Reduction

__all__ = ["MultipleFullGaussian2d"]


def _require_keys(field: str, given: Mapping[str, object], keys: Mapping[str, int]) -> None:
    missing = [k for k in keys if k not in given]
    if missing:
        raise TopoError(
            "per-key input lacks some data keys",
            field=field,
            expected=list(keys),
            found=sorted(given),
        )


class MultipleFullGaussian2d(nn.ModuleDict):
    """One ``FullGaussian2d`` per data key (mouse/session), sharing a core.

    State-dict keys are ``<data_key>.<readout key>`` (``readout.<data_key>.sigma`` inside the
    encoder). Every keyword is passed to each readout; ``source_grids`` and
    ``mean_activity_dict`` are per key.

    Args:
        in_shape_dict: data key → core output shape (C, H, W).
        n_neurons_dict: data key → neuron count; its order is the readout order.
        source_grids: data key → (n, d) cortical coordinates; required with a predictor.
        mean_activity_dict: data key → (n,) initial bias.
        bias, init_mu_range, init_sigma, batch_sample, align_corners, gauss_type,
            grid_mean_predictor, feature_reg_weight, psd_sigma: see ``FullGaussian2d``.
    """

    def __init__(
        self,
        in_shape_dict: Mapping[str, Sequence[int]],
        n_neurons_dict: Mapping[str, int],
        *,
        source_grids: Mapping[str, object] | None = None,
        mean_activity_dict: Mapping[str, torch.Tensor] | None = None,
        bias: bool = True,
        init_mu_range: float = 0.1,
        init_sigma: float = 1.0,
        batch_sample: bool = True,
        align_corners: bool = True,
        gauss_type: GaussType = "full",
        grid_mean_predictor: Mapping[str, object] | None = None,
        feature_reg_weight: float = 1.0,
        psd_sigma: bool = False,
    ) -> None:
        super().__init__()
        if not n_neurons_dict:
            raise TopoError("a multi-readout needs at least one data key", field="n_neurons_dict")
        if grid_mean_predictor is not None and source_grids is None:
            raise TopoError(
                "a grid mean predictor needs source grids (cortical coordinates) per data key",
                field="source_grids",
                expected=list(n_neurons_dict),
            )
        _require_keys("in_shape_dict", in_shape_dict, n_neurons_dict)
        if grid_mean_predictor is not None:
            _require_keys("source_grids", source_grids, n_neurons_dict)
        if mean_activity_dict is not None:
            _require_keys("mean_activity_dict", mean_activity_dict, n_neurons_dict)
        for key, n in n_neurons_dict.items():
            if not isinstance(key, str) or not key or "." in key:
                raise TopoError(
                    "data keys must be non-empty strings without '.'", field="data_key", found=key
                )
            self[key] = FullGaussian2d(
                in_shape=in_shape_dict[key],
                outdims=n,
                bias=bias,
                init_mu_range=init_mu_range,
                init_sigma=init_sigma,
                batch_sample=batch_sample,
                align_corners=align_corners,
                gauss_type=gauss_type,
                grid_mean_predictor=grid_mean_predictor,
                source_grid=None if grid_mean_predictor is None else source_grids[key],
                mean_activity=None if mean_activity_dict is None else mean_activity_dict[key],
                feature_reg_weight=feature_reg_weight,
                psd_sigma=psd_sigma,
            )

    @property
    def data_keys(self) -> list[str]:
        return list(self.keys())

    def resolve_key(self, data_key: str | None) -> str:
        """``data_key``, or the only key when None; a clear error for an unknown key."""
        if data_key is None:
            if len(self) == 1:
                return next(iter(self.keys()))
            raise TopoError(
                "several readouts: name the data key", field="data_key", expected=self.data_keys
            )
        if data_key not in self:
            raise TopoError(
                "unknown data key", field="data_key", expected=self.data_keys, found=data_key
            )
        return data_key

    def forward(
        self,
        x: torch.Tensor,
        data_key: str | None = None,
        sample: bool | None = None,
        shift: torch.Tensor | None = None,
        out_idx: object | None = None,
    ) -> torch.Tensor:
        """Responses (B, n_key) of the readout ``data_key`` (optional with a single key)."""
        return self[self.resolve_key(data_key)](x, sample=sample, shift=shift, out_idx=out_idx)

    def initialize(self, mean_activity_dict: Mapping[str, torch.Tensor] | None = None) -> None:
        for key, readout in self.items():
            readout.initialize(None if mean_activity_dict is None else mean_activity_dict.get(key))

    def regularizer(
        self, data_key: str | None = None, reduction: Reduction = "sum"
    ) -> torch.Tensor:
        return self[self.resolve_key(data_key)].regularizer(reduction)

    def positions(self, data_key: str | None = None) -> torch.Tensor:
        """Evaluation positions (n, 2) of ``data_key``'s neurons (x = width, y = height)."""
        return self[self.resolve_key(data_key)].positions()
