"""``data=sensorium``: Sensorium sessions as the training loop's data module.

One training step sees one *round*: a batch of every session (``{data_key: StaticBatch}``),
as neuralpredictors' ``LongCycler`` interleaves them before each optimiser step. An epoch is
as many rounds as the longest session has batches; shorter sessions start a fresh shuffled
pass when they run out. Every batch is a pure function of (seed, epoch, session, cycle), so a
resumed run sees exactly the batches of an uninterrupted one. With no ``paths`` a simulated
mouse (``simulate``) is written once under ``root`` — the default runs with no download.
What takes time on a first run (simulating, caching each tier) is logged at INFO.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from topo_data.errors import TopoDataError
from topo_data.sampling import sample_seed
from topo_data.sensorium.loaders import static_loaders
from topo_data.sensorium.receptive_fields import estimate_rf_centres
from topo_data.sensorium.simulate import simulate

TIERS = ("train", "validation", "test")
log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Config containers (mappings, sequences) as plain dicts and lists, for JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def simulated_session(root: Path, simulation: Mapping[str, Any], seed: int) -> Path:
    """The simulated session for these settings under ``root`` (written on first use).

    Written as an unpacked folder (``zip=False`` unless ``simulation`` says otherwise): a zip
    would only be unpacked beside itself, doubling the disk used for the same files.
    """
    settings = {"seed": int(seed), **_plain(simulation)}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(root) / f"sim-{digest}"
    done = folder / "session.json"
    if done.is_file():
        return Path(json.loads(done.read_text())["path"])
    folder.mkdir(parents=True, exist_ok=True)
    log.info(
        "no data.paths: simulating a Sensorium mouse into %s (once; runs with the same "
        "data.simulation and seed reuse it)",
        folder,
    )
    started = time.perf_counter()
    path = simulate(folder, **{"zip": False, **settings})
    tmp = done.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"path": str(path), "settings": settings}))
    tmp.replace(done)  # the marker appears only once the session is complete
    log.info(
        "simulated mouse written in %.0f s: %s (%s)",
        time.perf_counter() - started,
        path,
        _disk_size(folder),
    )
    return Path(path)


def _disk_size(folder: Path) -> str:
    """Bytes of every file under ``folder``, in MB."""
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return f"{total / 1e6:.0f} MB"


class SensoriumData:
    """Sensorium static sessions (zips or unpacked folders) for ``topo_train``.

    Args:
        paths: Sensorium static zips or their folders, one per session; empty: a simulated
            ground-truth mouse under ``root`` (``simulation`` holds ``simulate``'s arguments).
        root: where the simulated session is written.
        simulation: keyword arguments of ``topo_data.sensorium.simulate``.
        batch_size: trials per session per step (128 published).
        scale: image downscaling (0.25: 144×256 → 36×64, the published input).
        include_behavior: add the three behaviour values as constant input planes (SENSORIUM+).
        include_eye_position: pass the pupil centre to the model's shifter (SENSORIUM+).
        areas, layers: keep only neurons of these brain areas / cortical layers.
        neuron_n, neuron_base_seed: a seeded random subset of neurons per session.
        image_n, image_base_seed: a seeded random subset of train trials.
        cache: pre-normalised, memory-mapped tier caches (False: per-trial files, slow).
        cache_dir: where caches go (null: beside each session, else the user cache).
        seed: seed of the training order.
        rank, world_size: DDP shard of every epoch (set by the trainer).
    """

    def __init__(
        self,
        paths: Sequence[str] | None = None,
        root: str = ".cache/topo/sensorium",
        simulation: Mapping[str, Any] | None = None,
        batch_size: int = 128,
        scale: float = 0.25,
        include_behavior: bool = False,
        include_eye_position: bool = False,
        areas: Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
        neuron_n: int | None = None,
        neuron_base_seed: int | None = None,
        image_n: int | None = None,
        image_base_seed: int | None = None,
        cache: bool = True,
        cache_dir: str | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TopoDataError(
                "must be a positive integer", field="data.batch_size", found=batch_size
            )
        if paths:
            self.paths = [str(p) for p in paths]
        else:
            self.paths = [str(simulated_session(Path(root), simulation or {}, seed))]
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self._loaders = static_loaders(
            self.paths,
            batch_size,
            seed=seed,
            areas=list(areas) if areas else None,
            layers=list(layers) if layers else None,
            neuron_n=neuron_n,
            neuron_base_seed=neuron_base_seed,
            image_n=image_n,
            image_base_seed=image_base_seed,
            include_behavior=include_behavior,
            include_eye_position=include_eye_position,
            scale=scale,
            cache=cache,
            cache_dir=cache_dir,
        )
        for tier in ("train", "validation"):
            if not self._loaders.get(tier):
                raise TopoDataError(
                    "the sessions have no trials of this tier",
                    field="tiers",
                    expected=tier,
                    found=sorted(self._loaders),
                )
        self.data_keys = list(self._loaders["train"])

    # -- what the model and objective need --------------------------------------------------
    def train_dataset(self, data_key: str) -> Any:
        return self._loaders["train"][data_key].dataset

    def model_config_values(self) -> dict[str, Any]:
        """Nothing: what the data fix goes to the constructor (:meth:`model_kwargs`)."""
        return {}

    def model_kwargs(self) -> dict[str, Any]:
        """Neurons per session, their cortical (x, y) in µm, the input channel count, and
        receptive-field centres estimated from the training trials (pixels of the model's
        input, for the readout's ``position_start=data``) with the input's (H, W)."""
        datasets = {k: self.train_dataset(k) for k in self.data_keys}
        shapes = {tuple(int(v) for v in d.input_shape) for d in datasets.values()}
        if len(shapes) != 1:
            raise TopoDataError(
                "sessions disagree on the input shape (channels, height, width); one core "
                "needs one",
                field="input_shape",
                found={k: d.input_shape for k, d in datasets.items()},
            )
        channels, height, width = shapes.pop()
        return {
            "n_neurons": {k: int(d.n_neurons) for k, d in datasets.items()},
            "cortex_coordinates": {
                k: np.asarray(d.neurons.cell_motor_coordinates, dtype=np.float32)[:, :2]
                for k, d in datasets.items()
            },
            "input_channels": channels,
            "rf_centres_px": {k: self._rf_centres(d) for k, d in datasets.items()},
            "input_size": (height, width),
        }

    @staticmethod
    def _rf_centres(dataset: Any) -> np.ndarray:
        """(n, 2) RF centre estimates of a session from its training tier (the image channel)."""
        started = time.perf_counter()
        trials = dataset[np.arange(len(dataset))]
        images = trials.images[:, 0].numpy()  # behaviour planes follow the image channel
        centres = estimate_rf_centres(images, trials.responses.numpy())
        log.info(
            "estimated %d receptive-field centres from %d trials in %.1f s",
            len(centres),
            len(images),
            time.perf_counter() - started,
        )
        return centres

    def objective_kwargs(self) -> dict[str, Any]:
        """Every session's trial count over all tiers (the √(N/B) loss scale)."""
        return {
            "trials_in_file": {
                k: int(self.train_dataset(k).n_trials_in_file) for k in self.data_keys
            }
        }

    def loaders(self, tier: str) -> dict[str, DataLoader]:
        """``{data_key: DataLoader}`` of a tier, in trial order (validation, test, …)."""
        if tier not in self._loaders:
            raise TopoDataError(
                "unknown tier", field="tier", expected=sorted(self._loaders), found=tier
            )
        return dict(self._loaders[tier])

    def val_loader(self) -> dict[str, DataLoader]:
        return self.loaders("validation")

    # -- the training order ----------------------------------------------------------------
    def _batches_per_pass(self, data_key: str) -> int:
        trials = len(self.train_dataset(data_key)) // self.world_size
        return max(1, -(-trials // self.batch_size))

    @property
    def steps_per_epoch(self) -> int:
        return max(self._batches_per_pass(k) for k in self.data_keys)

    def _pass_order(self, data_key: str, epoch: int, cycle: int) -> np.ndarray:
        """This rank's shuffled trial positions of one pass through a session."""
        key_index = self.data_keys.index(data_key)
        rng = np.random.default_rng(sample_seed(self.seed, epoch, key_index * 1_000_003 + cycle))
        order = rng.permutation(len(self.train_dataset(data_key)))
        usable = len(order) - len(order) % self.world_size if self.world_size > 1 else len(order)
        return order[:usable][self.rank :: self.world_size]

    def train_loader(self, epoch: int, start_batch: int = 0) -> Iterator[dict[str, Any]]:
        """Rounds ``{data_key: StaticBatch}`` of ``epoch`` from round ``start_batch`` on."""
        for step in range(start_batch, self.steps_per_epoch):
            round_ = {}
            for data_key in self.data_keys:
                per_pass = self._batches_per_pass(data_key)
                cycle, index = divmod(step, per_pass)
                order = self._pass_order(data_key, epoch, cycle)
                chunk = order[index * self.batch_size : (index + 1) * self.batch_size]
                round_[data_key] = self.train_dataset(data_key)[np.sort(chunk)]
            yield round_
