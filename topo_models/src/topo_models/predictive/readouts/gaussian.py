"""Gaussian readouts: every neuron reads the core's feature map at one learned position.

``FullGaussian2d`` follows Lurz et al. 2021 (ICLR, "Generalization in data-driven models of
primary visual cortex"): neuron n has a 2-d Gaussian over feature-map positions. Training draws
one position per image and neuron (reparameterised, so μ and σ get gradients), evaluation reads
at μ. The response is the bilinearly interpolated feature vector at that position, dotted with
the neuron's feature weights, plus a bias. Parameter and buffer names and shapes are those of
neuralpredictors 0.3.0, so the published Sensorium checkpoints load.

Positions are ``F.grid_sample`` coordinates: (x = width, y = height) in [-1, 1]; with
``align_corners=True`` ±1 are the centres of the corner pixels, whatever the map's size, so the
readout depends on the core only through its channel count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from topo_models.errors import TopoError
from topo_models.predictive.readouts.grid import (
    GRID_PREDICTOR_KEYS,
    _as_float_tensor,
    grid_mean_predictor_mlp,
    normalize_source_grid,
)

__all__ = ["FullGaussian2d"]

GaussType = Literal["full", "uncorrelated", "isotropic"]
Reduction = Literal["sum", "mean", "none"]

# Trailing shape of ``sigma`` per Gaussian type: (1, n, *shape).
SIGMA_SHAPES: dict[str, tuple[int, int]] = {
    "full": (2, 2),
    "uncorrelated": (1, 2),
    "isotropic": (1, 1),
}


def _inverse_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class FullGaussian2d(nn.Module):
    """Per-neuron Gaussian position readout (neuralpredictors' ``FullGaussian2d``).

    Args:
        in_shape: (channels, height, width) of the core output; only channels is used.
        outdims: number of neurons n.
        bias: learn a per-neuron bias.
        init_mu_range: ``_mu`` starts ~ U(±init_mu_range); must lie in (0, 1].
        init_sigma: ``sigma`` starts at init_sigma (diagonal types) or ~ U(±init_sigma) (full).
        batch_sample: draw a position per image; False shares one draw across the batch.
        align_corners: passed to ``F.grid_sample``.
        gauss_type: ``"full"`` (sigma (1,n,2,2)), ``"uncorrelated"`` ((1,n,1,2)) or
            ``"isotropic"`` ((1,n,1,1)).
        grid_mean_predictor: ``{"hidden_layers", "hidden_features", "final_tanh"}``; μ is then
            ``mu_transform(source_grid)`` and there is no ``_mu`` parameter.
        source_grid: (n, d) cortical coordinates, required with a predictor; normalised by
            ``normalize_source_grid`` and kept as the buffer ``source_grid``.
        mean_activity: (n,) initial bias; without it the bias starts at 0.
        feature_reg_weight: weight of the feature L1 in ``regularizer`` (the baseline's
            ``gamma_readout``).
        psd_sigma: full type only. The published ``sigma`` is an unconstrained matrix S with
            Σ = SSᵀ and nothing keeps S symmetric (neuralpredictors issue #154). With
            ``psd_sigma=True``, ``sigma`` holds a lower-triangular Cholesky factor L: its strict
            lower triangle is used as is, its diagonal passes through softplus (> 0), and the
            upper entry ``sigma[..., 0, 1]`` is ignored. Σ = LLᵀ is then symmetric positive
            definite by construction and the factor is unique. It starts at L = init_sigma·I.
            The buffer ``sigma_is_cholesky`` marks such readouts in state dicts.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        outdims: int,
        bias: bool = True,
        init_mu_range: float = 0.1,
        init_sigma: float = 1.0,
        batch_sample: bool = True,
        align_corners: bool = True,
        gauss_type: GaussType = "full",
        grid_mean_predictor: Mapping[str, object] | None = None,
        source_grid: object | None = None,
        mean_activity: torch.Tensor | None = None,
        feature_reg_weight: float = 1.0,
        psd_sigma: bool = False,
    ) -> None:
        super().__init__()
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != 3 or min(in_shape) < 1:
            raise TopoError(
                "readout in_shape must be (channels, height, width)",
                field="in_shape",
                found=in_shape,
            )
        if int(outdims) < 1:
            raise TopoError("a readout needs at least one neuron", field="outdims", found=outdims)
        if not 0.0 < init_mu_range <= 1.0:
            raise TopoError(
                "bad init_mu_range", field="init_mu_range", expected="(0, 1]", found=init_mu_range
            )
        if not init_sigma > 0.0:
            raise TopoError("bad init_sigma", field="init_sigma", expected="> 0", found=init_sigma)
        if gauss_type not in SIGMA_SHAPES:
            raise TopoError(
                "unknown gauss_type",
                field="gauss_type",
                expected=list(SIGMA_SHAPES),
                found=gauss_type,
            )
        if psd_sigma and gauss_type != "full":
            raise TopoError(
                "psd_sigma applies to the full Gaussian only (the diagonal types' covariance "
                "diag(sigma²) is already valid)",
                field="psd_sigma",
                expected="gauss_type='full'",
                found=gauss_type,
            )
        self.in_shape = in_shape
        self.outdims = n = int(outdims)
        self.init_mu_range = float(init_mu_range)
        self.init_sigma = float(init_sigma)
        self.batch_sample = bool(batch_sample)
        self.align_corners = bool(align_corners)
        self.gauss_type = gauss_type
        self.feature_reg_weight = float(feature_reg_weight)
        self.psd_sigma = bool(psd_sigma)
        self.mean_activity = self._check_mean_activity(mean_activity)

        if grid_mean_predictor is None:
            if source_grid is not None:
                raise TopoError(
                    "a source grid needs a grid mean predictor to map it to positions",
                    field="source_grid",
                    expected="grid_mean_predictor={'hidden_layers': …, …}",
                )
            self._mu = nn.Parameter(torch.empty(1, n, 1, 2))
        else:
            self._init_grid_predictor(grid_mean_predictor, source_grid)
        self.sigma = nn.Parameter(torch.empty(1, n, *SIGMA_SHAPES[gauss_type]))
        if self.psd_sigma:
            self.register_buffer("sigma_is_cholesky", torch.tensor(True))
        self._features = nn.Parameter(torch.empty(1, in_shape[0], 1, n))
        if bias:
            self.bias = nn.Parameter(torch.empty(n))
        else:
            self.register_parameter("bias", None)
        self.initialize()

    # ------------------------------------------------------------------ construction

    def _check_mean_activity(self, mean_activity: object) -> torch.Tensor | None:
        if mean_activity is None:
            return None
        value = _as_float_tensor(mean_activity, torch.float32)
        if value.numel() != self.outdims or value.dim() > 1:
            raise TopoError(
                "mean activity must have one value per neuron",
                field="mean_activity",
                expected=(self.outdims,),
                found=tuple(value.shape),
            )
        return value.reshape(-1)

    def _init_grid_predictor(self, config: Mapping[str, object], source_grid: object) -> None:
        unknown = sorted(set(config) - set(GRID_PREDICTOR_KEYS))
        if unknown:
            raise TopoError(
                "unknown grid mean predictor option(s)",
                field="grid_mean_predictor",
                expected=list(GRID_PREDICTOR_KEYS),
                found=unknown,
            )
        if source_grid is None:
            raise TopoError(
                "a grid mean predictor needs the neurons' cortical coordinates",
                field="source_grid",
                expected=f"({self.outdims}, dims) array",
            )
        grid = normalize_source_grid(source_grid)
        if grid.shape[0] != self.outdims:
            raise TopoError(
                "source grid must have one row per neuron",
                field="source_grid",
                expected=f"({self.outdims}, dims)",
                found=tuple(grid.shape),
            )
        self.mu_transform = grid_mean_predictor_mlp(
            grid.shape[1],
            hidden_layers=int(config.get("hidden_layers", 0)),
            hidden_features=int(config.get("hidden_features", 20)),
            final_tanh=bool(config.get("final_tanh", False)),
        )
        self.register_buffer("source_grid", grid)

    @property
    def has_grid_predictor(self) -> bool:
        """True when μ comes from ``mu_transform(source_grid)`` rather than ``_mu``."""
        return "_mu" not in self._parameters

    def initialize(self, mean_activity: torch.Tensor | None = None) -> None:
        """(Re)draw μ and σ, set feature weights to 1/C and the bias to the mean activity (or 0).

        ``mean_activity`` defaults to the one given at construction. The predictor MLP keeps its
        own (torch default) init, as in the published code.
        """
        mean = self._check_mean_activity(mean_activity)
        mean = self.mean_activity if mean is None else mean
        with torch.no_grad():
            if not self.has_grid_predictor:
                self._mu.uniform_(-self.init_mu_range, self.init_mu_range)
            if self.psd_sigma:
                self.sigma.zero_()
                self.sigma.diagonal(dim1=-2, dim2=-1).fill_(_inverse_softplus(self.init_sigma))
            elif self.gauss_type == "full":
                self.sigma.uniform_(-self.init_sigma, self.init_sigma)
            else:
                self.sigma.fill_(self.init_sigma)
            self._features.fill_(1.0 / self.in_shape[0])
            if self.bias is not None:
                self.bias.copy_(torch.zeros(self.outdims) if mean is None else mean)

    def start_positions_at(self, target: torch.Tensor, steps: int = 500) -> None:
        """Start the readout positions μ near ``target`` (n, 2) grid units (x, y).

        A learned ``_mu`` is set to it. A position MLP is fitted to it from its own random
        start (full-batch Adam on a Huber loss, so a few badly estimated targets pull it little):
        μ stays a smooth function of cortical position, the best such map of the targets.
        Targets are clipped to ±0.95, inside the final tanh's range. Draws no random numbers.
        """
        target = torch.as_tensor(target, dtype=torch.float32).reshape(self.outdims, 2)
        if not torch.isfinite(target).all():
            raise TopoError("start positions hold NaN or infinite values", field="target")
        target = target.clamp(-0.95, 0.95).to(self.sigma.device)
        if not self.has_grid_predictor:
            with torch.no_grad():
                self._mu.copy_(target.view(1, self.outdims, 1, 2))
            return
        parameters = list(self.mu_transform.parameters())
        optimiser = torch.optim.Adam(parameters, lr=0.01)
        with torch.enable_grad():
            for _ in range(steps):
                optimiser.zero_grad(set_to_none=True)
                fitted = self.mu_transform(self.source_grid)
                F.smooth_l1_loss(fitted, target, beta=0.1).backward()
                optimiser.step()
        for parameter in parameters:
            parameter.grad = None

    # ------------------------------------------------------------------ the Gaussian

    @property
    def features(self) -> torch.Tensor:
        """Feature weights, (1, C, 1, n)."""
        return self._features

    @property
    def mu(self) -> torch.Tensor:
        """Mean positions, (1, n, 1, 2), before the clamp to [-1, 1]."""
        if self.has_grid_predictor:
            return self.mu_transform(self.source_grid).view(1, self.outdims, 1, 2)
        return self._mu

    def sigma_factor(self) -> torch.Tensor:
        """The matrix L with position = μ + L z, z ~ N(0, I): (n, 2, 2).

        Full: ``sigma`` itself (published) or its Cholesky reading (``psd_sigma``); uncorrelated:
        diag(sigma); isotropic: sigma · I.
        """
        sigma = self.sigma[0]
        if self.gauss_type == "full":
            if not self.psd_sigma:
                return sigma
            lower = torch.tril(sigma, diagonal=-1)
            return lower + torch.diag_embed(F.softplus(sigma.diagonal(dim1=-2, dim2=-1)))
        eye = torch.eye(2, dtype=sigma.dtype, device=sigma.device)
        return sigma.reshape(self.outdims, 1, -1) * eye  # (n,1,2|1) * (2,2) → diagonal

    def covariance(self) -> torch.Tensor:
        """Covariance LLᵀ of the (unclamped) position distribution, (n, 2, 2)."""
        factor = self.sigma_factor()
        return factor @ factor.transpose(-1, -2)

    def sample_grid(self, batch_size: int, sample: bool | None = None) -> torch.Tensor:
        """Read-out positions, (batch_size, n, 1, 2), clamped to [-1, 1].

        ``sample`` defaults to ``self.training``: draw μ + Lz with a fresh z per image and neuron,
        else use μ. A learned ``_mu`` is first clamped to [-1, 1] in place (as published), so
        eval positions and the parameter agree.
        """
        if not self.has_grid_predictor:
            # through .data: no version bump, so a graph that already used _mu stays valid
            self._mu.data.clamp_(-1.0, 1.0)
        mu = self.mu
        sample = self.training if sample is None else sample
        if not sample:
            return mu.clamp(-1.0, 1.0).expand(batch_size, -1, -1, -1)
        z = torch.randn(batch_size, self.outdims, 2, dtype=mu.dtype, device=mu.device)
        # Σ_d L[n, c, d] z[b, n, d] as one broadcast product (einsum picks a batched matmul over
        # the n neurons here, thousands of tiny products)
        offset = (self.sigma_factor().unsqueeze(0) * z.unsqueeze(2)).sum(-1)
        return (mu + offset.unsqueeze(2)).clamp(-1.0, 1.0)

    def positions(self) -> torch.Tensor:
        """Evaluation positions, (n, 2) grid units in [-1, 1], columns (x = width, y = height).

        Differentiable (μ of a predictor depends on ``mu_transform``), so spatial losses on
        readout positions can train it.
        """
        return self.sample_grid(1, sample=False).reshape(self.outdims, 2)

    # ------------------------------------------------------------------ forward

    def _neuron_index(self, out_idx: object, device: torch.device) -> torch.Tensor:
        if torch.is_tensor(out_idx):
            index = out_idx.detach().cpu()
        else:
            index = torch.as_tensor(np.asarray(out_idx))
        if index.dtype == torch.bool:
            if index.shape != (self.outdims,):
                raise TopoError(
                    "a boolean neuron mask needs one entry per neuron",
                    field="out_idx",
                    expected=(self.outdims,),
                    found=tuple(index.shape),
                )
            index = index.nonzero().reshape(-1)
        index = index.reshape(-1).long()
        if index.numel() and (index.min() < -self.outdims or index.max() >= self.outdims):
            raise TopoError(
                "neuron index out of range",
                field="out_idx",
                expected=f"[0, {self.outdims})",
                found=(int(index.min()), int(index.max())),
            )
        return index.to(device)

    def forward(
        self,
        x: torch.Tensor,
        sample: bool | None = None,
        shift: torch.Tensor | None = None,
        out_idx: object | None = None,
    ) -> torch.Tensor:
        """Responses (B, n) — or (B, len(out_idx)) — from core features x: (B, C, H, W).

        Args:
            x: core output; any H, W (positions are in relative units).
            sample: override train/eval sampling (see ``sample_grid``).
            shift: (B, 2) added to every position *after* the clamp (eye movements), so shifted
                positions may leave [-1, 1]; ``grid_sample`` reads zeros there.
            out_idx: neuron indices (ints or a boolean mask) to compute.
        """
        if x.dim() != 4 or x.shape[1] != self.in_shape[0]:
            raise TopoError(
                "readout input must be (batch, channels, height, width) with the core's channels",
                field="x",
                expected=f"(B, {self.in_shape[0]}, H, W)",
                found=tuple(x.shape),
            )
        batch = x.shape[0]
        grid = self.sample_grid(batch if self.batch_sample else 1, sample)
        grid = grid.expand(batch, -1, -1, -1)
        features = self.features.reshape(self.in_shape[0], self.outdims)
        bias = self.bias
        if out_idx is not None:
            index = self._neuron_index(out_idx, x.device)
            grid, features = grid[:, index], features[:, index]
            bias = None if bias is None else bias[index]
        if shift is not None:
            if shift.shape != (batch, 2):
                raise TopoError(
                    "shift must be one (x, y) offset per image",
                    field="shift",
                    expected=(batch, 2),
                    found=tuple(shift.shape),
                )
            grid = grid + shift[:, None, None, :]
        sampled = F.grid_sample(x, grid, mode="bilinear", align_corners=self.align_corners)
        # a broadcast product and a sum over channels: einsum would run a matmul batched over
        # the neurons (~4× slower forward + backward at 7,500 neurons on a CPU)
        y = (sampled.squeeze(-1) * features).sum(1)
        return y if bias is None else y + bias

    # ------------------------------------------------------------------ regularisation

    def feature_l1(self, reduction: Reduction = "sum") -> torch.Tensor:
        """L1 of the feature weights: sum, mean, or per weight (``"none"``, shape (1,C,1,n))."""
        weights = self.features.abs()
        if reduction == "sum":
            return weights.sum()
        if reduction == "mean":
            return weights.mean()
        if reduction == "none":
            return weights
        raise TopoError(
            "unknown reduction", field="reduction", expected="sum|mean|none", found=reduction
        )

    def regularizer(self, reduction: Reduction = "sum") -> torch.Tensor:
        """``feature_reg_weight`` · feature L1 (the baseline's 0.0076 · Σ|w|)."""
        return self.feature_l1(reduction) * self.feature_reg_weight

    def extra_repr(self) -> str:
        c, h, w = self.in_shape
        grid = "predicted grid" if self.has_grid_predictor else "learned grid"
        psd = ", cholesky sigma" if self.psd_sigma else ""
        bias = self.bias is not None
        return f"{self.gauss_type}, {c}x{h}x{w} -> {self.outdims}, {grid}{psd}, bias={bias}"
