"""Movies for the retina models, streamed in chunks so that no source is ever loaded whole.

A ``VideoSource`` yields float32 luminance chunks ``(batch, channels, t, height, width)`` that a
``Retina`` takes as they are; ``chunks(chunk, start)`` can restart at any frame, which is what
lets a killed retina run resume. Sources:

* ``ArraySource``: an in-memory array or tensor, ``(T, H, W)`` or ``(B, C, T, H, W)``.
* ``NpySource``: a ``.npy`` file of the same shapes, memory-mapped (only the chunk is read).
* ``ImageFileSource``: a movie file read frame by frame through imageio v3. GIF, APNG/PNG and
  (via tifffile) TIFF stacks work with the packages topo_data depends on; mp4/avi/mov need an
  imageio backend the user installs (``pip install av`` or ``pip install imageio-ffmpeg``).
* ``ImageSequenceSource``: a folder of image files (PNG, TIFF, ...), one frame each, by name.
* ``IterableSource``: any iterable of frames or chunks, e.g. a generator of stimulus chunks.
* ``stimulus_source``: a stimulus of ``topo_data.retina.stimuli`` by name.

Values: integer pixels (uint8, uint16, bool) are scaled to ``[0, luminance_range]`` by their
dtype's maximum; float pixels are taken as luminance as they are; the output of
``topo_data.retina.stimuli`` (defined in [0, 1]) is multiplied by ``luminance_range``. Colour
frames become luminance with the ITU-R BT.601 luma weights ``0.299 R + 0.587 G + 0.114 B``
(alpha dropped; frames whose channels are all equal keep their grey values exactly). No gamma
decoding is applied: pixel values are treated as proportional to luminance.
"""

from topo_data.retina.video.files import ImageFileSource, ImageSequenceSource, open_video
from topo_data.retina.video.sources import (
    BT601_WEIGHTS,
    STIMULI,
    ArraySource,
    IterableSource,
    NpySource,
    StimulusSource,
    VideoSource,
    frame_luminance,
    stimulus_source,
)

__all__ = [
    "BT601_WEIGHTS",
    "STIMULI",
    "ArraySource",
    "ImageFileSource",
    "ImageSequenceSource",
    "IterableSource",
    "NpySource",
    "StimulusSource",
    "VideoSource",
    "frame_luminance",
    "open_video",
    "stimulus_source",
]
