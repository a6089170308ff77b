"""The published Sensorium normalisation of each field, its inverses, and the image pipeline.

The 2022 baseline (neuralpredictors 0.3.0 ``NeuroNormalizer``, Willeke et al. 2022) scales each
field with the ``meta/statistics/<field>/all`` files:

* images: ``(x - mean) / std`` with scalar (or per-channel) stats;
* responses: ``x * precision`` per neuron, **no centring**; ``precision = 1/std`` where
  ``std > threshold`` else ``1/threshold``, with ``threshold = 0.01 * nanmean(std)``
  (neuralpredictors HEAD; 0.3.0 used a plain mean, which differs only when a std is NaN);
* behaviour: ``x / std`` (no threshold, no centring);
* pupil_center: z-scored per coordinate.

Competition ground truth is stored in these standardised response units, so models are scored
on ``responses(x)``; ``inverse_responses`` maps predictions back to raw units.

Deviations, both only where the published code would produce NaN/inf or ignore an argument:
``inputs_mean`` and ``inputs_std`` each override their statistic independently (0.3.0 ignored a
given ``inputs_std`` unless ``inputs_mean`` was given too, and crashed with only ``inputs_mean``);
a behaviour or pupil std of exactly 0 (the zeroed SENSORIUM-track mouse) scales by 1 instead of
dividing by zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from skimage.transform import rescale

from topo_data.errors import TopoDataError

NORMALIZED_FIELDS: tuple[str, ...] = ("images", "responses", "behavior", "pupil_center")
Array = np.ndarray | torch.Tensor


def response_precision(std: np.ndarray) -> np.ndarray:
    """Per-neuron precision ``1/std``, floored at ``threshold = 0.01 * nanmean(std)``.

    Neurons whose std is at or below the threshold (silent ones, or NaN) get ``1/threshold``,
    so they are not blown up by a near-zero std.
    """
    std = np.asarray(std, dtype=np.float64)
    threshold = 0.01 * np.nanmean(std)
    if not np.isfinite(threshold) or threshold <= 0:
        raise TopoDataError(
            "response std gives no usable precision threshold",
            field="statistics.responses.std",
            expected="positive finite per-neuron std",
            found=f"0.01 * nanmean(std) = {threshold}",
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > threshold, 1.0 / std, 1.0 / threshold)


def _nonzero(std: np.ndarray) -> np.ndarray:
    """std with exact zeros replaced by 1 (a constant field is left unscaled, not made NaN)."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std == 0, 1.0, std)


def _like(constant: np.ndarray, x: Array) -> Array:
    """``constant`` as the array type (and device, dtype) of ``x``."""
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(constant, dtype=x.dtype, device=x.device)
    return constant


