"""``data=retina_responses``: a stimulus movie and the spike counts it evoked, for fitting.

Retina models (LN filters, cascades) are fitted to recorded responses: one movie ``stimulus``
(time, height, width) and the spike counts ``responses`` (time, cells) of every cell in each
frame. The file is an ``.npz`` with those two arrays (``dt``, the frame length in seconds, is
optional). Training windows are ``window`` frames whose loss is scored, each preceded by
``history`` frames the model needs to see first (its filter's memory); the first
``1 − val_fraction`` of the recording trains, the rest validates.

With no ``path`` the embedded default is simulated and written once under ``root``: binary
white noise and Poisson spike counts of planted LN cells (difference-of-Gaussians receptive
fields × biphasic temporal filters, softplus), with the planted kernels saved beside them so a
fit can be scored against the truth.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from topo_data.errors import TopoDataError
from topo_data.sampling import _check_int, check_replica, sample_seed

REQUIRED = ("stimulus", "responses")
TRUTH = ("true_kernels", "true_gain", "true_offset")


class RetinaBatch(NamedTuple):
    """Windows of a recording: ``video`` (B, 1, history + window, H, W) luminance and
    ``responses`` (B, cells, window) spike counts of the last ``window`` frames."""

    video: torch.Tensor
    responses: torch.Tensor


def planted_kernels(cells: int, frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """(cells, frames, height, width) LN kernels: DoG in space × biphasic filter in time.

    ``kernel[n, lag, i, j]`` weights the frame ``lag`` steps back at pixel (i, j). Centres are
    drawn in the middle half of the frame, widths 0.8–1.5 px (surround 2.5× wider, weight 0.4),
    every other cell OFF (negative). Each kernel has unit Euclidean norm.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    lags = np.arange(frames, dtype=np.float64)
    kernels = np.empty((cells, frames, height, width))
    for n in range(cells):  # one small closed-form kernel per planted cell
        cy = rng.uniform(0.25, 0.75) * (height - 1)
        cx = rng.uniform(0.25, 0.75) * (width - 1)
        sigma = rng.uniform(0.8, 1.5)
        d2 = (rows - cy) ** 2 + (cols - cx) ** 2
        space = np.exp(-d2 / (2 * sigma**2)) - 0.4 * np.exp(-d2 / (2 * (2.5 * sigma) ** 2))
        tau = frames / 6.0
        time = (lags / tau) * np.exp(-lags / tau) - 0.5 * (lags / (2 * tau)) * np.exp(
            -lags / (2 * tau)
        )
        kernel = time[:, None, None] * space[None]
        sign = 1.0 if n % 2 == 0 else -1.0
        kernels[n] = sign * kernel / np.linalg.norm(kernel)
    return kernels


