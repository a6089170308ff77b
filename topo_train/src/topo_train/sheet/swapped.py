"""``positions=swapped``: TDANN's swap-optimised positions, built from an α = 0 network.

TDANN permutes its initial (retinotopic, fuzzy) positions so that units responding alike to
sine gratings start out close (Margalit et al. 2024). The responses come from a network of
the same objective trained without the spatial loss — give its checkpoint as ``network`` (a
``model.pt`` of an α = 0 topo run, or a TDANN/VISSL checkpoint). Layers are written to
``cache_dir`` as they finish, so a killed build resumes with the next layer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from topo_data import IMAGENET_MEAN, IMAGENET_STD
from topo_data.stimuli import DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE, sine_gratings
from topo_models import TopoError
from topo_models.positions import LayerPositions, NetworkPositions, swap_optimize
from topo_models.trained import load_trained_model

log = logging.getLogger(__name__)
NYQUIST_SAFE_SIZE = 194  # TDANN's highest frequency, 96.9 cycles per image, needs 194 px


def load_network(path: str | Path) -> nn.Module:
    """A trained trunk in eval mode: topo's ``model.pt`` or a TDANN/VISSL checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise TopoError(
            "no network checkpoint for the swap",
            file=path,
            field="positions.network",
            expected="model.pt of an alpha = 0 run",
        )
    return load_trained_model(path)


@torch.no_grad()
def grating_responses(network: nn.Module, size: int, batch_size: int) -> dict[str, np.ndarray]:
    """(640, units) responses of every layer to TDANN's sine gratings at ``size`` px.

    Below 194 px the frequencies are scaled by size / 224 (same cycles per degree if the image
    spans the same visual angle) so that none exceeds the Nyquist limit.
    """
    scale = 1.0 if size >= NYQUIST_SAFE_SIZE else size / 224
    frequencies = [f * scale for f in DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE]
    images, _ = sine_gratings(size, frequencies_cycles_per_image=frequencies)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    images = (images - mean) / std
    collected: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        _, features = network(images[start : start + batch_size])
        for name, value in features.items():
            collected.setdefault(name, []).append(value.flatten(1).float().numpy())
    return {name: np.concatenate(parts) for name, parts in collected.items()}


class SwappedLayout:
    """Initial positions, swap-optimised on an α = 0 network's grating responses.

    Args:
        initial: the layout to start from (TDANN: retinotopic with 0.3 mm jitter).
        network: checkpoint of the α = 0 network of the same objective (a stage before
            this one trains it: ``loss.alpha=0``).
        n_windows: windows per layer (TDANN: 100,000).
        proposals_per_window: swap proposals per window (TDANN: 500).
        batch_size: images per forward pass when recording responses.
        cache_dir: where finished layers are kept (resume); None keeps nothing.
        seed: seeds the swaps (the initial layout has its own seed).
        progress: progress bars.
    """

    def __init__(
        self,
        initial: Any,
        network: str | None,
        n_windows: int = 2000,
        proposals_per_window: int = 500,
        batch_size: int = 64,
        cache_dir: str | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if not network:
            raise TopoError(
                "swapped positions are built on the responses of a network trained with "
                "loss.alpha=0; train it first (python -m topo_train loss.alpha=0 "
                "run_dir=runs/control), then swap (python -m topo_train task=positions "
                "positions=swapped positions.network=runs/control/model.pt "
                "run_dir=runs/swapped_positions) and train on them "
                "(positions_dir=runs/swapped_positions)",
                field="positions.network",
                expected="a model.pt (or TDANN checkpoint) of the alpha = 0 network",
                found=network,
            )
        if n_windows < 1 or proposals_per_window < 1 or batch_size < 1:
            raise TopoError(
                "windows, proposals and batch size must be >= 1",
                field="positions.n_windows / proposals_per_window / batch_size",
                found=(n_windows, proposals_per_window, batch_size),
            )
        self.initial = initial
        self.network = network
        self.n_windows = n_windows
        self.proposals_per_window = proposals_per_window
        self.batch_size = batch_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.seed = seed
        self.progress = progress

    def build(self, model: nn.Module, input_size: int) -> NetworkPositions:
        start = self.initial.build(model, input_size)
        network = load_network(self.network)
        responses = grating_responses(network, int(input_size), self.batch_size)
        missing = [name for name in start if name not in responses]
        if missing:
            raise TopoError(
                "the network lacks layers the positions have",
                file=self.network,
                field=", ".join(missing),
                expected=sorted(start),
            )
        swapped: dict[str, LayerPositions] = {}
        for name in tqdm(list(start), desc="swap layers", disable=not self.progress):
            cached = None if self.cache_dir is None else self.cache_dir / f"{name}.npz"
            if cached is not None and cached.is_file():
                swapped[name] = LayerPositions.load(cached)
                log.info("%s: reusing %s", name, cached)
                continue
            swapped[name] = swap_optimize(
                start[name],
                responses[name],
                self.n_windows,
                self.proposals_per_window,
                seed=self.seed,
                progress=self.progress,
            )
            if self.cache_dir is not None:
                swapped[name].save(self.cache_dir)
        return NetworkPositions(swapped, scale=start.scale)
