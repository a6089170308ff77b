"""Video sources of the retina models that are not files: arrays, ``.npy`` (memory-mapped),
iterables and stimuli, with the pixel-value rules every source shares (``frame_luminance``).
What a source yields, and the value rules, are in the package's docstring
(``topo_data.retina.video``); file sources are in ``files.py``.
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from topo_data.errors import TopoDataError
from topo_data.retina import stimuli

BT601_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B (they sum to 1)."""

STIMULI: dict[str, Callable[..., np.ndarray]] = {
    "chirp": stimuli.chirp,
    "drifting_grating": stimuli.drifting_grating,
    "full_field_flash": stimuli.full_field_flash,
    "moving_bar": stimuli.moving_bar,
    "white_noise": stimuli.white_noise,
}
"""The generators of ``topo_data.retina.stimuli`` by name, for ``stimulus_source`` and configs."""

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
FrameShape = tuple[int, int, int, int]
Items = Iterable[np.ndarray | torch.Tensor]


# --------------------------------------------------------------------------- pixel values


def _scale_factor(dtype: np.dtype, luminance_range: float, where: str) -> float | None:
    """Luminance per pixel unit: integers by their dtype's maximum; None for floats (as is)."""
    if dtype == np.bool_:
        return float(luminance_range)
    if np.issubdtype(dtype, np.unsignedinteger):
        return luminance_range / float(np.iinfo(dtype).max)
    if np.issubdtype(dtype, np.floating):
        return None
    raise TopoDataError(
        "Pixel values must be unsigned integers, bool or floats.",
        file=where,
        field="dtype",
        expected="uint8 | uint16 | bool | float",
        found=dtype,
    )


def _scaled(values: np.ndarray, luminance_range: float, where: str) -> np.ndarray:
    """Pixel values → float32 luminance (computed in float64 for integers)."""
    factor = _scale_factor(values.dtype, luminance_range, where)
    if factor is None:
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float64) * factor).astype(np.float32)


