"""Transforms: SimCLR views, two-view stacking, eval determinism and ImageNet normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from topo_data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TopoDataError,
    TwoViews,
    eval_transform,
    simclr_transform,
    supervised_transform,
)


def _photo(width: int = 80, height: int = 60, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_simclr_view_has_requested_size_and_channels():
    torch.manual_seed(0)
    view = simclr_transform(32)(_photo())
    assert view.shape == (3, 32, 32)
    assert view.dtype == torch.float32


def test_simclr_blur_is_optional_and_kernel_is_odd():
    with_blur = simclr_transform(64, blur=True).transforms
    without = simclr_transform(64, blur=False).transforms
    blurs = [t.transforms[0] for t in with_blur if isinstance(t, T.RandomApply)]
    blurs = [t for t in blurs if isinstance(t, T.GaussianBlur)]
    assert len(blurs) == 1 and all(k % 2 == 1 for k in blurs[0].kernel_size)
    assert not any(
        isinstance(t, T.RandomApply) and isinstance(t.transforms[0], T.GaussianBlur)
        for t in without
    )


def test_simclr_color_strength_scales_jitter():
    steps = simclr_transform(32, color_strength=0.5).transforms
    jitter = next(t.transforms[0] for t in steps if isinstance(t, T.RandomApply))
    assert isinstance(jitter, T.ColorJitter)
    assert jitter.brightness == pytest.approx((0.6, 1.4))
    assert jitter.hue == pytest.approx((-0.1, 0.1))


def test_simclr_rejects_color_strength_beyond_hue_limit():
    with pytest.raises(TopoDataError, match="color_strength"):
        simclr_transform(32, color_strength=3.0)


def test_two_views_stacks_two_different_augmentations():
    torch.manual_seed(0)
    views = TwoViews(simclr_transform(32))(_photo())
    assert views.shape == (2, 3, 32, 32)
    assert not torch.equal(views[0], views[1])


def test_eval_transform_is_deterministic_with_right_size():
    image = _photo(100, 70)
    first = eval_transform(48)(image)
    torch.manual_seed(123)
    second = eval_transform(48)(image)
    assert first.shape == (3, 48, 48)
    assert torch.equal(first, second)


def test_supervised_eval_branch_equals_eval_transform():
    image = _photo()
    assert torch.equal(supervised_transform(32, train=False)(image), eval_transform(32)(image))


def test_supervised_train_is_random_with_right_size():
    image = _photo()
    transform = supervised_transform(32, train=True)
    torch.manual_seed(0)
    first = transform(image)
    second = transform(image)
    assert first.shape == (3, 32, 32)
    assert not torch.equal(first, second)


def test_imagenet_mean_colour_normalises_to_about_zero():
    colour = tuple(round(m * 255) for m in IMAGENET_MEAN)
    image = Image.new("RGB", (50, 40), colour)
    out = eval_transform(32)(image)
    assert out.abs().max() < 0.5 / 255 / min(IMAGENET_STD) + 1e-6


def test_white_image_normalises_to_one_minus_mean_over_std():
    out = eval_transform(16)(Image.new("RGB", (20, 20), (255, 255, 255)))
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[:, 0, 0], expected, atol=1e-5)


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_image_size_is_rejected(size):
    with pytest.raises(TopoDataError, match="image_size"):
        eval_transform(size)


def test_imagenet_statistics_are_the_standard_values():
    assert IMAGENET_MEAN == pytest.approx((0.485, 0.456, 0.406))
    assert IMAGENET_STD == pytest.approx((0.229, 0.224, 0.225))
