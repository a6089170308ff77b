"""Rotation-equivariant convolutions built from a steerable 2-D Hermite basis.

Ecker et al. 2019, "A rotation-equivariant convolutional neural network model of primary visual
cortex" (ICLR): every filter is a linear combination of 2-D Hermite functions
exp(−r²/4) r^m L_ν^(m)(r²/2) {cos mθ, sin mθ} (rank n = m + 2ν < kernel size, so k(k+1)/2
functions). Rotating a filter by α only mixes each (cos mθ, sin mθ) pair by the angle mα, so the
``num_rotations`` rotated copies of each filter come from one set of learned coefficients.
Output channels are rotation-major (channel = rotation · features + feature); a hidden layer's
copy for rotation s also shifts its input orientations by s, which makes the whole stack
equivariant: rotating the image by 2π/num_rotations rotates every feature map and rolls the
orientation axis by one. Filters are sampled on an ``upsampling``-times finer grid and summed
back over blocks, which keeps 90° rotations exact.

Parameter names follow neuralpredictors (``hermite_conv.coeffs`` of shape (n_basis, in, out),
``norm.batch_norm.*``); the basis and rotation tensors are derived constants and not saved.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from topo_models.errors import TopoError


def generalized_laguerre(degree: int, alpha: float, x: np.ndarray) -> np.ndarray:
    """L_degree^(alpha)(x) by the three-term recurrence (numpy only; no scipy dependency)."""
    previous, current = np.zeros_like(x), np.ones_like(x)
    for k in range(degree):
        previous, current = (
            current,
            ((2 * k + 1 + alpha - x) * current - (k + alpha) * previous) / (k + 1),
        )
    return current


def hermite_basis_2d(
    max_rank: int, n_points: int, extent: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unit-norm 2-D Hermite functions of rank < ``max_rank`` on an n_points² grid.

    Grid: x (columns, left → right) and y (rows, bottom → top) both span ±extent·(1 − 1/n);
    θ = atan2(y, x), so a positive angle is counter-clockwise as displayed (row 0 on top).

    Returns:
        basis: (max_rank·(max_rank+1)/2, n, n), ordered by rank, then m ascending, with the
            cos ("r") before the sin ("i") member of each pair; m = 0 members are "z".
        frequencies: the angular frequency m of each function.
        kinds: "z", "r" or "i" for each function.
    """
    axis = np.linspace(-extent, extent, n_points) * (1 - 1 / n_points)
    x = axis[None, :]
    y = -axis[:, None]
    radius_sq = x**2 + y**2
    theta = np.arctan2(y, x)
    functions, frequencies, kinds = [], [], []
    for rank in range(max_rank):
        for m in range(rank % 2, rank + 1, 2):
            nu = (rank - m) // 2
            radial = np.exp(-radius_sq / 4) * radius_sq ** (m / 2)
            radial = radial * generalized_laguerre(nu, m, radius_sq / 2)
            if m == 0:
                functions.append(radial)
                kinds.append("z")
                frequencies.append(0)
                continue
            functions += [radial * np.cos(m * theta), radial * np.sin(m * theta)]
            kinds += ["r", "i"]
            frequencies += [m, m]
    basis = np.stack(functions)
    basis = basis / np.sqrt((basis**2).sum(axis=(1, 2), keepdims=True))
    return basis, np.asarray(frequencies), kinds


