"""``static_loaders`` / ``static_loader``: the 2022 baseline's data loaders, served from caches.

The arguments and their meaning follow sinzlab/sensorium's ``mouse_loaders`` (2022): neuron
selection by area/layer, unit id or a seeded random draw; train-trial selection by image id,
a seeded random draw or image class; behaviour (and pupil) planes; channel selection; rescaling.
What differs is how batches are made: each tier's deterministic transforms are cached once
(:mod:`topo_data.sensorium.cache`) and batches are sliced from memory maps.

Deliberate differences from the published code, each where it fails or silently misbehaves:

* ``cuda`` defaults to False (batches on the CPU); True moves each whole batch to the GPU.
* ``neuron_n`` draws from the neurons left by ``areas``/``layers`` (published: from all neurons,
  ignoring them); without those filters the draw is identical to the published one.
* A seed of ``None`` for the neuron/image draws falls back to ``seed`` (the published loader's
  global seeding has the same effect) and the train shuffle uses a ``torch.Generator`` seeded
  with ``seed``; no global random state is touched.
* ``final_test`` is included when a session has such trials (only the competition mice do).
* Conflicting arguments raise :class:`~topo_data.TopoDataError` instead of ``assert``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, SequentialSampler, SubsetRandomSampler

from topo_data.errors import TopoDataError
from topo_data.sensorium.cache import open_tier_cache
from topo_data.sensorium.dataset import StaticBatch, StaticTierDataset
from topo_data.sensorium.layout import TIERS
from topo_data.sensorium.normalization import ImagePipeline, StaticNormalizer
from topo_data.sensorium.session import NeuronInfo, SensoriumSession

DEFAULT_TIERS: tuple[str, ...] = ("train", "validation", "test")


class MoveBatch:
    """DataLoader ``collate_fn``: the dataset already returns a whole batch; move it if asked."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def __call__(self, batch: StaticBatch) -> StaticBatch:
        return batch if self.device is None else batch.to(self.device)


def _legacy_rng(base_seed: int | None, n: int, seed: int | None) -> np.random.RandomState:
    """The published draw: ``np.random.seed(base_seed * n)`` then ``np.random.choice``."""
    if base_seed is not None:
        return np.random.RandomState(int(base_seed * n))
    return np.random.RandomState(seed)