@dataclass(frozen=True)
class StaticNormalizer:
    """Forward and inverse transforms of each field (see the module docstring for formulas).

    Attributes:
        images_mean, images_std: scalar () or (C, 1, 1), broadcast over (..., C, H, W).
        response_precision: (n,) multiplier per neuron.
        behavior_precision: (3,); pupil_mean, pupil_std: (2,).
        exclude: fields passed through unchanged (the published ``exclude``).
    """

    images_mean: np.ndarray
    images_std: np.ndarray
    response_precision: np.ndarray
    behavior_precision: np.ndarray = field(default_factory=lambda: np.ones(3))
    pupil_mean: np.ndarray = field(default_factory=lambda: np.zeros(2))
    pupil_std: np.ndarray = field(default_factory=lambda: np.ones(2))
    exclude: frozenset[str] = frozenset()

    @classmethod
    def from_statistics(
        cls,
        statistics: Mapping[str, Mapping[str, np.ndarray]],
        exclude: str | Sequence[str] | None = None,
        inputs_mean: float | np.ndarray | None = None,
        inputs_std: float | np.ndarray | None = None,
    ) -> StaticNormalizer:
        """Build from ``{field: {"mean": ..., "std": ...}}`` (``SensoriumSession.statistics``)."""
        excluded = frozenset([exclude] if isinstance(exclude, str) else (exclude or ()))
        unknown = sorted(excluded - set(NORMALIZED_FIELDS))
        if unknown:
            raise TopoDataError(
                "unknown field in exclude",
                field="exclude",
                expected=NORMALIZED_FIELDS,
                found=unknown,
            )
        images = statistics["images"]
        mean = images["mean"] if inputs_mean is None else inputs_mean
        std = images["std"] if inputs_std is None else inputs_std
        behavior = statistics.get("behavior")
        pupil = statistics.get("pupil_center")
        return cls(
            images_mean=_channel_shape(mean),
            images_std=_channel_shape(std),
            response_precision=response_precision(statistics["responses"]["std"]),
            behavior_precision=np.ones(3) if behavior is None else 1.0 / _nonzero(behavior["std"]),
            pupil_mean=np.zeros(2) if pupil is None else np.asarray(pupil["mean"], np.float64),
            pupil_std=np.ones(2) if pupil is None else _nonzero(pupil["std"]),
            exclude=excluded,
        )

    @classmethod
    def identity(cls, n_neurons: int) -> StaticNormalizer:
        """No normalisation (``normalize=False``): every transform is the identity."""
        return cls(np.asarray(0.0), np.asarray(1.0), np.ones(n_neurons))

    def select_neurons(self, index: np.ndarray) -> StaticNormalizer:
        """The same normaliser restricted to the neurons at rows ``index``."""
        return StaticNormalizer(
            self.images_mean,
            self.images_std,
            self.response_precision[index],
            self.behavior_precision,
            self.pupil_mean,
            self.pupil_std,
            self.exclude,
        )

    def digest(self) -> str:
        """Hash of every constant, for cache keys: a cache is valid only for one normaliser."""
        h = hashlib.sha256(",".join(sorted(self.exclude)).encode())
        for value in (
            self.images_mean,
            self.images_std,
            self.response_precision,
            self.behavior_precision,
            self.pupil_mean,
            self.pupil_std,
        ):
            array = np.ascontiguousarray(value, dtype=np.float64)
            h.update(str(array.shape).encode())
            h.update(array.tobytes())
        return h.hexdigest()

    def _on(self, name: str) -> bool:
        return name not in self.exclude

    def images(self, x: Array) -> Array:
        """(..., C, H, W) raw pixels → ``(x - mean) / std``."""
        if not self._on("images"):
            return x
        return (x - _like(self.images_mean, x)) / _like(self.images_std, x)

    def inverse_images(self, x: Array) -> Array:
        if not self._on("images"):
            return x
        return x * _like(self.images_std, x) + _like(self.images_mean, x)

    def responses(self, x: Array) -> Array:
        """(..., n) raw responses → standardised units ``x * precision``."""
        return x * _like(self.response_precision, x) if self._on("responses") else x

    def inverse_responses(self, x: Array) -> Array:
        return x / _like(self.response_precision, x) if self._on("responses") else x

    def behavior(self, x: Array) -> Array:
        """(..., 3) pupil dilation, its derivative, running speed → ``x / std``."""
        return x * _like(self.behavior_precision, x) if self._on("behavior") else x

    def inverse_behavior(self, x: Array) -> Array:
        return x / _like(self.behavior_precision, x) if self._on("behavior") else x

    def pupil_center(self, x: Array) -> Array:
        """(..., 2) eye position → z-scores per coordinate."""
        if not self._on("pupil_center"):
            return x
        return (x - _like(self.pupil_mean, x)) / _like(self.pupil_std, x)

    def inverse_pupil_center(self, x: Array) -> Array:
        if not self._on("pupil_center"):
            return x
        return x * _like(self.pupil_std, x) + _like(self.pupil_mean, x)


def _channel_shape(value: float | np.ndarray) -> np.ndarray:
    """Scalar stats stay 0-d; per-channel (C,) stats become (C, 1, 1) for (..., C, H, W)."""
    array = np.asarray(value, dtype=np.float64)
    if array.size == 1:
        return array.reshape(())
    return array.reshape(-1, 1, 1)


