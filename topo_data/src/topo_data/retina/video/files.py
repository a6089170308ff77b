"""Video sources read from files: movie files through imageio, and folders of images; and
``open_video``, which picks the source for a path or an array."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from topo_data.errors import TopoDataError
from topo_data.retina.video.sources import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    ArraySource,
    NpySource,
    VideoSource,
    _check_finite,
    _existing,
    _file_fingerprint,
    frame_luminance,
)

# --------------------------------------------------------------------------- image files


def _unreadable(path: Path, error: Exception) -> TopoDataError:
    """The error for a file imageio cannot decode: a missing backend is only the likely cause
    for codec formats (mp4, avi, ...); images need none, so they are empty or damaged."""
    if path.is_file() and path.stat().st_size == 0:
        message = "The file is empty (0 bytes), so it is not a readable movie or image."
        return TopoDataError(message, file=path, found="0 bytes")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        message = (
            f"Cannot read this {path.suffix} file: it is damaged or not the format its name says "
            "(GIF, PNG, JPEG, BMP and TIFF are read through Pillow and tifffile)."
        )
    else:
        message = (
            "Cannot read this video file. mp4, avi, mov and other codecs need an imageio "
            "backend: pip install av (or pip install imageio-ffmpeg)."
        )
    return TopoDataError(message, file=path, found=f"{type(error).__name__}: {error}")


class ImageFileSource(VideoSource):
    """A movie file (GIF, APNG, multi-page TIFF, or mp4/avi with pyav or imageio-ffmpeg),
    decoded one frame at a time with imageio v3; ``start`` skips frames by decoding them.

    Args:
        path: the file.
        luminance_range: luminance of the largest pixel value (255 for uint8).
    """

    def __init__(self, path: str | Path, luminance_range: float = 1.0) -> None:
        import imageio.v3 as iio

        self.path = _existing(path, "video file")
        self.luminance_range = float(luminance_range)
        self._tiff = self.path.suffix.lower() in TIFF_SUFFIXES
        try:
            if self._tiff:
                with iio.imopen(self.path, "r", plugin="tifffile") as tiff:
                    props = tiff.properties(index=Ellipsis, page=Ellipsis)
            else:
                props = iio.improps(self.path, index=Ellipsis)
        except Exception as error:  # imageio raises OSError, ValueError, plugin errors
            raise _unreadable(self.path, error) from error
        self._per_page = _frames_per_page(props.shape[1:]) if self._tiff else 1
        known = props.n_images is not None and (props.n_images > 0 or self._tiff)
        self.n_frames = int(props.n_images) * self._per_page if known else None  # codecs: may be 0

    def _frames(self) -> Iterator[np.ndarray]:
        import imageio.v3 as iio

        if self._tiff:  # page by page: tifffile's own iterator yields whole series
            with iio.imopen(self.path, "r", plugin="tifffile") as tiff:
                for page in range((self.n_frames or 0) // self._per_page):
                    frames = tiff.read(index=Ellipsis, page=page)
                    yield from (frames if self._per_page > 1 else [frames])
        else:
            yield from iio.imiter(self.path)

    def _pieces(self, start: int) -> Iterator[np.ndarray]:
        frames = self._frames()
        index = 0
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except Exception as error:
                raise _unreadable(self.path, error) from error
            if index >= start:
                luminance = frame_luminance(frame, self.luminance_range, str(self.path))
                _check_finite(luminance[None], str(self.path), index)
                yield luminance[None, None, None]
            index += 1

    def describe(self) -> dict[str, object]:
        return {
            "kind": "image_file",
            "luminance_range": self.luminance_range,
            **_file_fingerprint(self.path),
        }


def _frames_per_page(page_shape: tuple[int, ...]) -> int:
    """Frames in one TIFF page: 1, or the first axis of a volume page ``(d, H, W)`` (last axis
    not 1–4 channels) or ``(d, H, W, C)``; some writers put a whole stack in one page."""
    volume = len(page_shape) == 4 or (len(page_shape) == 3 and page_shape[-1] > 4)
    return int(page_shape[0]) if volume else 1


class ImageSequenceSource(VideoSource):
    """A folder of image files, one frame each, in sorted file-name order (zero-pad numbers)."""

    def __init__(self, folder: str | Path, luminance_range: float = 1.0) -> None:
        self.folder = _existing(folder, "image folder")
        self.luminance_range = float(luminance_range)
        self.files = sorted(
            p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise TopoDataError(
                "The folder has no image files.",
                file=self.folder,
                expected=f"files ending in {', '.join(IMAGE_SUFFIXES)}",
                found="none",
            )
        self.n_frames = len(self.files)

    def _pieces(self, start: int) -> Iterator[np.ndarray]:
        import imageio.v3 as iio

        for index, path in enumerate(self.files[start:], start):
            try:
                frame = iio.imread(path)
            except Exception as error:
                raise _unreadable(path, error) from error
            luminance = frame_luminance(frame, self.luminance_range, str(path))
            _check_finite(luminance[None], str(path), index)
            yield luminance[None, None, None]

    def describe(self) -> dict[str, object]:
        return {
            "kind": "image_sequence",
            "path": str(self.folder.resolve()),
            "files": [p.name for p in self.files],
            "bytes": sum(p.stat().st_size for p in self.files),
            "luminance_range": self.luminance_range,
        }


def open_video(
    video: str | Path | np.ndarray | torch.Tensor | VideoSource, luminance_range: float = 1.0
) -> VideoSource:
    """The right source for a path (``.npy``, an image folder, a movie file) or an array."""
    if isinstance(video, VideoSource):
        return video
    if isinstance(video, (np.ndarray, torch.Tensor)):
        return ArraySource(video, luminance_range)
    path = _existing(video, "video")
    if path.is_dir():
        return ImageSequenceSource(path, luminance_range)
    if path.suffix.lower() == ".npy":
        return NpySource(path, luminance_range)
    return ImageFileSource(path, luminance_range)