def frame_luminance(
    frame: np.ndarray, luminance_range: float = 1.0, where: str = "frame"
) -> np.ndarray:
    """One decoded image ``(H, W)``, ``(H, W, 1|2)`` grey(+alpha) or ``(H, W, 3|4)`` RGB(A) →
    float32 luminance ``(H, W)`` (module docstring: scaling, BT.601 weights).
    """
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[-1] in (1, 2):
        frame = frame[..., 0]
    elif frame.ndim == 3 and frame.shape[-1] in (3, 4):
        rgb = frame[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            frame = rgb[..., 0]
        else:
            factor = _scale_factor(rgb.dtype, luminance_range, where)
            luma = rgb.astype(np.float64) @ np.asarray(BT601_WEIGHTS)
            return (luma if factor is None else luma * factor).astype(np.float32)
    if frame.ndim != 2:
        raise TopoDataError(
            "A frame is a grey or colour image.",
            file=where,
            field="frame shape",
            expected="(H, W), (H, W, 1|2) or (H, W, 3|4)",
            found=frame.shape,
        )
    return _scaled(frame, luminance_range, where)


def _check_finite(values: np.ndarray, where: str, first_frame: int) -> None:
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        raise TopoDataError(
            "The video has NaN or infinite values.",
            file=where,
            field=f"frame {first_frame + int(bad[-3])}",
            expected="finite luminance",
            found=values[tuple(bad)],
        )


def _as_5d(values: np.ndarray, where: str, accepted: str) -> np.ndarray:
    """(T, H, W) → (1, 1, T, H, W); (B, C, T, H, W) as it is; anything else is an error."""
    if values.ndim == 3:
        return values[None, None]
    if values.ndim == 5:
        return values
    raise TopoDataError(
        "Wrong number of video dimensions.",
        file=where,
        field="shape",
        expected=accepted,
        found=values.shape,
    )


def _check_chunk_arguments(chunk: int, start: int) -> None:
    for name, value, low in (("chunk", chunk, 1), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise TopoDataError(
                "Bad chunk argument.", field=name, expected=f"an integer >= {low}", found=value
            )


def _tensor(values: np.ndarray) -> torch.Tensor:
    """A tensor owning its memory (a copy of read-only memory-mapped views, so that the file
    is not held open and the tensor may be written)."""
    if type(values) is not np.ndarray or not values.flags.writeable:
        values = np.array(values)
    return torch.from_numpy(np.ascontiguousarray(values))


def _file_fingerprint(path: Path) -> dict[str, object]:
    """Enough of a file to tell it from another: resolved path, size, hash of its first MiB."""
    with path.open("rb") as fh:
        head = hashlib.blake2b(fh.read(2**20), digest_size=16).hexdigest()
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "head_blake2b": head}


def _existing(path: str | Path, what: str) -> Path:
    """``path`` if it exists and, when a file, is not empty (0 bytes: an interrupted copy)."""
    path = Path(path)
    if not path.exists():
        raise TopoDataError(f"The {what} does not exist.", file=path, expected="an existing path")
    if path.is_file() and path.stat().st_size == 0:
        raise TopoDataError(
            f"The {what} is empty (0 bytes), so it is not a readable movie; copy or write it "
            "again.",
            file=path,
            found="0 bytes",
        )
    return path


# --------------------------------------------------------------------------- interface


class VideoSource(ABC):
    """A movie that can be read in chunks from any frame.

    Attributes:
        n_frames: number of frames, or None when unknown until the end (iterables, some codecs).
        frame_shape: ``(batch, channels, height, width)`` of every chunk, or None until read.
    """

    n_frames: int | None = None
    frame_shape: FrameShape | None = None

    @abstractmethod
    def _pieces(self, start: int) -> Iterator[np.ndarray]:
        """Consecutive (B, C, t, H, W) float32 pieces of any length, from frame ``start``."""

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """JSON-able identity, so a resumed run can check that it reads the same movie."""

    def chunks(self, chunk: int, start: int = 0) -> Iterator[torch.Tensor]:
        """float32 tensors (B, C, ``chunk``, H, W) from frame ``start`` on; the last may be shorter.

        Chunk ``k`` always holds frames ``[start + k·chunk, start + (k+1)·chunk)``, whatever the
        lengths of the pieces the source decodes.
        """
        _check_chunk_arguments(chunk, start)
        buffer: list[np.ndarray] = []
        held = 0
        for piece in self._pieces(int(start)):
            self._check_shape(piece)
            buffer.append(piece)
            held += piece.shape[2]
            while held >= chunk:
                joined = np.concatenate(buffer, axis=2) if len(buffer) > 1 else buffer[0]
                yield _tensor(joined[:, :, :chunk])
                rest = joined[:, :, chunk:]
                buffer, held = ([rest] if rest.shape[2] else []), rest.shape[2]
        if held:
            yield _tensor(np.concatenate(buffer, axis=2))

    def _check_shape(self, piece: np.ndarray) -> None:
        shape = (piece.shape[0], piece.shape[1], piece.shape[3], piece.shape[4])
        if self.frame_shape is None:
            self.frame_shape = shape
        elif shape != self.frame_shape:
            raise TopoDataError(
                "All frames of a video must have the same shape.",
                file=self.describe().get("path", type(self).__name__),
                field="frame shape (batch, channels, height, width)",
                expected=self.frame_shape,
                found=shape,
            )


# --------------------------------------------------------------------------- arrays and .npy


class ArraySource(VideoSource):
    """An array or tensor ``(T, H, W)`` or ``(B, C, T, H, W)``; only the chunk is converted.

    Args:
        array: pixel values (module docstring for the scaling); a ``np.memmap`` stays on disk.
        luminance_range: luminance of the largest integer value (floats are not scaled).
        name: what error messages and ``describe`` call it.
    """

    def __init__(
        self, array: np.ndarray | torch.Tensor, luminance_range: float = 1.0, name: str = "array"
    ) -> None:
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        self.name = str(name)
        self.luminance_range = float(luminance_range)
        self.array = _as_5d(np.asanyarray(array), self.name, "(T, H, W) or (B, C, T, H, W)")
        _scaled(self.array[:, :, :0], self.luminance_range, self.name)  # dtype check
        b, c, t, h, w = self.array.shape
        self.n_frames, self.frame_shape = int(t), (b, c, h, w)

    def _pieces(self, start: int) -> Iterator[np.ndarray]:
        step = max(1, 2**22 // max(1, int(np.prod(self.frame_shape))))  # ~4 Mi values a piece
        for first in range(start, self.n_frames, step):
            piece = np.asarray(self.array[:, :, first : first + step])
            _check_finite(piece, self.name, first)
            yield _scaled(piece, self.luminance_range, self.name)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "array",
            "name": self.name,
            "shape": list(self.array.shape),
            "dtype": str(self.array.dtype),
            "luminance_range": self.luminance_range,
            "first_frame_blake2b": hashlib.blake2b(
                np.ascontiguousarray(self.array[:, :, :1]).tobytes(), digest_size=16
            ).hexdigest(),
        }


class NpySource(ArraySource):
    """A ``.npy`` file ``(T, H, W)`` or ``(B, C, T, H, W)``, memory-mapped (never read whole)."""

    def __init__(self, path: str | Path, luminance_range: float = 1.0) -> None:
        self.path = _existing(path, ".npy file")
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:  # EOFError: header cut short
            raise TopoDataError(
                "Not a readable .npy array.",
                file=self.path,
                found=f"{type(error).__name__}: {error}",
            ) from error
        super().__init__(array, luminance_range, name=str(self.path))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "kind": "npy", **_file_fingerprint(self.path)}