def causal_drive(stimulus: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """(time, cells) ``Σ_lag Σ_ij kernel[n, lag, i, j] · stimulus[t − lag, i, j]``, zeros before 0.

    One ``conv1d`` over time with the pixels as channels (the kernel flipped in time, since
    conv1d correlates), computed in float64.
    """
    frames = kernels.shape[1]
    signal = torch.from_numpy(stimulus.reshape(len(stimulus), -1).T.copy()).double()[None]
    weight = torch.from_numpy(kernels.reshape(len(kernels), frames, -1)).double()
    weight = weight.permute(0, 2, 1).flip(-1)  # (cells, pixels, frames), oldest lag first
    drive = F.conv1d(F.pad(signal, (frames - 1, 0)), weight)
    return drive[0].T.numpy()


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def simulate_recording(
    frames: int = 8000,
    height: int = 10,
    width: int = 10,
    cells: int = 4,
    kernel_frames: int = 12,
    contrast: float = 0.5,
    gain: float = 6.0,
    offset: float = -1.5,
    dt: float = 0.01,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A white-noise recording of planted LN cells; the arrays of the ``.npz`` format.

    Stimulus: each pixel independently ``0.5 ± contrast/2`` per frame (luminance in [0, 1]).
    Counts: ``Poisson(softplus(gain · drive + offset))`` with drive = the planted kernels applied
    to the contrast ``stimulus − 0.5`` (mean rate ≈ 0.2 spikes per frame with the defaults).
    """
    for name, value, low in (
        ("frames", frames, kernel_frames + 1),
        ("height", height, 1),
        ("width", width, 1),
        ("cells", cells, 1),
        ("kernel_frames", kernel_frames, 1),
    ):
        _check_int(value, f"simulation.{name}", minimum=low)
    rng = np.random.default_rng(sample_seed(seed, 0, 0))
    signs = rng.integers(0, 2, size=(frames, height, width)) * 2.0 - 1.0
    stimulus = 0.5 + 0.5 * contrast * signs
    kernels = planted_kernels(cells, kernel_frames, height, width, seed)
    drive = causal_drive(stimulus - 0.5, kernels)
    rates = softplus(gain * drive + offset)
    responses = rng.poisson(rates).astype(np.float32)
    return {
        "stimulus": stimulus.astype(np.float32),
        "responses": responses,
        "dt": np.float64(dt),
        "true_kernels": kernels.astype(np.float32),
        # as an LN model of the luminance sees them: k ⋆ (L − 0.5) = k ⋆ L − 0.5·Σk
        "true_gain": np.full(cells, gain, dtype=np.float32),
        "true_offset": (offset - 0.5 * gain * kernels.sum(axis=(1, 2, 3))).astype(np.float32),
    }


def write_recording(arrays: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write ``arrays`` as an ``.npz`` at ``path`` atomically (temp file in place, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(buffer.getvalue())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def read_recording(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a recording file, checked: names the file and field of any problem."""
    path = Path(path)
    if not path.is_file():
        raise TopoDataError("recording file not found", file=path, expected="an .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise TopoDataError(
            "not a readable .npz recording", file=path, found=f"{type(error).__name__}: {error}"
        ) from error
    for key in REQUIRED:
        if key not in arrays:
            raise TopoDataError(
                "the recording lacks an array",
                file=path,
                field=key,
                expected=list(REQUIRED),
                found=sorted(arrays),
            )
    stimulus, responses = arrays["stimulus"], arrays["responses"]
    if stimulus.ndim != 3:
        raise TopoDataError(
            "the stimulus is a movie",
            file=path,
            field="stimulus",
            expected="(time, height, width)",
            found=stimulus.shape,
        )
    if responses.ndim == 1:
        arrays["responses"] = responses = responses[:, None]
    if responses.ndim != 2 or len(responses) != len(stimulus):
        raise TopoDataError(
            "responses are counts per frame and cell",
            file=path,
            field="responses",
            expected=f"({len(stimulus)}, cells)",
            found=responses.shape,
        )
    for key in REQUIRED:
        if not np.isfinite(arrays[key]).all():
            raise TopoDataError("values must be finite", file=path, field=key, found="NaN or inf")
    if (responses < 0).any():
        raise TopoDataError(
            "spike counts cannot be negative",
            file=path,
            field="responses",
            expected=">= 0",
            found=float(responses.min()),
        )
    return arrays


class _Windows:
    """A re-iterable, fixed sequence of batches (the validation loader)."""

    def __init__(self, data: RetinaResponseData, starts: np.ndarray) -> None:
        self._data, self._starts = data, starts

    def __len__(self) -> int:
        return -(-len(self._starts) // self._data.batch_size_of(len(self._starts)))

    def __iter__(self) -> Iterator[RetinaBatch]:
        size = self._data.batch_size_of(len(self._starts))
        for i in range(0, len(self._starts), size):
            yield self._data.batch(self._starts[i : i + size])


class RetinaResponseData:
    """Stimulus–response windows of one recording, for ``topo_train``.

    Args:
        path: an ``.npz`` recording (``stimulus``, ``responses``); None: the simulated default.
        root: where the simulated default is written (once).
        simulation: keyword arguments of ``simulate_recording``.
        history: frames before each window the model sees unscored (≥ its memory − 1).
        window: scored frames per window.
        batch_size: windows per batch; None: every training window in one batch (full-batch
            optimisers such as LBFGS need the same batch at every step).
        val_fraction: the last fraction of the recording, held out for validation.
        seed: order of the windows in each epoch (a pure function of seed and epoch).
        rank, world_size: DDP replica; each takes every ``world_size``-th window.
    """

    def __init__(
        self,
        path: str | None = None,
        root: str = ".cache/topo/retina",
        simulation: Mapping[str, object] | None = None,
        history: int = 20,
        window: int = 200,
        batch_size: int | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.history = _check_int(history, "history", minimum=0)
        self.window = _check_int(window, "window", minimum=1)
        self.batch_size = None if batch_size is None else _check_int(batch_size, "batch_size", 1)
        if not 0.0 < float(val_fraction) < 1.0:
            raise TopoDataError(
                "val_fraction is a fraction of the recording",
                field="val_fraction",
                expected="0 < val_fraction < 1",
                found=val_fraction,
            )
        self.seed = int(seed)
        self.rank, self.world_size = check_replica(rank, world_size)
        self.path = Path(path) if path else self._simulated(Path(root), dict(simulation or {}))
        arrays = read_recording(self.path)
        self.stimulus = torch.from_numpy(np.ascontiguousarray(arrays["stimulus"], np.float32))
        self.responses = torch.from_numpy(np.ascontiguousarray(arrays["responses"], np.float32))
        self.dt = float(arrays["dt"]) if "dt" in arrays else None
        self.truth = {k: arrays[k] for k in TRUTH if k in arrays} or None
        total = len(self.stimulus)
        split = int(round(total * (1.0 - float(val_fraction))))
        self.train_starts = self._starts(self.history, split)
        self.val_starts = self._starts(max(split, self.history), total)
        for tier, starts in (("train", self.train_starts), ("validation", self.val_starts)):
            if len(starts) < self.world_size:
                raise TopoDataError(
                    f"the recording is too short for one {tier} window per replica",
                    file=self.path,
                    field="window",
                    expected=f"{self.world_size} × (history {self.history} + window "
                    f"{self.window}) frames in the {tier} part",
                    found=f"{total} frames in all",
                )

    @staticmethod
    def _simulated(root: Path, simulation: dict[str, object]) -> Path:
        """The simulated recording's file, written on first use (keyed by its arguments)."""
        text = ";".join(f"{k}={simulation[k]!r}" for k in sorted(simulation))
        key = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        path = root / f"simulated_{key}.npz"
        if not path.is_file():
            write_recording(simulate_recording(**simulation), path)
        return path

    def _starts(self, first: int, end: int) -> np.ndarray:
        """Start frames of the scored windows that fit in [first, end)."""
        return np.arange(first, end - self.window + 1, self.window, dtype=np.int64)

    # -- what the model and objective take from the data -----------------------------------
    @property
    def cells(self) -> int:
        return int(self.responses.shape[1])

    def model_config_values(self) -> dict[str, int]:
        """Frame size and cell count: fill the null keys of a retina model config."""
        return {
            "height": int(self.stimulus.shape[1]),
            "width": int(self.stimulus.shape[2]),
            "cells": self.cells,
        }

    def objective_kwargs(self) -> dict[str, int]:
        return {"history": self.history}

    def model_kwargs(self) -> dict[str, object]:
        return {}

    def ground_truth(self) -> dict[str, np.ndarray] | None:
        """The planted kernels, gains and offsets of a simulated recording (None if recorded)."""
        return self.truth

    # -- batches ---------------------------------------------------------------------------
    def batch_size_of(self, windows: int) -> int:
        return windows if self.batch_size is None else min(self.batch_size, windows)

    def batch(self, starts: np.ndarray) -> RetinaBatch:
        """The windows starting at ``starts`` (scored frames ``start … start + window − 1``)."""
        span = self.history + self.window
        index = torch.as_tensor(starts)[:, None] - self.history + torch.arange(span)
        video = self.stimulus[index][:, None]  # (B, 1, span, H, W)
        scored = torch.as_tensor(starts)[:, None] + torch.arange(self.window)
        responses = self.responses[scored].permute(0, 2, 1)  # (B, cells, window)
        return RetinaBatch(video.contiguous(), responses.contiguous())

    def _train_order(self, epoch: int) -> np.ndarray:
        mine = self.train_starts[: len(self.train_starts) // self.world_size * self.world_size]
        if self.batch_size is None:  # full batch: the same windows, in order, at every step
            return mine[self.rank :: self.world_size]
        generator = np.random.default_rng(sample_seed(self.seed, epoch, 0))
        return generator.permutation(mine)[self.rank :: self.world_size]

    @property
    def steps_per_epoch(self) -> int:
        per_replica = len(self.train_starts) // self.world_size
        return -(-per_replica // self.batch_size_of(per_replica))

    def train_loader(self, epoch: int, start_batch: int = 0) -> Iterator[RetinaBatch]:
        """This epoch's batches from ``start_batch`` on (a pure function of seed and epoch)."""
        order = self._train_order(epoch)
        size = self.batch_size_of(len(order))
        for i in range(start_batch * size, len(order), size):
            yield self.batch(order[i : i + size])

    def val_loader(self) -> Iterable[RetinaBatch]:
        return _Windows(self, self.val_starts)