@dataclass(frozen=True)
class ImagePipeline:
    """The 2022 loader's image transforms after normalisation, in its order.

    ``AddBehaviorAsChannels`` → ``AddPupilCenterAsChannels`` → ``SelectInputChannel`` →
    ``ScaleInputs`` (skimage ``rescale``: bilinear, reflect, no anti-aliasing, range preserved,
    clipped). :meth:`one` is the per-sample form (the published design), :meth:`stack` the
    vectorised one used to build caches; both give the same numbers.

    Attributes:
        behavior_channels: append the 3 normalised behaviour values as constant planes.
        pupil_channels: append the 2 normalised pupil values as constant planes.
        select_channels: channel indices to keep (after the planes are appended), or None.
        scale: rescale factor for H and W (0.25: 144×256 → 36×64), or None.
    """

    behavior_channels: bool = False
    pupil_channels: bool = False
    select_channels: tuple[int, ...] | None = None
    scale: float | None = None

    def key(self) -> dict[str, object]:
        return {
            "behavior_channels": self.behavior_channels,
            "pupil_channels": self.pupil_channels,
            "select_channels": None if self.select_channels is None else list(self.select_channels),
            "scale": self.scale,
        }

    def _planes(self, images: np.ndarray, behavior: np.ndarray, pupil: np.ndarray) -> np.ndarray:
        """(T, C, H, W) normalised images with the constant planes appended, then selected."""
        parts = [images]
        shape = (images.shape[0], 1, *images.shape[2:])
        for on, values in ((self.behavior_channels, behavior), (self.pupil_channels, pupil)):
            if on:
                parts.append(np.ones(shape) * values[:, :, None, None])
        out = np.concatenate(parts, axis=1) if len(parts) > 1 else images
        if self.select_channels is not None:
            out = out[:, list(self.select_channels)]
        return out

    def stack(self, images: np.ndarray, behavior: np.ndarray, pupil: np.ndarray) -> np.ndarray:
        """(T, C, H, W) normalised images, (T, 3), (T, 2) normalised → (T, C', H', W') float32.

        Only the image channels are rescaled; the behaviour/pupil planes are constant, and
        bilinear interpolation of a constant plane returns that constant, so they are written
        at the output size directly (same numbers as :meth:`one`, a fraction of the work).
        """
        n_images = images.shape[1]
        constants = [
            v for on, v in ((self.behavior_channels, behavior), (self.pupil_channels, pupil)) if on
        ]
        values = np.concatenate(constants, axis=1) if constants else np.zeros((len(images), 0))
        total = n_images + values.shape[1]
        chosen = (
            list(range(total))
            if self.select_channels is None
            else [c % total for c in self.select_channels]
        )
        image_channels = sorted({c for c in chosen if c < n_images})
        scaled = images[:, image_channels]
        if self.scale is not None:
            scaled = rescale(
                scaled,
                (1, 1, self.scale, self.scale),
                order=1,
                mode="reflect",
                anti_aliasing=False,
                preserve_range=True,
                clip=True,
            )
        height, width = self.output_shape(images.shape[1:])[1:]
        out = np.empty((len(images), len(chosen), height, width), dtype=np.float32)
        for k, channel in enumerate(chosen):
            if channel < n_images:
                out[:, k] = scaled[:, image_channels.index(channel)]
            else:
                out[:, k] = values[:, channel - n_images, None, None]
        return out

    def one(self, image: np.ndarray, behavior: np.ndarray, pupil: np.ndarray) -> np.ndarray:
        """One (C, H, W) normalised image → (C', H', W') float32, exactly as the 2022 loader."""
        out = self._planes(image[None], behavior[None], pupil[None])[0]
        if self.scale is not None:
            out = rescale(
                out,
                self.scale,
                order=1,
                mode="reflect",
                anti_aliasing=False,
                preserve_range=True,
                clip=True,
                channel_axis=0,
            )
        return out.astype(np.float32)

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C', H', W') produced from raw (C, H, W) images."""
        channels = image_shape[0] + 3 * self.behavior_channels + 2 * self.pupil_channels
        if self.select_channels is not None:
            bad = [c for c in self.select_channels if not -channels <= c < channels]
            if bad:
                raise TopoDataError(
                    "select_input_channel is out of range",
                    field="select_input_channel",
                    expected=f"indices in [0, {channels})",
                    found=bad,
                )
            channels = len(self.select_channels)
        height, width = image_shape[1:]
        if self.scale is not None:
            height, width = round(height * self.scale), round(width * self.scale)
        return channels, int(height), int(width)