def coefficient_rotation(frequencies: np.ndarray, kinds: list[str], angle: float) -> np.ndarray:
    """Matrix R with basis · (R c) = the filter basis · c rotated counter-clockwise by ``angle``.

    f(r, θ − α) mixes each pair as c_cos' = cos(mα)·c_cos − sin(mα)·c_sin and
    c_sin' = sin(mα)·c_cos + cos(mα)·c_sin; rotation-symmetric (m = 0) functions stay put.
    """
    n = len(kinds)
    rotation = np.zeros((n, n))
    for i, kind in enumerate(kinds):
        if kind == "z":
            rotation[i, i] = 1.0
        elif kind == "r":
            c, s = np.cos(frequencies[i] * angle), np.sin(frequencies[i] * angle)
            rotation[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    return rotation


def rotated_basis(filter_size: int, upsampling: int, num_rotations: int) -> torch.Tensor:
    """(num_rotations, n_basis, k, k): the basis rotated by s·2π/num_rotations, block-summed.

    Filters are built on a k·upsampling grid (extent 2√k, as in Ecker et al.) and each
    upsampling×upsampling block is summed into one tap.
    """
    fine = filter_size * upsampling
    basis, frequencies, kinds = hermite_basis_2d(filter_size, fine, 2 * np.sqrt(filter_size))
    rotations = np.stack(
        [
            coefficient_rotation(frequencies, kinds, 2 * np.pi * s / num_rotations)
            for s in range(num_rotations)
        ]
    )
    # Filter for coefficients c at rotation s: Σ_m basis_m (R_s c)_m = Σ_n (R_sᵀ basis)_n c_n.
    turned = np.einsum("smn,mij->snij", rotations, basis)
    coarse = turned.reshape(num_rotations, len(kinds), filter_size, upsampling, filter_size, -1)
    return torch.tensor(coarse.sum(axis=(3, 5)), dtype=torch.float32)


class HermiteConv2D(nn.Module):
    """A convolution whose output has ``output_features`` filters × ``num_rotations`` rotations.

    Args:
        input_features: input channels (for a hidden layer: features · num_rotations of the
            previous layer, rotation-major).
        output_features: learned filters; the layer outputs output_features·num_rotations.
        filter_size: kernel size k.
        padding: zero padding.
        stride: convolution stride.
        num_rotations: rotated copies per filter (equally spaced over 2π).
        upsampling: sampling factor of the basis before block-summing.
        first_layer: False for a hidden layer: the rotated copy s also rolls the input
            orientation groups by s.
    """

    def __init__(
        self,
        input_features: int,
        output_features: int,
        filter_size: int,
        padding: int,
        stride: int,
        num_rotations: int,
        upsampling: int,
        first_layer: bool,
    ) -> None:
        super().__init__()
        if not first_layer and input_features % num_rotations:
            raise TopoError(
                "a hidden Hermite layer needs whole orientation groups",
                field="input_features",
                expected=f"a multiple of num_rotations={num_rotations}",
                found=input_features,
            )
        self.input_features = input_features
        self.output_features = output_features
        self.filter_size = filter_size
        self.padding = padding
        self.stride = stride
        self.num_rotations = num_rotations
        self.upsampling = upsampling
        self.first_layer = first_layer
        self.n_coeffs = filter_size * (filter_size + 1) // 2
        self.coeffs = nn.Parameter(torch.empty(self.n_coeffs, input_features, output_features))
        nn.init.normal_(self.coeffs, std=0.1)
        self.register_buffer(
            "basis", rotated_basis(filter_size, upsampling, num_rotations), persistent=False
        )
        groups = num_rotations if not first_layer else 1
        # Input group read by rotation s at position j: (j − s) mod groups.
        shift = (torch.arange(groups)[None, :] - torch.arange(num_rotations)[:, None]) % groups
        self.register_buffer("group_index", shift, persistent=False)

    @property
    def weights_all_rotations(self) -> torch.Tensor:
        """The effective weight (num_rotations · out, in, k, k), recomputed from ``coeffs``."""
        rot, k = self.num_rotations, self.filter_size
        out = self.output_features
        # (rot, out, in, k, k): filter of output feature o at rotation s.
        weights = torch.einsum("snij,nco->socij", self.basis, self.coeffs)
        if not self.first_layer:
            groups = self.group_index.shape[1]
            per_group = self.input_features // groups
            weights = weights.reshape(rot, out, groups, per_group, k, k)
            index = self.group_index[:, None, :, None, None, None].expand_as(weights)
            weights = torch.gather(weights, 2, index)
        return weights.reshape(rot * out, self.input_features, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, input_features, h, w) → (batch, num_rotations · output_features, h', w')."""
        return F.conv2d(x, self.weights_all_rotations, stride=self.stride, padding=self.padding)


class RotationEquivariantBatchNorm2D(nn.Module):
    """Batch norm with statistics and affine terms shared by the rotated copies of a feature.

    Input (B, num_rotations · F, H, W), rotation-major; normalised as (B, F, rotations, H, W).
    """

    def __init__(
        self,
        num_features: int,
        num_rotations: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_rotations = num_rotations
        self.batch_norm = nn.BatchNorm3d(num_features, eps=eps, momentum=momentum, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        grouped = x.reshape(b, self.num_rotations, self.num_features, h, w).transpose(1, 2)
        return self.batch_norm(grouped).transpose(1, 2).reshape(x.shape)


class RotationEquivariantBias2DLayer(nn.Module):
    """One learned offset per feature, shared by its rotations: ``bias`` (1, 1, F, 1, 1)."""

    def __init__(self, channels: int, num_rotations: int, initial: float = 0.0) -> None:
        super().__init__()
        self.num_rotations = num_rotations
        self.bias = nn.Parameter(torch.full((1, 1, channels, 1, 1), float(initial)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return (x.reshape(b, self.num_rotations, -1, h, w) + self.bias).reshape(x.shape)


class RotationEquivariantScale2DLayer(nn.Module):
    """One learned gain per feature, shared by its rotations: ``scale`` (1, 1, F, 1, 1)."""

    def __init__(self, channels: int, num_rotations: int, initial: float = 1.0) -> None:
        super().__init__()
        self.num_rotations = num_rotations
        self.scale = nn.Parameter(torch.full((1, 1, channels, 1, 1), float(initial)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return (x.reshape(b, self.num_rotations, -1, h, w) * self.scale).reshape(x.shape)
