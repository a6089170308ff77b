"""Smoothness and sparsity penalties on convolution weights of the Sensorium cores.

The input-layer penalty of the Sensorium 2022 baseline convolves every 2-D kernel of the first
convolution with a Laplacian and sums the squared response; the
normalised variant divides by the kernel energy so the value measures roughness, not size. All
penalties reshape a weight ``(out, in, k, k)`` to ``(out·in, 1, k, k)`` and apply one
``conv2d``, so there is no loop over kernels.

Class names and defaults follow neuralpredictors 0.3.0, so ``input_regularizer="LaplaceL2norm"``
in a config picks the same penalty, and the Laplacian is a buffer named ``filter`` inside a
submodule ``laplace`` (state-dict key ``...laplace.filter``, shape (1, 1, 3, 3)).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from topo_models.errors import TopoError

# The 5-point Laplacian and the usual 5×5 / 7×7 Laplacian-of-Gaussian stencils (integer forms).
_LAPLACE_3 = [[0, -1, 0], [-1, 4, -1], [0, -1, 0]]
_LAPLACE_5 = [
    [0, 0, 1, 0, 0],
    [0, 1, 2, 1, 0],
    [1, 2, -16, 2, 1],
    [0, 1, 2, 1, 0],
    [0, 0, 1, 0, 0],
]
_LAPLACE_7 = [
    [0, 0, 1, 1, 1, 0, 0],
    [0, 1, 3, 3, 3, 1, 0],
    [1, 3, 0, -7, 0, 3, 1],
    [1, 3, -7, -24, -7, 3, 1],
    [1, 3, 0, -7, 0, 3, 1],
    [0, 1, 3, 3, 3, 1, 0],
    [0, 0, 1, 1, 1, 0, 0],
]
_STENCILS = {3: _LAPLACE_3, 5: _LAPLACE_5, 7: _LAPLACE_7}

INPUT_REGULARIZERS = ("LaplaceL2", "LaplaceL2norm", "LaplaceL1", "GaussianLaplaceL2")


def laplace_filter(filter_size: int = 3) -> torch.Tensor:
    """The Laplacian (3) or Laplacian-of-Gaussian (5, 7) stencil, (1, 1, k, k) float32."""
    if filter_size not in _STENCILS:
        raise TopoError(
            "no Laplace stencil of this size",
            field="filter_size",
            expected=sorted(_STENCILS),
            found=filter_size,
        )
    return torch.tensor(_STENCILS[filter_size], dtype=torch.float32)[None, None]


def gaussian_mask(size: tuple[int, int], sigma: float) -> np.ndarray:
    """An isotropic Gaussian on a centred ``size`` grid, rescaled to span exactly [0, 1].

    ``1 - mask`` is 0 at the kernel centre and 1 at the far corners: GaussianLaplaceL2 uses it to
    forgive roughness in the middle of a receptive field and punish it in the surround.
    """
    rows = np.arange(size[0]) - (size[0] - 1) / 2
    cols = np.arange(size[1]) - (size[1] - 1) / 2
    radius_sq = rows[:, None] ** 2 + cols[None, :] ** 2
    g = np.exp(-0.5 * radius_sq / sigma**2)
    g = g - g.min()
    peak = g.max()
    return (g / peak if peak > 0 else np.ones_like(g)).astype(np.float32)


def _check_padding(padding: int | None) -> None:
    if padding is not None and (isinstance(padding, bool) or not isinstance(padding, int)):
        raise TopoError(
            "bad Laplace padding", field="padding", expected="None or int", found=padding
        )
    if padding is not None and padding < 0:
        raise TopoError("negative Laplace padding", field="padding", expected=">= 0", found=padding)


def _as_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, kh, kw) → (out·in, 1, kh, kw): one image per 2-D kernel."""
    if weight.dim() != 4:
        raise TopoError(
            "a Laplace penalty needs a 2-D convolution weight",
            field="weight",
            expected="(out, in, kh, kw)",
            found=tuple(weight.shape),
        )
    out_ch, in_ch, kh, kw = weight.shape
    return weight.reshape(out_ch * in_ch, 1, kh, kw)


class Laplace(nn.Module):
    """Convolve each kernel image with a Laplace stencil (zero padding).

    Args:
        padding: zeros added on each side; None means half the stencil (the response then has
            the kernel's own size).
        filter_size: 3 (Laplacian), 5 or 7 (Laplacian of Gaussian).
    """

    def __init__(self, padding: int | None = None, filter_size: int = 3) -> None:
        super().__init__()
        _check_padding(padding)
        self.register_buffer("filter", laplace_filter(filter_size))
        self.padding_size = filter_size // 2 if padding is None else padding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (n, 1, h, w) → (n, 1, h + 2p − s + 1, w + 2p − s + 1)."""
        stencil = self.filter.to(dtype=images.dtype)
        if min(images.shape[-2:]) + 2 * self.padding_size < stencil.shape[-1]:
            raise TopoError(
                "kernel too small for the Laplace stencil at this padding",
                field="padding",
                expected=f"kernel + 2·padding >= {stencil.shape[-1]}",
                found=f"kernel {tuple(images.shape[-2:])}, padding {self.padding_size}",
            )
        return F.conv2d(images, stencil, padding=self.padding_size)