# --------------------------------------------------------------------------- iterables


class IterableSource(VideoSource):
    """Frames or chunks from an iterable: each item ``(H, W)``, ``(t, H, W)`` or
    ``(B, C, t, H, W)`` (numpy or torch; scaled like arrays).

    Args:
        items: a function returning a fresh iterable (restartable, so a run can resume), or an
            iterable; a one-shot iterator (a generator object) can be read once only.
        n_frames: the length, if known (for progress bars).
        luminance_range: luminance of the largest integer value.
        name: identity in ``describe`` (a resumed run checks it) and error messages.
    """

    def __init__(
        self,
        items: Callable[[], Items] | Items,
        n_frames: int | None = None,
        luminance_range: float = 1.0,
        name: str = "iterable",
    ) -> None:
        self.items = items
        self.n_frames = None if n_frames is None else int(n_frames)
        self.luminance_range = float(luminance_range)
        self.name = str(name)
        self._used = False

    def _iterable(self) -> Items:
        if callable(self.items):
            return self.items()
        if iter(self.items) is self.items:  # a one-shot iterator
            if self._used:
                raise TopoDataError(
                    "A one-shot iterator cannot be read twice; pass a function that returns a "
                    "new iterator.",
                    file=self.name,
                    field="items",
                    expected="a callable returning an iterable, or a list",
                    found=type(self.items).__name__,
                )
            self._used = True
        return self.items

    def _pieces(self, start: int) -> Iterator[np.ndarray]:
        skip, index = start, 0
        for item in self._iterable():
            if isinstance(item, torch.Tensor):
                item = item.detach().cpu().numpy()
            values = np.asarray(item)
            values = values[None] if values.ndim == 2 else values
            values = _as_5d(values, self.name, "items (H, W), (t, H, W) or (B, C, t, H, W)")
            if skip:
                dropped = min(skip, values.shape[2])
                values, skip, index = values[:, :, dropped:], skip - dropped, index + dropped
            if values.shape[2]:
                _check_finite(values, self.name, index)
                index += values.shape[2]
                yield _scaled(values, self.luminance_range, self.name)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "iterable",
            "name": self.name,
            "n_frames": self.n_frames,
            "luminance_range": self.luminance_range,
        }


# --------------------------------------------------------------------------- factories


class StimulusSource(ArraySource):
    """A ``topo_data.retina.stimuli`` stimulus, generated in memory; made by ``stimulus_source``."""

    def __init__(self, name: str, arguments: dict[str, object], luminance_range: float) -> None:
        values = STIMULI[name](**arguments) * np.float32(luminance_range)
        super().__init__(values, luminance_range, name=f"stimulus {name}")
        self.stimulus, self.arguments = name, dict(arguments)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "stimulus",
            "name": self.stimulus,
            "arguments": self.arguments,
            "luminance_range": self.luminance_range,
        }


def stimulus_source(name: str, luminance_range: float = 1.0, **arguments: object) -> StimulusSource:
    """The stimulus ``name`` of ``topo_data.retina.stimuli`` with ``arguments``, times
    ``luminance_range``.

    The stimulus is generated whole (float32, ``T·H·W`` values); for movies too long for that,
    use an ``IterableSource`` over a generator of chunks.
    """
    if name not in STIMULI:
        raise TopoDataError("Unknown stimulus.", field="name", expected=sorted(STIMULI), found=name)
    accepted = inspect.signature(STIMULI[name]).parameters
    unknown = sorted(set(arguments) - set(accepted))
    missing = sorted(
        k
        for k, p in accepted.items()
        if p.default is inspect.Parameter.empty and k not in arguments
    )
    if unknown or missing:
        raise TopoDataError(
            f"Bad arguments for stimulus {name}.",
            field=", ".join(unknown or missing),
            expected=f"arguments of topo_data.retina.stimuli.{name}: {list(accepted)}",
            found=f"unknown {unknown}, missing {missing}",
        )
    return StimulusSource(name, arguments, float(luminance_range))
