"""A model's responses on the sheet to a whole stimulus set, cached per run, set and layer.

Unit ``i`` of a layer is ``torch.flatten(features[layer], 1)[:, i]``, the order of its
positions' ``coordinates``. Responses are float32 ``(images, units)``. With a cache folder each
layer is written to ``<cache>/<set>-<key>/<layer>.npy`` straight from the batches (a memory-mapped
temp file renamed when complete), so memory stays flat however many images, and a second call
runs no model. The key hashes the stimulus set's parameters, the model's input (size, channels,
normalisation) and the checkpoint's bytes: change any of them and the responses are recomputed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from topo_data.images import load_category_set, load_rgb_image, sine_gratings
from topo_data.images.sine_gratings import COLORS, DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE
from topo_data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from topo_models import TopoError

log = logging.getLogger("topo_eval")
CACHE_VERSION = 1
TDANN_GRATING_SIZE = 224  # the size TDANN's grating frequencies are given for


@dataclass(frozen=True)
class ModelInput:
    """What a model's input looks like: ``(channels, size, size)``; ImageNet-normalised for
    image networks (as every topo image transform), raw [0, 1] pixels for spatial networks
    (their digits are pixels / 255)."""

    channels: int
    size: int
    imagenet_normalised: bool

    def from_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """RGB ``(n, 3, s, s)`` in [0, 1] at this size → the model's input."""
        if self.channels == 1:
            images = images.mean(dim=1, keepdim=True)
        if self.imagenet_normalised:
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            images = (images - mean) / std
        return images

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image → the model's input, as it was evaluated in training."""
        if self.imagenet_normalised and self.channels == 3:
            return eval_transform(self.size)
        from torchvision import transforms as T  # here: its import costs ~2 s

        return T.Compose(
            [T.Grayscale(self.channels), T.Resize(self.size), T.CenterCrop(self.size), T.ToTensor()]
        )


