"""Stream a movie through a ``Retina`` into an output directory, resumably, in bounded memory.

Layout of ``output_dir`` (every file written atomically, so a kill leaves only whole files):

* ``run.json``: what was run — the retina (resolution, spikes, seeds, every physical
  parameter), the source's identity (``VideoSource.describe``) and the chunk size; a resume
  refuses a directory whose ``run.json`` differs, naming the field. Also the free-form config.
* ``retina_parameters.json``: the parameters in ``Retina.save_parameters`` form.
* ``chunk_000042.npz``: outputs of frames ``[42·chunk, 43·chunk)``; spikes as bool, currents
  as float32, each ``(batch, channels, t, height, width)``.
* ``checkpoint.pt``: ``retina.streaming_state()``, chunks and frames done, running sums for
  the mean rates. Written after its chunk, so it never points past the chunks on disk; a
  resumed run continues from it and gives outputs equal to an uninterrupted run bit for bit.
* ``summary.json``: frames and mean rate (Hz) per output, once the movie has ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from topo_data.retina.video import VideoSource
from topo_models.atomic import atomic_write, atomic_write_bytes
from topo_models.errors import TopoError
from topo_models.retina import Retina

RUN_FILE, CHECKPOINT_FILE, SUMMARY_FILE = "run.json", "checkpoint.pt", "summary.json"
PARAMETERS_FILE = "retina_parameters.json"
RUN_FORMAT = 1
log = logging.getLogger("topo_eval")


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """A snapshot of a run: frames written, the movie's length if known, speed this session."""

    frames_done: int
    n_frames: int | None
    frames_per_second: float
    running: bool
    finished: bool
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a run wrote: frames and chunks on disk, mean rate (Hz) of every output."""

    output_dir: Path
    frames: int
    chunks: int
    finished: bool
    mean_rates_hz: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "output_dir": str(self.output_dir)}


def retina_identity(retina: Retina) -> dict[str, object]:
    """Everything that decides a retina's outputs for a given movie and starting state."""
    return {
        "class": f"{type(retina).__module__}.{type(retina).__qualname__}",
        "resolution": dataclasses.asdict(retina.resolution),
        "spikes": retina.spikes,
        "seeds": {"on": retina.on_spikes.seed, "off": retina.off_spikes.seed},
        "parameters": retina.parameters_dict(),
    }


