"""The published NeuroNormalizer formulas, their inverses and the image pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.transform import rescale

from topo_data import TopoDataError
from topo_data.sensorium import ImagePipeline, StaticNormalizer, response_precision


def _stats(rng, n=6):
    std = rng.uniform(0.5, 2.0, n)
    std[0] = 1e-5  # below 1 % of the mean std: floored
    return {
        "images": {"mean": np.asarray(110.0), "std": np.asarray(60.0)},
        "responses": {"mean": rng.uniform(1, 2, n), "std": std},
        "behavior": {"mean": np.array([5.0, 0.0, 2.0]), "std": np.array([2.0, 0.5, 4.0])},
        "pupil_center": {"mean": np.array([300.0, 200.0]), "std": np.array([20.0, 10.0])},
    }


def test_each_field_follows_the_published_formula():
    rng = np.random.default_rng(0)
    stats = _stats(rng)
    norm = StaticNormalizer.from_statistics(stats)
    image = rng.uniform(0, 255, (2, 1, 4, 5))
    np.testing.assert_allclose(norm.images(image), (image - 110.0) / 60.0)
    std = stats["responses"]["std"]
    threshold = 0.01 * std.mean()
    precision = np.array([1 / s if s > threshold else 1 / threshold for s in std])
    responses = rng.gamma(1.0, size=(3, 6))
    np.testing.assert_allclose(norm.responses(responses), responses * precision)
    behavior = rng.normal(size=(3, 3))
    np.testing.assert_allclose(norm.behavior(behavior), behavior / np.array([2.0, 0.5, 4.0]))
    pupil = rng.normal(300, 20, (3, 2))
    np.testing.assert_allclose(
        norm.pupil_center(pupil), (pupil - np.array([300.0, 200.0])) / np.array([20.0, 10.0])
    )


def test_response_precision_threshold_floor_and_no_centring():
    std = np.array([1.0, 2.0, 3.0, 0.0, 1e-3])
    threshold = 0.01 * 6.001 / 5
    np.testing.assert_allclose(
        response_precision(std), [1.0, 0.5, 1 / 3, 1 / threshold, 1 / threshold]
    )
    # nanmean: a NaN std neither poisons the threshold nor gets a NaN precision.
    with_nan = response_precision(np.array([1.0, np.nan, 3.0]))
    np.testing.assert_allclose(with_nan, [1.0, 1 / 0.02, 1 / 3])
    norm = StaticNormalizer.from_statistics(_stats(np.random.default_rng(1)))
    assert norm.responses(np.zeros(6)).tolist() == [0.0] * 6  # no mean subtracted
    with pytest.raises(TopoDataError, match="statistics.responses.std"):
        response_precision(np.zeros(4))


def test_inverses_undo_the_transforms_for_numpy_and_torch():
    rng = np.random.default_rng(2)
    norm = StaticNormalizer.from_statistics(_stats(rng))
    for name, shape in (
        ("images", (2, 1, 3, 3)),
        ("responses", (4, 6)),
        ("behavior", (4, 3)),
        ("pupil_center", (4, 2)),
    ):
        x = rng.normal(size=shape) * 10
        forward, inverse = getattr(norm, name), getattr(norm, f"inverse_{name}")
        np.testing.assert_allclose(inverse(forward(x)), x, rtol=1e-12, atol=1e-9)
        t = torch.tensor(x, dtype=torch.float32)
        out = forward(t)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), forward(x), rtol=1e-5, atol=1e-5)


def test_inputs_mean_and_std_override_independently():
    stats = _stats(np.random.default_rng(3))
    x = np.array([[[[100.0, 140.0]]]])
    only_std = StaticNormalizer.from_statistics(stats, inputs_std=20.0)
    np.testing.assert_allclose(only_std.images(x), (x - 110.0) / 20.0)  # published ignored it
    only_mean = StaticNormalizer.from_statistics(stats, inputs_mean=100.0)
    np.testing.assert_allclose(only_mean.images(x), (x - 100.0) / 60.0)
    both = StaticNormalizer.from_statistics(stats, inputs_mean=0.0, inputs_std=2.0)
    np.testing.assert_allclose(both.images(x), x / 2.0)


def test_exclude_passes_fields_through_and_zero_std_scales_by_one():
    stats = _stats(np.random.default_rng(4))
    stats["behavior"]["std"] = np.array([0.0, 0.5, 4.0])
    norm = StaticNormalizer.from_statistics(stats, exclude="images")
    x = np.full((1, 1, 2, 2), 7.0)
    np.testing.assert_array_equal(norm.images(x), x)
    np.testing.assert_allclose(norm.behavior(np.array([3.0, 1.0, 8.0])), [3.0, 2.0, 2.0])
    with pytest.raises(TopoDataError, match="exclude"):
        StaticNormalizer.from_statistics(stats, exclude=["image"])


def test_select_neurons_keeps_the_matching_precisions():
    norm = StaticNormalizer.from_statistics(_stats(np.random.default_rng(5)))
    picked = norm.select_neurons(np.array([4, 0]))
    np.testing.assert_array_equal(picked.response_precision, norm.response_precision[[4, 0]])


def test_pipeline_stack_equals_per_sample_published_transforms():
    rng = np.random.default_rng(6)
    images = rng.normal(size=(5, 1, 16, 32))
    behavior, pupil = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    pipe = ImagePipeline(behavior_channels=True, pupil_channels=True, scale=0.25)
    stacked = pipe.stack(images, behavior, pupil)
    assert stacked.shape == (5, 6, 4, 8) == (5, *pipe.output_shape((1, 16, 32)))
    for i in range(5):
        planes = np.ones((5, 16, 32)) * np.concatenate([behavior[i], pupil[i]])[:, None, None]
        full = np.concatenate([images[i], planes])
        expected = rescale(
            full, 0.25, order=1, mode="reflect", anti_aliasing=False, preserve_range=True,
            clip=True, channel_axis=0,
        )  # fmt: skip
        np.testing.assert_allclose(stacked[i], expected.astype(np.float32))
        np.testing.assert_array_equal(pipe.one(images[i], behavior[i], pupil[i]), stacked[i])
    picked = ImagePipeline(behavior_channels=True, select_channels=(0, 2))
    out = picked.stack(images, behavior, pupil)
    np.testing.assert_allclose(out[:, 0], images[:, 0].astype(np.float32))
    np.testing.assert_allclose(out[:, 1], np.broadcast_to(behavior[:, 1, None, None], (5, 16, 32)))
    with pytest.raises(TopoDataError, match="select_input_channel"):
        ImagePipeline(select_channels=(3,)).output_shape((1, 16, 32))