def _rows_of(values: np.ndarray, wanted: np.ndarray, file: Path, field: str) -> np.ndarray:
    """Row of the first occurrence of each wanted value (vectorised), naming any missing one."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    pos = np.minimum(np.searchsorted(sorted_values, wanted), max(values.size - 1, 0))
    found = values.size > 0 and sorted_values[pos] == wanted
    missing = wanted[~np.asarray(found, dtype=bool)] if values.size else wanted
    if missing.size:
        raise TopoDataError(
            "requested ids are not in the session",
            file=file,
            field=field,
            expected=f"values of {field}",
            found=f"{missing.size} missing, e.g. {missing[:5].tolist()}",
        )
    return order[pos]


def select_neurons(
    neurons: NeuronInfo,
    folder: Path,
    areas: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    neuron_ids: Sequence[int] | None = None,
    neuron_n: int | None = None,
    exclude_neuron_n: int = 0,
    neuron_base_seed: int | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """(n,) rows of the selected neurons, in selection order (see the module docstring)."""
    mask = np.ones(len(neurons), dtype=bool)
    if areas is not None:
        mask &= np.isin(neurons.area, list(areas))
    if layers is not None:
        mask &= np.isin(neurons.layer, list(layers))
    rows = np.flatnonzero(mask)
    if neuron_n is not None:
        pool = neurons.unit_ids[rows]
        if pool.size < exclude_neuron_n + neuron_n:
            raise TopoDataError(
                "not enough neurons to draw from",
                file=folder / "meta" / "neurons",
                field="neuron_n",
                expected=f"exclude_neuron_n + neuron_n = {exclude_neuron_n + neuron_n} neurons",
                found=f"{pool.size} neurons after areas/layers",
            )
        rng = _legacy_rng(neuron_base_seed, neuron_n, seed)
        drawn = rng.choice(pool, size=exclude_neuron_n + neuron_n, replace=False)
        neuron_ids = drawn[exclude_neuron_n:]
    if neuron_ids is not None:
        wanted = np.asarray(neuron_ids).reshape(-1)
        rows = _rows_of(neurons.unit_ids, wanted, folder / "meta/neurons/unit_ids.npy", "unit_ids")
    if rows.size == 0:
        raise TopoDataError(
            "neuron selection is empty",
            file=folder / "meta" / "neurons",
            field="areas/layers",
            expected="at least one neuron",
            found=f"areas={areas}, layers={layers}",
        )
    return rows.astype(np.int64)


def select_trials(
    session: SensoriumSession,
    tier: str,
    image_ids: Sequence[int] | None = None,
    image_n: int | None = None,
    image_base_seed: int | None = None,
    image_condition: str | Sequence[str] | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """(T,) trial ids of a tier: the published rules (image selection applies to train only,
    ``image_condition`` to every tier)."""
    tiers = session.tiers
    trials_dir = session.folder / "meta" / "trials"
    if tier == "train" and image_ids is not None:
        wanted = np.asarray(image_ids).reshape(-1)
        fid = np.asarray(session.trials["frame_image_id"])
        ids = _rows_of(fid, wanted, trials_dir / "frame_image_id.npy", "frame_image_id")
        if (tiers[ids] != "train").any():
            raise TopoDataError(
                "image_ids contain non-train images",
                file=trials_dir / "tiers.npy",
                field="image_ids",
                expected="ids of train trials",
                found=sorted(set(tiers[ids].tolist())),
            )
        return ids.astype(np.int64)
    if tier == "train" and image_n is not None and image_condition is None:
        pool = np.flatnonzero(tiers == "train")
        if image_n > pool.size:
            raise TopoDataError(
                "image_n exceeds the train trials",
                file=trials_dir / "tiers.npy",
                field="image_n",
                expected=f"<= {pool.size}",
                found=image_n,
            )
        rng = _legacy_rng(image_base_seed, image_n, seed)
        return rng.choice(pool, size=image_n, replace=False).astype(np.int64)
    mask = tiers == tier
    if image_condition is not None:
        if isinstance(image_condition, str):
            conditions = [image_condition]
        elif isinstance(image_condition, Sequence) and all(
            isinstance(c, str) for c in image_condition
        ):
            conditions = list(image_condition)
        else:
            raise TopoDataError(
                "image_condition must be a string or a list of strings",
                field="image_condition",
                found=repr(image_condition),
            )
        mask &= np.isin(np.asarray(session.trials["frame_image_class"]).astype(str), conditions)
    return np.flatnonzero(mask).astype(np.int64)


def _check_arguments(
    batch_size: int,
    tier: str | None,
    areas: object,
    layers: object,
    neuron_ids: object,
    neuron_n: int | None,
    exclude_neuron_n: int,
    neuron_base_seed: int | None,
    image_ids: object,
    image_n: int | None,
    image_base_seed: int | None,
    image_condition: object,
) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise TopoDataError(
            "batch_size must be a positive integer", field="batch_size", found=batch_size
        )
    if tier is not None and tier not in TIERS:
        raise TopoDataError("unknown tier", field="tier", expected=TIERS, found=repr(tier))
    if image_ids is not None and (image_n is not None or image_base_seed is not None):
        raise TopoDataError(
            "image_ids cannot be combined with image_n/image_base_seed", field="image_ids"
        )
    if image_ids is not None and image_condition is not None:
        raise TopoDataError("image_ids cannot be combined with image_condition", field="image_ids")
    other = (neuron_n, neuron_base_seed, areas, layers)
    if neuron_ids is not None and (any(v is not None for v in other) or exclude_neuron_n):
        raise TopoDataError(
            "neuron_ids cannot be combined with other neuron selection criteria",
            field="neuron_ids",
            found="neuron_n/neuron_base_seed/areas/layers/exclude_neuron_n also set",
        )
    if exclude_neuron_n and neuron_base_seed is None:
        raise TopoDataError(
            "neuron_base_seed must be set when exclude_neuron_n is not 0", field="neuron_base_seed"
        )


def static_loader(
    path: str | Path,
    batch_size: int,
    areas: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    tier: str | None = None,
    neuron_ids: Sequence[int] | None = None,
    neuron_n: int | None = None,
    exclude_neuron_n: int = 0,
    neuron_base_seed: int | None = None,
    image_ids: Sequence[int] | None = None,
    image_n: int | None = None,
    image_base_seed: int | None = None,
    get_key: bool = False,
    cuda: bool = False,
    normalize: bool = True,
    exclude: str | Sequence[str] | None = None,
    include_behavior: bool = False,
    add_behavior_as_channels: bool = True,
    select_input_channel: int | Sequence[int] | None = None,
    image_condition: str | Sequence[str] | None = None,
    inputs_mean: float | None = None,
    inputs_std: float | None = None,
    scale: float | None = None,
    include_eye_position: bool | None = None,
    add_eye_pos_as_channels: bool | None = None,
    seed: int | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, DataLoader] | tuple[str, dict[str, DataLoader]]:
    """``{tier: DataLoader}`` of one session (``(data_key, that)`` with ``get_key``).

    Train is shuffled (``torch.Generator`` seeded with ``seed``), other tiers go in trial
    order; batches are :class:`StaticBatch`. ``cache=False`` reads per-trial files and
    transforms each sample (the published design); ``cache_dir`` overrides where caches (and
    zips from read-only folders) go. Other arguments: see the module docstring and the
    sensorium 2022 ``static_loader``.
    """
    _check_arguments(
        batch_size, tier, areas, layers, neuron_ids, neuron_n, exclude_neuron_n,
        neuron_base_seed, image_ids, image_n, image_base_seed, image_condition,
    )  # fmt: skip
    device = None
    if cuda:
        if not torch.cuda.is_available():
            raise TopoDataError("cuda=True but no CUDA device is available", field="cuda")
        device = "cuda"
    session = SensoriumSession(path, None if cache_dir is None else Path(cache_dir))
    neuron_rows = select_neurons(
        session.neurons, session.folder, areas, layers, neuron_ids, neuron_n,
        exclude_neuron_n, neuron_base_seed, seed,
    )  # fmt: skip
    if normalize:
        normalizer = StaticNormalizer.from_statistics(
            session.statistics, exclude=exclude, inputs_mean=inputs_mean, inputs_std=inputs_std
        )
    else:
        normalizer = StaticNormalizer.identity(session.n_neurons)
    if isinstance(select_input_channel, int):
        channels: tuple[int, ...] | None = (select_input_channel,)
    else:
        channels = None if select_input_channel is None else tuple(select_input_channel)
    pipeline = ImagePipeline(
        behavior_channels=bool(include_behavior and add_behavior_as_channels),
        pupil_channels=bool(add_eye_pos_as_channels),
        select_channels=channels,
        scale=scale,
    )
    tiers = [tier] if tier else list(DEFAULT_TIERS)
    if tier is None and (session.tiers == "final_test").any():
        tiers.append("final_test")
    loaders: dict[str, DataLoader] = {}
    for name in tiers:
        trial_ids = select_trials(
            session, name, image_ids, image_n, image_base_seed, image_condition, seed
        )
        tier_cache = None
        if cache and trial_ids.size:
            tier_cache = open_tier_cache(session, name, normalizer, pipeline, cache_dir)
        dataset = StaticTierDataset(
            session, name, trial_ids, neuron_rows, normalizer, pipeline,
            include_behavior=bool(include_behavior),
            include_eye_position=bool(include_eye_position),
            cache=tier_cache,
        )  # fmt: skip
        if name == "train":
            generator = None if seed is None else torch.Generator().manual_seed(int(seed))
            sampler = SubsetRandomSampler(range(len(dataset)), generator=generator)
        else:
            sampler = SequentialSampler(dataset)
        loaders[name] = DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, collate_fn=MoveBatch(device)
        )
    return (session.data_key, loaders) if get_key else loaders


def static_loaders(
    paths: Sequence[str | Path] | str | Path,
    batch_size: int,
    seed: int | None = None,
    areas: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    tier: str | None = None,
    neuron_ids: Sequence[Sequence[int] | None] | None = None,
    neuron_n: int | None = None,
    exclude_neuron_n: int = 0,
    neuron_base_seed: int | None = None,
    image_ids: Sequence[Sequence[int] | None] | None = None,
    image_n: int | None = None,
    image_base_seed: int | None = None,
    cuda: bool = False,
    normalize: bool = True,
    include_behavior: bool = False,
    add_behavior_as_channels: bool = True,
    exclude: str | Sequence[str] | None = None,
    select_input_channel: int | Sequence[int] | None = None,
    image_condition: str | Sequence[str] | None = None,
    inputs_mean: float | None = None,
    inputs_std: float | None = None,
    scale: float | None = None,
    include_eye_position: bool | None = None,
    add_eye_pos_as_channels: bool | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> OrderedDict[str, OrderedDict[str, DataLoader]]:
    """``{tier: {data_key: DataLoader}}`` for several sessions (the 2022 ``static_loaders``).

    ``neuron_ids`` and ``image_ids`` are per-path lists (``None`` entries allowed). Tiers are
    train, validation, test, plus final_test when a session has it (or only ``tier``).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    per_path = zip_longest(paths, neuron_ids or [None], image_ids or [None], fillvalue=None)
    out: OrderedDict[str, OrderedDict[str, DataLoader]] = OrderedDict()
    for tier_name in [tier] if tier else DEFAULT_TIERS:
        out[tier_name] = OrderedDict()
    for path, path_neuron_ids, path_image_ids in per_path:
        if path is None:
            raise TopoDataError(
                "more neuron_ids/image_ids lists than paths",
                field="neuron_ids/image_ids",
                expected=f"at most {len(paths)} lists",
            )
        key, loaders = static_loader(
            path, batch_size, areas=areas, layers=layers, tier=tier,
            neuron_ids=path_neuron_ids, neuron_n=neuron_n, exclude_neuron_n=exclude_neuron_n,
            neuron_base_seed=neuron_base_seed, image_ids=path_image_ids, image_n=image_n,
            image_base_seed=image_base_seed, get_key=True, cuda=cuda, normalize=normalize,
            exclude=exclude, include_behavior=include_behavior,
            add_behavior_as_channels=add_behavior_as_channels,
            select_input_channel=select_input_channel, image_condition=image_condition,
            inputs_mean=inputs_mean, inputs_std=inputs_std, scale=scale,
            include_eye_position=include_eye_position,
            add_eye_pos_as_channels=add_eye_pos_as_channels, seed=seed, cache=cache,
            cache_dir=cache_dir,
        )  # fmt: skip
        if key in out[next(iter(out))]:
            raise TopoDataError(
                "two sessions have the same data_key", file=path, field="data_key", found=key
            )
        for tier_name, loader in loaders.items():
            out.setdefault(tier_name, OrderedDict())[key] = loader
    return out
