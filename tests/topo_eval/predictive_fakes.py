"""Small stand-ins for a Sensorium loader and model, with planted signal and noise.

They follow the interface of topo_data.sensorium (StaticBatch fields; ``loader.dataset`` with
``data_key, tier, trial_ids, frame_image_id, neurons``) and of topo_models.predictive
(``model(images, data_key=, pupil_center=, behavior=)``, ``model.readout.positions(key)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn


class Batch(NamedTuple):
    images: torch.Tensor
    responses: torch.Tensor
    behavior: torch.Tensor | None
    pupil_center: torch.Tensor | None
    trial_id: torch.Tensor


class Neurons(NamedTuple):
    unit_ids: np.ndarray
    cell_motor_coordinates: np.ndarray
    area: np.ndarray
    layer: np.ndarray


@dataclass
class Dataset:
    data_key: str
    tier: str
    trial_ids: np.ndarray
    frame_image_id: np.ndarray
    neurons: Neurons

    @property
    def n_neurons(self) -> int:
        return len(self.neurons.unit_ids)


@dataclass
class Loader:
    """Batches in a fixed (possibly shuffled) order over a dataset."""

    dataset: Dataset
    batches: list[Batch] = field(default_factory=list)

    def __iter__(self):
        return iter(self.batches)


@dataclass
class Session:
    """Ground truth of one planted session, in dataset (file) order."""

    responses: np.ndarray  # (trials, neurons) standardised
    predictions: np.ndarray  # (trials, neurons) what the fake model will output
    trial_ids: np.ndarray
    image_ids: np.ndarray
    pupil: np.ndarray
    loader: Loader
    order: np.ndarray  # loader order as positions into the arrays above


def planted_session(
    rng: np.random.Generator,
    data_key: str = "21067-10-18",
    tier: str = "test",
    images: int = 40,
    repeats: int = 5,
    neurons: int = 12,
    noise: float = 0.6,
    prediction_noise: float = 0.4,
    batch_size: int = 16,
) -> Session:
    """Responses = per-image signal + trial noise; predictions = signal + other noise.

    Neuron 0 is pure noise (FEV ≈ 0). Batches come shuffled; the images are built so that
    the fake model's output ``images + pupil_x`` equals ``predictions``.
    """
    truth = rng.normal(0, 1, size=(images, neurons))
    image_ids = np.repeat(rng.permutation(1000)[:images] + 7, repeats)
    rows = np.repeat(np.arange(images), repeats)
    trials = len(image_ids)
    responses = truth[rows] + rng.normal(0, noise, size=(trials, neurons))
    responses[:, 0] = rng.normal(0, 1, size=trials)
    predictions = truth[rows] + rng.normal(0, prediction_noise, size=(trials, neurons))
    predictions = predictions.astype(np.float32).astype(np.float64)
    pupil = rng.normal(size=(trials, 2)).astype(np.float32)
    behavior = rng.normal(size=(trials, 3)).astype(np.float32)
    trial_ids = rng.permutation(5000)[:trials].astype(np.int64)
    shown = (predictions - pupil[:, :1]).astype(np.float32)[:, None, None, :]
    unit_ids = rng.permutation(np.arange(100, 100 + 10 * neurons, 10))
    coordinates = rng.uniform(-400, 400, size=(neurons, 3))
    dataset = Dataset(
        data_key,
        tier,
        trial_ids,
        image_ids,
        Neurons(unit_ids, coordinates, np.full(neurons, "V1"), np.full(neurons, "L2/3")),
    )
    order = rng.permutation(trials)
    batches = [
        Batch(
            torch.from_numpy(shown[index]),
            torch.from_numpy(responses[index].astype(np.float32)),
            torch.from_numpy(behavior[index]),
            torch.from_numpy(pupil[index]),
            torch.from_numpy(trial_ids[index]),
        )
        for index in np.array_split(order, int(np.ceil(trials / batch_size)))
    ]
    responses = responses.astype(np.float32).astype(np.float64)
    return Session(
        responses, predictions, trial_ids, image_ids, pupil, Loader(dataset, batches), order
    )


class Readout(nn.Module):
    def __init__(self, positions: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.table = {key: torch.as_tensor(value) for key, value in positions.items()}

    def positions(self, data_key: str) -> torch.Tensor:
        return self.table[data_key]


class Model(nn.Module):
    """Outputs ``images.flatten(1) + pupil_center[:, 0]``; records what each call saw."""

    def __init__(self, positions: dict[str, np.ndarray] | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.frozen = nn.Dropout(0.5)
        if positions is not None:
            self.readout = Readout(positions)
        self.calls: list[dict] = []

    def forward(self, images, data_key=None, pupil_center=None, behavior=None):
        self.calls.append(
            {
                "training": self.training,
                "frozen_training": self.frozen.training,
                "grad": torch.is_grad_enabled(),
                "data_key": data_key,
                "pupil_center": pupil_center,
                "behavior": behavior,
            }
        )
        return self.weight * images.flatten(1) + pupil_center[:, :1]
