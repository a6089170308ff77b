"""One tier of one session as a batched-fetch data set of :class:`StaticBatch`.

``dataset[indices]`` (and ``__getitems__``, which ``DataLoader`` calls with a whole batch of
indices) returns one batch with a batch dimension: from the memory-mapped tier cache that is a
few fancy-indexing copies. With ``cache=None`` every sample is read from its per-trial files and
transformed on its own, as the published loader does; that mode is the reference the cache is
tested against and the benchmark baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from topo_data.errors import TopoDataError
from topo_data.sensorium.cache import TierCache
from topo_data.sensorium.normalization import ImagePipeline, StaticNormalizer
from topo_data.sensorium.session import NeuronInfo, SensoriumSession


class StaticBatch(NamedTuple):
    """One batch of static trials (module-level, so it pickles across worker processes).

    Attributes:
        images: (B, C, H, W) float32, normalised and downscaled, behaviour planes appended when
            requested.
        responses: (B, n_neurons) float32 in standardised units (× precision).
        behavior: (B, 3) normalised, when ``include_behavior``; else None.
        pupil_center: (B, 2) z-scored, when ``include_eye_position``; else None.
        trial_id: (B,) int64 per-trial file index ``i`` of ``data/*/<i>.npy``.
    """

    images: torch.Tensor
    responses: torch.Tensor
    behavior: torch.Tensor | None
    pupil_center: torch.Tensor | None
    trial_id: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> StaticBatch:
        """The batch with every tensor moved to ``device``."""
        return StaticBatch(
            *(None if t is None else t.to(device, non_blocking=non_blocking) for t in self)
        )


class StaticTierDataset(Dataset):
    """The selected trials of one tier, with the selected neurons.

    Args:
        session: the opened session.
        tier: one of ``TIERS``.
        trial_ids: (T,) file indices of the selected trials of this tier, in loader order.
        neuron_index: (n,) rows of the selected neurons in the session's neuron order.
        normalizer: the session's normaliser over all neurons.
        pipeline: the image transforms after normalisation.
        include_behavior, include_eye_position: add those fields to the batch.
        cache: the tier's :class:`TierCache`, or None to read per-trial files per sample.

    Attributes (besides the arguments): data_key; frame_image_id (T,); neurons (selected
    :class:`NeuronInfo`); n_neurons; n_trials_in_file (all tiers, for the √(N/B) loss scale);
    input_shape (C, H, W) of the batch images; normalizer restricted to the selected neurons
    (so ``inverse_responses`` applies to batch responses).
    """

    def __init__(
        self,
        session: SensoriumSession,
        tier: str,
        trial_ids: np.ndarray,
        neuron_index: np.ndarray,
        normalizer: StaticNormalizer,
        pipeline: ImagePipeline,
        include_behavior: bool = False,
        include_eye_position: bool = False,
        cache: TierCache | None = None,
    ) -> None:
        self.session = session
        self.tier = tier
        self.data_key = session.data_key
        self.trial_ids = np.asarray(trial_ids, dtype=np.int64)
        bad = self.trial_ids[session.tiers[self.trial_ids] != tier]
        if bad.size:
            raise TopoDataError(
                "selected trials are not in this tier",
                file=session.folder / "meta" / "trials" / "tiers.npy",
                field="tiers",
                expected=tier,
                found=f"trials {bad[:5].tolist()} are {sorted(set(session.tiers[bad]))}",
            )
        self.neuron_index = np.asarray(neuron_index, dtype=np.int64)
        self._all_neurons = np.array_equal(self.neuron_index, np.arange(session.n_neurons))
        self.neurons: NeuronInfo = session.neurons.select(self.neuron_index)
        self.n_neurons = int(self.neuron_index.size)
        self.frame_image_id = np.asarray(session.trials["frame_image_id"])[self.trial_ids]
        self.n_trials_in_file = session.n_trials
        self._full_normalizer = normalizer
        self.normalizer = normalizer.select_neurons(self.neuron_index)
        self.pipeline = pipeline
        self.include_behavior = include_behavior
        self.include_eye_position = include_eye_position
        if include_behavior:
            session.require("behavior")
        if include_eye_position:
            session.require("pupil_center")
        self.input_shape = pipeline.output_shape(session.image_shape)
        self.cache = cache
        self._rows = None if cache is None else cache.rows_of(self.trial_ids)

    def __len__(self) -> int:
        return int(self.trial_ids.size)

    def __getitem__(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> StaticBatch:
        """A batch of the trials at positions ``indices`` (0..len-1), in that order."""
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"positions out of range for {len(self)} trials: {positions}")
        if self.cache is None:
            return self._from_files(positions)
        return self._from_cache(positions)

    def __getitems__(self, indices: Sequence[int]) -> StaticBatch:
        return self[indices]

    def _from_cache(self, positions: np.ndarray) -> StaticBatch:
        cache = self.cache
        rows = self._rows[positions]
        responses = cache.responses[rows]
        if not self._all_neurons:
            responses = responses[:, self.neuron_index]
        behavior = cache.behavior[rows] if self.include_behavior else None
        pupil = cache.pupil_center[rows] if self.include_eye_position else None
        return StaticBatch(
            images=torch.from_numpy(np.ascontiguousarray(cache.images[rows])),
            responses=torch.from_numpy(np.ascontiguousarray(responses)),
            behavior=None if behavior is None else torch.from_numpy(behavior),
            pupil_center=None if pupil is None else torch.from_numpy(pupil),
            trial_id=torch.from_numpy(self.trial_ids[positions]),
        )

    def _sample(self, trial_id: int) -> tuple[np.ndarray, ...]:
        """One trial read from its files and transformed alone (the published per-sample path)."""
        session, norm = self.session, self._full_normalizer
        behavior, pupil = np.zeros(3), np.zeros(2)
        if "behavior" in session.fields:
            behavior = norm.behavior(session.read_trial("behavior", trial_id).astype(np.float64))
        if "pupil_center" in session.fields:
            raw = session.read_trial("pupil_center", trial_id).astype(np.float64)
            pupil = norm.pupil_center(raw)
        image = norm.images(session.read_trial("images", trial_id).astype(np.float64))
        image = self.pipeline.one(image, behavior, pupil)
        raw = session.read_trial("responses", trial_id).astype(np.float64)
        responses = norm.responses(raw)[self.neuron_index].astype(np.float32)
        return image, responses, behavior.astype(np.float32), pupil.astype(np.float32)

    def _from_files(self, positions: np.ndarray) -> StaticBatch:
        ids = self.trial_ids[positions]
        if ids.size:
            samples = [self._sample(int(i)) for i in ids]
            images, responses, behavior, pupil = (
                np.stack(part) for part in zip(*samples, strict=True)
            )
        else:
            shapes = (self.input_shape, (self.n_neurons,), (3,), (2,))
            images, responses, behavior, pupil = (np.empty((0, *s), np.float32) for s in shapes)
        return StaticBatch(
            images=torch.from_numpy(images),
            responses=torch.from_numpy(responses),
            behavior=torch.from_numpy(behavior) if self.include_behavior else None,
            pupil_center=torch.from_numpy(pupil) if self.include_eye_position else None,
            trial_id=torch.from_numpy(ids),
        )
