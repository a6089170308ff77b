"""Image transforms for self-supervised (SimCLR) and supervised training.

They follow the recipes TDANN trained with (Margalit et al. 2024; see docs/tdann.md): the
SimCLR view of Chen et al. 2020 (random resized crop, flip, colour distortion, grayscale,
Gaussian blur) and the standard ImageNet supervised pipeline. All randomness comes from the
global ``torch`` RNG, so wrapping a data set in :class:`topo_data.sampling.SeededSamples`
makes every augmentation a pure function of (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from topo_data.errors import TopoDataError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ImageTransform = Callable[[Image.Image], torch.Tensor]


def _check_image_size(image_size: int) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise TopoDataError(
            "image size must be a positive integer",
            field="image_size",
            expected="int >= 1 (pixels)",
            found=repr(image_size),
        )


def _transforms():
    """``torchvision.transforms``, imported on first use: importing torchvision costs ~2 s (it
    loads ``torch._dynamo``), which processes that build no image transform need not pay."""
    from torchvision import transforms

    return transforms


def _to_normalized_tensor() -> list[Callable]:
    T = _transforms()
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def blur_kernel_size(image_size: int) -> int:
    """Odd Gaussian-blur kernel of about 10% of the image side (SimCLR uses 23 px at 224)."""
    return max(3, 2 * (image_size // 20) + 1)


def simclr_transform(
    image_size: int, color_strength: float = 1.0, blur: bool = True
) -> ImageTransform:
    """One random SimCLR view of a PIL image (Chen et al. 2020, appendix A).

    Args:
        image_size: output side in pixels.
        color_strength: colour-distortion strength ``s``; jitter is (0.8s, 0.8s, 0.8s, 0.2s).
        blur: apply Gaussian blur (p = 0.5, sigma 0.1-2.0); off for tiny images if wanted.

    Returns:
        A callable mapping a PIL image to a normalised tensor ``(3, image_size, image_size)``.
    """
    _check_image_size(image_size)
    if not 0.0 <= color_strength <= 2.5:
        raise TopoDataError(
            "colour strength out of range (hue jitter 0.2*s must stay <= 0.5)",
            field="color_strength",
            expected="0 <= color_strength <= 2.5",
            found=color_strength,
        )
    s = color_strength
    T = _transforms()
    steps: list[Callable] = [
        T.RandomResizedCrop(image_size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if blur:
        kernel = blur_kernel_size(image_size)
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    return T.Compose(steps + _to_normalized_tensor())


def supervised_transform(image_size: int, train: bool) -> ImageTransform:
    """The standard ImageNet classification transform (train: augmented; eval: centre crop).

    Args:
        image_size: output side in pixels.
        train: random crop, flip and colour jitter if True, else :func:`eval_transform`.
    """
    _check_image_size(image_size)
    if not train:
        return eval_transform(image_size)
    T = _transforms()
    steps: list[Callable] = [
        T.RandomResizedCrop(image_size),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.4, 0.4, 0.4, 0.4),  # TDANN's supervised jitter (hue 0.4)
    ]
    return T.Compose(steps + _to_normalized_tensor())


def eval_transform(image_size: int) -> ImageTransform:
    """Deterministic resize (side * 256/224) and centre crop, as for ImageNet evaluation."""
    _check_image_size(image_size)
    T = _transforms()
    steps: list[Callable] = [
        T.Resize(round(image_size * 256 / 224)),
        T.CenterCrop(image_size),
    ]
    return T.Compose(steps + _to_normalized_tensor())


class TwoViews:
    """Two independent augmentations of one image, stacked: ``(2, 3, H, W)``.

    SimCLR's loss contrasts the two views of each image; a DataLoader batch of these is
    ``(batch, 2, 3, H, W)``. A class rather than a closure so worker processes can pickle it.
    """

    def __init__(self, transform: ImageTransform) -> None:
        self.transform = transform

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.stack([self.transform(image), self.transform(image)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"
