"""Per-session, per-tier cache of pre-transformed contiguous arrays, memory-mapped on use.

The published loader reads one ``.npy`` per field per trial and re-applies normalisation,
behaviour planes and the skimage rescale to every sample on every epoch; on a 2-core machine that
work, not the ~0.6 M-parameter model, bounds training speed. Everything those
transforms do is deterministic, so it is done once per tier, vectorised over chunks of trials,
and stored as float32 ``.npy`` files that are opened with ``mmap_mode="r"``:

    <cache root>/<tier>-<options hash>/{images,responses,behavior,pupil_center,trial_ids}.npy
                                       info.json   (source fingerprint + options)

``images`` are normalised, have their behaviour/pupil planes appended, channels selected and are
rescaled; ``responses`` (all neurons, so neuron selection needs no rebuild), ``behavior`` and
``pupil_center`` are normalised. The folder name hashes the options (normaliser constants and
image pipeline), and ``info.json`` records the source fingerprint: a change of either rebuilds.
A build is written into a temporary folder and renamed into place, so a failed or interrupted
build leaves no cache behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from topo_data.errors import TopoDataError
from topo_data.sensorium.layout import default_cache_root, is_writable, replace_dir
from topo_data.sensorium.normalization import ImagePipeline, StaticNormalizer
from topo_data.sensorium.session import SensoriumSession

CACHE_FORMAT = 1
CHUNK_TRIALS = (
    64  # trials transformed at once: bounds the float64 working set (~75 MB at 4×144×256)
)
_INFO = "info.json"
log = logging.getLogger(__name__)


def default_cache_dir(session: SensoriumSession) -> Path:
    """``<session folder>/.topo_cache`` if writable, else under :func:`default_cache_root`."""
    if is_writable(session.folder):
        return session.folder / ".topo_cache"
    tag = hashlib.sha256(str(session.folder.resolve()).encode()).hexdigest()[:8]
    return default_cache_root() / "sensorium_cache" / f"{session.folder.name}-{tag}"


def cache_options(
    tier: str, normalizer: StaticNormalizer, pipeline: ImagePipeline
) -> dict[str, object]:
    """Everything the cached numbers depend on besides the source files."""
    return {
        "format": CACHE_FORMAT,
        "tier": tier,
        "normalizer": normalizer.digest(),
        "pipeline": pipeline.key(),
    }


class TierCache:
    """The cached arrays of one tier; rows follow ``trial_ids`` (ascending file index).

    Attributes:
        folder: the cache folder; trial_ids: (T,) int64;
        images: (T, C', H', W') float32; responses: (T, n_all) float32;
        behavior: (T, 3) or None; pupil_center: (T, 2) or None (all memory-mapped, read-only).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open()

    def _open(self) -> None:
        load = {}
        for name in ("images", "responses", "behavior", "pupil_center"):
            file = self.folder / f"{name}.npy"
            load[name] = np.load(file, mmap_mode="r") if file.is_file() else None
        self.images = load["images"]
        self.responses = load["responses"]
        self.behavior = load["behavior"]
        self.pupil_center = load["pupil_center"]
        self.trial_ids = np.load(self.folder / "trial_ids.npy")
        rows = {k: v.shape[0] for k, v in load.items() if v is not None}
        if (
            self.images is None
            or self.responses is None
            or set(rows.values()) != {self.trial_ids.size}
        ):
            raise TopoDataError(
                "cache arrays disagree in trial count",
                file=self.folder,
                field="trial_ids",
                expected=self.trial_ids.size,
                found=rows,
            )

    def __getstate__(self) -> dict[str, object]:
        # Memory maps would be pickled as full copies; workers re-open the files instead.
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.folder = Path(state["folder"])  # type: ignore[arg-type]
        self._open()

    def rows_of(self, trial_ids: np.ndarray) -> np.ndarray:
        """Cache rows of the given trial ids (which must belong to this tier)."""
        rows = np.searchsorted(self.trial_ids, trial_ids)
        rows = np.minimum(rows, self.trial_ids.size - 1)
        if self.trial_ids.size == 0 or not np.array_equal(self.trial_ids[rows], trial_ids):
            raise TopoDataError(
                "trial ids are not in this cached tier", file=self.folder, field="trial_ids"
            )
        return rows


def _read_info(folder: Path) -> dict[str, object] | None:
    try:
        return json.loads((folder / _INFO).read_text())
    except (OSError, ValueError):
        return None


def build_tier_cache(
    session: SensoriumSession,
    tier: str,
    normalizer: StaticNormalizer,
    pipeline: ImagePipeline,
    folder: Path,
) -> None:
    """Transform every trial of ``tier`` once and write the cache at ``folder`` atomically."""
    if pipeline.behavior_channels:
        session.require("behavior")
    if pipeline.pupil_channels:
        session.require("pupil_center")
    ids = session.tier_trials(tier)
    n_trials = ids.size
    out_shape = pipeline.output_shape(session.image_shape)
    log.info(
        "caching the %s tier once: %d trials, images %s → %s",
        tier,
        n_trials,
        "×".join(map(str, out_shape)),
        folder,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        behavior = np.zeros((n_trials, 3))
        pupil = np.zeros((n_trials, 2))
        if "behavior" in session.fields:
            behavior = normalizer.behavior(session.read_stack("behavior", ids).astype(np.float64))
            np.save(tmp / "behavior.npy", behavior.astype(np.float32))
        if "pupil_center" in session.fields:
            raw = session.read_stack("pupil_center", ids).astype(np.float64)
            pupil = normalizer.pupil_center(raw)
            np.save(tmp / "pupil_center.npy", pupil.astype(np.float32))
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.float32, shape=(n_trials, *out_shape)
        )
        responses = np.lib.format.open_memmap(
            tmp / "responses.npy", mode="w+", dtype=np.float32, shape=(n_trials, session.n_neurons)
        )
        for start in range(0, n_trials, CHUNK_TRIALS):
            part = slice(start, start + CHUNK_TRIALS)
            raw = session.read_stack("images", ids[part]).astype(np.float64)
            images[part] = pipeline.stack(normalizer.images(raw), behavior[part], pupil[part])
            raw = session.read_stack("responses", ids[part]).astype(np.float64)
            responses[part] = normalizer.responses(raw)
        images.flush()
        responses.flush()
        del images, responses
        np.save(tmp / "trial_ids.npy", ids)
        options = cache_options(tier, normalizer, pipeline)
        info = {"source": session.fingerprint(), "options": options, "trials": int(n_trials)}
        (tmp / _INFO).write_text(json.dumps(info, indent=1, sort_keys=True))
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_tier_cache(
    session: SensoriumSession,
    tier: str,
    normalizer: StaticNormalizer,
    pipeline: ImagePipeline,
    cache_dir: str | Path | None = None,
) -> TierCache:
    """Open the tier's cache, building it first if it is missing, stale or unreadable.

    Args:
        cache_dir: root for caches; each session gets a sub-folder named after its folder.
            Default :func:`default_cache_dir`.
    """
    if cache_dir is None:
        root = default_cache_dir(session)
    else:
        root = Path(cache_dir) / session.folder.name
    options = cache_options(tier, normalizer, pipeline)
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    folder = root / f"{tier}-{key}"
    info = _read_info(folder)
    fresh = info is not None and info.get("options") == options
    if fresh and info.get("source") == session.fingerprint():
        damaged = (OSError, ValueError, EOFError, TopoDataError)  # EOFError: an emptied file
        with contextlib.suppress(*damaged):  # rebuilt below
            return TierCache(folder)
    build_tier_cache(session, tier, normalizer, pipeline, folder)
    return TierCache(folder)