def model_input(model: nn.Module, trained_size: int) -> ModelInput:
    """A spatial network's own ``input_shape``, else RGB images at ``trained_size``."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        return ModelInput(3, int(trained_size), True)
    channels, height, width = (int(v) for v in shape)
    if height != width or channels not in (1, 3):
        raise TopoError(
            "stimuli are square grey or RGB images",
            field="model.input_shape",
            expected="(1 or 3, size, size)",
            found=tuple(shape),
        )
    return ModelInput(channels, height, False)


def grating_frequencies(size: int) -> tuple[float, ...]:
    """TDANN's 8 frequencies (cycles/image at 224 px) at ``size`` px: the same cycles per pixel
    below 224 px (so 64 px gets 1.6 … 27.7 cycles/image, under Nyquist), unchanged above."""
    factor = min(1.0, size / TDANN_GRATING_SIZE)
    values = np.asarray(DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE) * factor
    return tuple(float(v) for v in np.minimum(values, 0.499 * size))


@dataclass(frozen=True)
class StimulusSet:
    """Images the model sees and one metadata row per image; the images are made only when
    responses are computed (a cached set costs nothing).

    Args:
        name: ``gratings`` or ``categories`` (the cache folder's prefix).
        parameters: everything that defines the images (JSON); part of the cache key.
        metadata: one row per image (grating parameters, or ``category`` and ``file``).
        make: ``start, stop`` → the model's input for images ``start:stop``.
    """

    name: str
    parameters: dict
    metadata: pd.DataFrame
    make: Callable[[int, int], torch.Tensor]

    def __len__(self) -> int:
        return len(self.metadata)

    def batches(self, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield start, self.make(start, min(start + batch_size, len(self)))


def grating_set(given: ModelInput, *, orientations: int = 8, phases: int = 5) -> StimulusSet:
    """TDANN's 640 sine gratings (8 orientations × 8 SF × 5 phases × 2 colours) at the model's
    input size; grey-input models see the black/white half only."""
    frequencies = grating_frequencies(given.size)
    colors = COLORS if given.channels == 3 else ("bw",)
    options = {
        "orientations": orientations,
        "frequencies_cycles_per_image": frequencies,
        "phases": phases,
        "colors": colors,
    }

    @functools.cache
    def everything() -> torch.Tensor:
        images, _ = sine_gratings(given.size, **options)
        return images

    parameters = {"size": given.size, **options, "colors": list(colors)}
    parameters["frequencies_cycles_per_image"] = list(frequencies)
    return StimulusSet(
        name="gratings",
        parameters=parameters,
        metadata=grating_metadata(orientations, frequencies, phases, colors),
        make=lambda start, stop: given.from_unit_range(everything()[start:stop]),
    )


def grating_metadata(
    orientations: int, frequencies: Sequence[float], phases: int, colors: Sequence[str]
) -> pd.DataFrame:
    """The metadata :func:`sine_gratings` returns, without drawing an image (colour slowest,
    then orientation, frequency, phase)."""
    angles = np.arange(orientations) * (180.0 / orientations)
    phase_rad = np.linspace(0.0, 2 * math.pi, phases + 1)[:-1]
    color, angle, sf, phase = np.meshgrid(
        np.arange(len(colors)), angles, np.asarray(frequencies, float), phase_rad, indexing="ij"
    )
    return pd.DataFrame(
        {
            "orientation_deg": angle.ravel(),
            "sf_cycles_per_image": sf.ravel(),
            "phase_rad": phase.ravel(),
            "color": np.asarray(colors, dtype=object)[color.ravel()],
        }
    )


def category_stimulus_set(root: str | Path, given: ModelInput) -> StimulusSet:
    """A folder of category sub-folders (fLoc's layout) through the model's eval transform.
    The cache key hashes every file's bytes, so an edited folder is recomputed."""
    found = load_category_set(root)
    transform = given.image_transform()
    digest = hashlib.sha256()
    for path in found.files:
        digest.update(path.relative_to(found.root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    metadata = pd.DataFrame(
        {
            "category": np.asarray(found.categories, dtype=object)[found.labels],
            "file": [path.relative_to(found.root).as_posix() for path in found.files],
        }
    )

    def make(start: int, stop: int) -> torch.Tensor:
        return torch.stack(
            [transform(load_rgb_image(str(path))) for path in found.files[start:stop]]
        )

    return StimulusSet(
        name="categories",
        parameters={"root": str(found.root), "files_sha256": digest.hexdigest()},
        metadata=metadata,
        make=make,
    )


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_fingerprint(checkpoint: str | Path) -> str:
    """SHA-256 of the checkpoint's bytes (hashed once per process per file version)."""
    stat = Path(checkpoint).stat()
    return _file_sha256(str(Path(checkpoint).resolve()), stat.st_size, stat.st_mtime_ns)


def cache_folder(
    cache_dir: Path, stimuli: StimulusSet, given: ModelInput, fingerprint: str
) -> Path:
    """``<cache_dir>/<set>-<16 hex digits>``: one folder per (set, input, checkpoint)."""
    key = {
        "version": CACHE_VERSION,
        "stimuli": stimuli.name,
        "parameters": stimuli.parameters,
        "input": asdict(given),
        "checkpoint_sha256": fingerprint,
    }
    text = json.dumps(key, sort_keys=True)
    return Path(cache_dir) / f"{stimuli.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class Responses(Mapping[str, np.ndarray]):
    """``layer → (images, units)`` float32, read from the cache on access (one layer at a time
    in memory) or held when nothing is cached."""

    def __init__(self, files: Mapping[str, Path], held: Mapping[str, np.ndarray]) -> None:
        self._files, self._held = dict(files), dict(held)

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer in self._held:
            return self._held[layer]
        return np.load(self._files[layer], allow_pickle=False)

    def __iter__(self) -> Iterator[str]:
        return iter([*self._files, *self._held])

    def __len__(self) -> int:
        return len(self._files) + len(self._held)


@torch.no_grad()
def feature_shapes(model: nn.Module, given: ModelInput) -> dict[str, tuple[int, ...]]:
    """``{layer: feature shape without batch}`` from one forward of a blank image."""
    device = next(model.parameters()).device
    _, features = model.eval()(torch.zeros(1, given.channels, given.size, given.size).to(device))
    return {name: tuple(int(d) for d in value.shape[1:]) for name, value in features.items()}


def responses_to_stimuli(
    model: nn.Module,
    stimuli: StimulusSet,
    layers: Sequence[str],
    *,
    cache: Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> Responses:
    """Responses of ``layers`` to every image of ``stimuli``, in batches with a progress bar.

    Args:
        cache: the set's cache folder (:func:`cache_folder`); layers found there are read, the
            others computed in one pass over the images and written there; None: not cached.

    Raises:
        TopoError: a layer the model lacks, or responses that are NaN or infinite (nothing is
            cached then).
    """
    files = {layer: cache / f"{layer}.npy" for layer in layers} if cache is not None else {}
    missing = [layer for layer in layers if cache is None or not files[layer].is_file()]
    held: dict[str, np.ndarray] = {}
    if missing:
        computed = _compute(model, stimuli, missing, cache, batch_size, device, progress)
        if cache is None:
            held = computed
    elif layers:
        log.info("%s responses of %s read from %s", stimuli.name, ", ".join(layers), cache)
    return Responses({k: v for k, v in files.items() if k not in held}, held)


@torch.no_grad()
def _compute(
    model: nn.Module,
    stimuli: StimulusSet,
    layers: list[str],
    cache: Path | None,
    batch_size: int,
    device: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    """One pass over the images; each layer goes into a memory-mapped temp file (or an array)
    that is renamed into the cache only when every batch is in and finite."""
    from tqdm.auto import tqdm

    model = model.eval().to(device)
    arrays: dict[str, np.ndarray] = {}
    temps: dict[str, str] = {}
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "stimuli.json").write_text(json.dumps(stimuli.parameters, indent=1) + "\n")
    bar = tqdm(
        total=len(stimuli), desc=f"{stimuli.name} responses", unit="image", disable=not progress
    )
    try:
        for start, images in stimuli.batches(batch_size):
            _, features = model(images.to(device))
            for layer in layers:
                batch = _finite_units(features, layer, stimuli.name, start)
                if layer not in arrays:
                    arrays[layer] = _allocate(layer, (len(stimuli), batch.shape[1]), cache, temps)
                arrays[layer][start : start + len(batch)] = batch.cpu().numpy()
            bar.update(len(images))
        for layer, temp in temps.items():
            arrays.pop(layer).flush()
            os.replace(temp, cache / f"{layer}.npy")
        temps.clear()
    finally:
        bar.close()
        for temp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    if cache is not None:
        log.info("%s responses of %s cached in %s", stimuli.name, ", ".join(layers), cache)
    return arrays


def _finite_units(
    features: Mapping[str, torch.Tensor], layer: str, name: str, start: int
) -> torch.Tensor:
    """``(batch, units)`` float32 of ``layer``; TopoError for a missing layer or a NaN."""
    if layer not in features:
        raise TopoError(
            "the model has no such layer", field=layer, expected=sorted(features), found=layer
        )
    batch = torch.flatten(features[layer], 1).float()
    finite = torch.isfinite(batch)
    if not finite.all():
        raise TopoError(
            "responses are NaN or infinite",
            field=layer,
            expected="finite responses",
            found=f"{int((~finite).sum())} non-finite values in {name} images from {start}",
        )
    return batch


def _allocate(
    layer: str, shape: tuple[int, int], cache: Path | None, temps: dict[str, str]
) -> np.ndarray:
    if cache is None:
        return np.empty(shape, np.float32)
    fd, temp = tempfile.mkstemp(dir=cache, prefix=f".{layer}.", suffix=".npy.tmp")
    os.close(fd)
    temps[layer] = temp
    return np.lib.format.open_memmap(temp, mode="w+", dtype=np.float32, shape=shape)
