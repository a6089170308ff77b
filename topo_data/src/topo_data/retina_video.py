"""Old import path of :mod:`topo_data.retina.video`, kept so existing imports still work."""

from topo_data.retina.video import (
    BT601_WEIGHTS,
    STIMULI,
    ArraySource,
    ImageFileSource,
    ImageSequenceSource,
    IterableSource,
    NpySource,
    StimulusSource,
    VideoSource,
    frame_luminance,
    open_video,
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