def _aggregate(avg: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.mean if avg else torch.sum


class LaplaceL2(nn.Module):
    """agg((L∗W)²) / 2: unnormalised roughness; scales with the weight magnitude squared.

    Kept because it is the default of Stacked2dCore in neuralpredictors 0.3.0 (there with the
    core's ``laplace_padding=0``, i.e. only the interior (k−2)² responses count).
    """

    def __init__(self, padding: int | None = None, filter_size: int = 3) -> None:
        super().__init__()
        self.laplace = Laplace(padding=padding, filter_size=filter_size)

    def forward(self, weight: torch.Tensor, avg: bool = True) -> torch.Tensor:
        return _aggregate(avg)(self.laplace(_as_kernels(weight)).pow(2)) / 2


class LaplaceL2norm(nn.Module):
    """agg((L∗W)²) / agg(W²): scale-free roughness (the Sensorium 2022 input penalty)."""

    def __init__(self, padding: int | None = None, filter_size: int = 3) -> None:
        super().__init__()
        self.laplace = Laplace(padding=padding, filter_size=filter_size)

    def forward(self, weight: torch.Tensor, avg: bool = False) -> torch.Tensor:
        kernels = _as_kernels(weight)
        agg = _aggregate(avg)
        return agg(self.laplace(kernels).pow(2)) / agg(kernels.pow(2))


class LaplaceL1(nn.Module):
    """agg(|L∗W|): roughness with an L1 penalty, tolerant of a few sharp edges."""

    def __init__(self, padding: int | None = 0, filter_size: int = 3) -> None:
        super().__init__()
        self.laplace = Laplace(padding=padding, filter_size=filter_size)

    def forward(self, weight: torch.Tensor, avg: bool = True) -> torch.Tensor:
        return _aggregate(avg)(self.laplace(_as_kernels(weight)).abs())


class GaussianLaplaceL2(nn.Module):
    """agg(((L∗W)·(1 − G))²) / agg(W²), G a [0, 1] Gaussian of σ = min(kernel)/4.

    The mask needs the Laplace response to keep the kernel's size, so the padding must be half
    the stencil (None or 1 for the 3×3 Laplacian).

    Args:
        kernel: size of the kernels that will be penalised (int or (kh, kw)).
        padding: Laplace padding; None means 1.
    """

    def __init__(self, kernel: int | tuple[int, int], padding: int | None = None) -> None:
        super().__init__()
        self.laplace = Laplace(padding=padding, filter_size=3)
        size = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        if len(size) != 2 or min(size) < 1:
            raise TopoError("bad kernel size", field="kernel", expected="int >= 1", found=kernel)
        if self.laplace.padding_size != 1:
            raise TopoError(
                "GaussianLaplaceL2 masks a same-size Laplace response; use padding None or 1",
                field="laplace_padding",
                expected="None or 1",
                found=padding,
            )
        self.kernel = size
        mask = torch.from_numpy(gaussian_mask(size, sigma=min(size) / 4))
        # Derived from ``kernel``: not saved, so state dicts match neuralpredictors' key set.
        self.register_buffer("gaussian2d", mask, persistent=False)

    def forward(self, weight: torch.Tensor, avg: bool = False) -> torch.Tensor:
        kernels = _as_kernels(weight)
        if tuple(kernels.shape[-2:]) != self.kernel:
            raise TopoError(
                "weight kernel size differs from the one this penalty was built for",
                field="weight",
                expected=self.kernel,
                found=tuple(kernels.shape[-2:]),
            )
        agg = _aggregate(avg)
        masked = self.laplace(kernels) * (1 - self.gaussian2d.to(kernels.dtype))
        return agg(masked.pow(2)) / agg(kernels.pow(2))


def build_input_regularizer(name: str, padding: int | None, kernel: int) -> nn.Module:
    """The input-weight penalty a core names in its config (``input_regularizer``)."""
    if name == "LaplaceL2":
        return LaplaceL2(padding=padding)
    if name == "LaplaceL2norm":
        return LaplaceL2norm(padding=padding)
    if name == "LaplaceL1":
        return LaplaceL1(padding=padding)
    if name == "GaussianLaplaceL2":
        return GaussianLaplaceL2(kernel=kernel, padding=padding)
    raise TopoError(
        "unknown input regulariser",
        field="input_regularizer",
        expected=INPUT_REGULARIZERS,
        found=name,
    )


def group_sparsity(weights: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the mean L2 norm of each 2-D kernel (out, in) of each layer.

    Pushes whole kernels (one input channel's contribution to one output channel) to zero
    (group lasso over the k×k group). An empty list gives 0.
    """
    if not weights:
        return torch.zeros(())
    norms = [w.pow(2).sum(dim=(-2, -1)).sqrt().mean() for w in weights]
    return torch.stack(norms).mean()