def _flat(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts → ``{"a.b.c": leaf}`` (lists are leaves)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    flat: dict[str, object] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _check_same_run(saved: Mapping[str, object], current: Mapping[str, object], file: Path) -> None:
    """Raise naming the first field where the saved run differs from this one."""
    old, new = _flat(saved), _flat(current)
    for field in sorted(set(old) | set(new)):
        if old.get(field) != new.get(field):
            raise TopoError(
                "output_dir holds a run of another retina configuration or source; resume it "
                "with the same settings, or write to a new output_dir",
                file=file,
                field=field,
                expected=old.get(field, "(absent)"),
                found=new.get(field, "(absent)"),
            )


def _progress_bar(total: int | None, initial: int, enabled: bool) -> object | None:
    """A tqdm bar in frames (tqdm shows frames/s), or None when disabled."""
    if not enabled:
        return None
    return tqdm(total=total, initial=initial, unit="frame", unit_scale=True, desc="retina")


class RetinaRunner:
    """Runs ``retina`` over ``source`` into ``output_dir``, one atomic chunk file at a time.

    A fresh run starts from the retina's current state (``reset()`` or
    ``initialize_steady_state`` it first); a resumed one from ``checkpoint.pt``. Memory holds
    one chunk of input and output, whatever the movie's length.

    Args:
        retina: the model; run without gradients.
        source: the movie; must give the same frames when restarted (``chunks(start=…)``).
        output_dir: where the files go (module docstring).
        chunk: frames per chunk file.
        resume: continue a run found in ``output_dir``; if False, such a directory is an error.
        progress: show a tqdm progress bar.
        config: JSON-able settings stored in ``run.json`` for the record (not compared).
        settings: JSON-able settings that decide the outputs beyond the retina and source
            (e.g. how the initial state was made); compared on resume like them.
        on_chunk: called with the progress after every chunk's checkpoint (monitoring, tests).
    """

    def __init__(
        self,
        retina: Retina,
        source: VideoSource,
        output_dir: str | Path,
        chunk: int = 1000,
        resume: bool = True,
        progress: bool = True,
        config: Mapping[str, object] | None = None,
        settings: Mapping[str, object] | None = None,
        on_chunk: Callable[[RunProgress], None] | None = None,
    ) -> None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise TopoError(
                "chunk is a number of frames", field="chunk", expected=">= 1", found=chunk
            )
        self.retina, self.source, self.chunk = retina, source, chunk
        self.output_dir = Path(output_dir)
        self.resume, self.show_progress = bool(resume), bool(progress)
        self.config = json.loads(json.dumps(dict(config or {}), default=str))
        self.settings = dict(settings or {})
        self.on_chunk = on_chunk
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: RunSummary | None = None
        self._error: BaseException | None = None
        self._frames_done, self._finished, self._running, self._units = 0, False, False, 0
        self._session_frames, self._started = 0, time.perf_counter()

    # ------------------------------------------------------------------ public

    def run(self) -> RunSummary:
        """Run to the end of the movie (or until ``stop()``) in this thread."""
        self._running, self._error = True, None
        try:
            self._result = self._run()
            return self._result
        except BaseException as error:
            self._error = error
            raise
        finally:
            self._running = False

    def start(self) -> None:
        """Run in a background thread; ``wait()`` for the summary, ``progress`` meanwhile."""
        if self._thread is not None and self._thread.is_alive():
            raise TopoError("this runner is already running", field="start")
        self._stop.clear()
        self._running = True  # before the thread starts, so progress never reads "idle"
        self._thread = threading.Thread(target=self._run_quietly, name="retina-run", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> RunSummary | None:
        """The background run's summary (None if ``timeout`` s passed first); re-raises errors."""
        if self._thread is None:
            raise TopoError("nothing to wait for: call start() first", field="wait")
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self._result

    def stop(self) -> None:
        """Ask the run to stop after the chunk it is writing (resume it later)."""
        self._stop.set()

    @property
    def progress(self) -> RunProgress:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        return RunProgress(
            frames_done=self._frames_done,
            n_frames=self.source.n_frames,
            frames_per_second=self._session_frames / elapsed,
            running=self._running,
            finished=self._finished,
            error=None if self._error is None else f"{type(self._error).__name__}: {self._error}",
        )

    # ------------------------------------------------------------------ the loop

    def _run_quietly(self) -> None:
        """The thread's target: ``run()`` keeps any error in ``self._error`` for ``wait()``
        to re-raise, so it is not raised again here (a thread has nobody to raise to)."""
        with contextlib.suppress(BaseException):
            self.run()

    def _run(self) -> RunSummary:
        checkpoint = self._prepare()
        chunks_done, self._frames_done = checkpoint["chunks_done"], checkpoint["frames_done"]
        sums: dict[str, float] = dict(checkpoint["sums"])
        self._units = int(checkpoint["units_per_frame"])
        self._finished = bool(checkpoint["finished"])
        self._session_frames, self._started = 0, time.perf_counter()
        bar = (
            None
            if self._finished
            else _progress_bar(self.source.n_frames, self._frames_done, self.show_progress)
        )
        try:
            if not self._finished:
                self.retina.load_streaming_state(checkpoint["state"])
                for video in self.source.chunks(self.chunk, start=self._frames_done):
                    sums = self._one_chunk(video, chunks_done, sums)
                    chunks_done += 1
                    if bar is not None:
                        bar.update(video.shape[2])
                    if self.on_chunk is not None:
                        self.on_chunk(self.progress)
                    if self._stop.is_set():
                        return self._summary(chunks_done, sums)
                self._finished = True
                self._write_checkpoint(chunks_done, sums)
        finally:
            if bar is not None:
                bar.close()
        summary = self._summary(chunks_done, sums)
        atomic_write_bytes(
            (json.dumps(summary.as_dict(), indent=2) + "\n").encode(),
            self.output_dir / SUMMARY_FILE,
        )
        return summary

    def _one_chunk(
        self, video: torch.Tensor, index: int, sums: dict[str, float]
    ) -> dict[str, float]:
        """Run one chunk, write its outputs, then the checkpoint that counts it as done."""
        device = next(self.retina.parameters()).device
        with torch.no_grad():
            outputs = self.retina(video.to(device))
        arrays = {name: self._stored(name, value) for name, value in outputs.items()}
        del outputs
        path = self.output_dir / f"chunk_{index:06d}.npz"
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
        sums = {n: sums.get(n, 0.0) + float(a.sum(dtype=np.float64)) for n, a in arrays.items()}
        self._units = video[:, :, 0].numel()
        self._frames_done += video.shape[2]
        self._session_frames += video.shape[2]
        self._write_checkpoint(index + 1, sums)
        return sums

    def _stored(self, name: str, value: torch.Tensor) -> np.ndarray:
        """Spikes as bool (checked to be 0/1), currents as float32."""
        value = value.detach().cpu()
        if not self.retina.spikes:
            return value.to(torch.float32).numpy()
        spikes = value != 0
        if not torch.equal(spikes.to(value.dtype), value):
            raise TopoError(
                "spike outputs must be 0 or 1", field=name, expected="{0, 1}", found="other values"
            )
        return spikes.numpy()

    # ------------------------------------------------------------------ files

    def _identity(self) -> dict[str, object]:
        identity = {
            "format": RUN_FORMAT,
            "chunk": self.chunk,
            "retina": retina_identity(self.retina),
            "source": self.source.describe(),
            "settings": self.settings,
        }
        return json.loads(json.dumps(identity))  # as it will read back (lists, floats)

    def _prepare(self) -> dict[str, object]:
        """The checkpoint to start from: the saved one (same run checked) or a fresh one."""
        identity, run_file = self._identity(), self.output_dir / RUN_FILE
        if run_file.exists():
            if not self.resume:
                raise TopoError(
                    "output_dir already holds a retina run; resume it (resume=true) or choose "
                    "a new output_dir",
                    file=run_file,
                    field="resume",
                    expected=True,
                    found=False,
                )
            saved = json.loads(run_file.read_text())
            _check_same_run({k: saved.get(k) for k in identity}, identity, run_file)
            checkpoint = torch.load(self.output_dir / CHECKPOINT_FILE, weights_only=True)
            self._remove_stale_chunks(int(checkpoint["chunks_done"]))
            return checkpoint
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.retina.save_parameters(self.output_dir / PARAMETERS_FILE)
        self._remove_stale_chunks(0)
        initial = {"chunks_done": 0, "frames_done": 0, "finished": False, "sums": {}}
        initial.update(units_per_frame=0, state=self.retina.streaming_state())
        self._save_checkpoint(initial)
        payload = {**identity, "config": self.config}
        atomic_write_bytes((json.dumps(payload, indent=2) + "\n").encode(), run_file)
        return initial

    def _remove_stale_chunks(self, chunks_done: int) -> None:
        """Chunk files past the checkpoint (written just before a kill) are computed again."""
        for path in self.output_dir.glob("chunk_*.npz"):
            if int(path.stem.split("_")[1]) >= chunks_done:
                path.unlink()

    def _write_checkpoint(self, chunks_done: int, sums: dict[str, float]) -> None:
        self._save_checkpoint(
            {
                "chunks_done": chunks_done,
                "frames_done": self._frames_done,
                "finished": self._finished,
                "sums": sums,
                "units_per_frame": self._units,
                "state": self.retina.streaming_state(),
            }
        )

    def _save_checkpoint(self, checkpoint: dict[str, object]) -> None:
        atomic_write(self.output_dir / CHECKPOINT_FILE, lambda fh: torch.save(checkpoint, fh))

    def _summary(self, chunks_done: int, sums: dict[str, float]) -> RunSummary:
        return RunSummary(
            output_dir=self.output_dir,
            frames=self._frames_done,
            chunks=chunks_done,
            finished=self._finished,
            mean_rates_hz=mean_rates_hz(sums, self._frames_done * self._units, self.retina),
        )


def mean_rates_hz(sums: Mapping[str, float], values: int, retina: Retina) -> dict[str, float]:
    """Means over ``values`` unit-steps: spikes per step × steps/s, or the current (Hz)."""
    scale = retina.resolution.steps_per_second if retina.spikes else 1.0
    return {name: total / values * scale if values else 0.0 for name, total in sums.items()}


def read_outputs(output_dir: str | Path) -> dict[str, np.ndarray]:
    """Every complete chunk's outputs, concatenated along time: ``(B, C, T, H, W)`` arrays
    (bool spikes, float32 currents). A run still going or killed gives what is done so far."""
    output_dir = Path(output_dir)
    checkpoint_file = output_dir / CHECKPOINT_FILE
    if not checkpoint_file.exists():
        raise TopoError(
            "not a retina run directory",
            file=checkpoint_file,
            expected="a file written by RetinaRunner",
        )
    chunks_done = int(torch.load(checkpoint_file, weights_only=True)["chunks_done"])
    pieces: dict[str, list[np.ndarray]] = {}
    for index in range(chunks_done):
        with np.load(output_dir / f"chunk_{index:06d}.npz") as data:
            for name in data.files:
                pieces.setdefault(name, []).append(data[name])
    return {name: np.concatenate(parts, axis=2) for name, parts in pieces.items()}
