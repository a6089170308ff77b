"""Old import path of :mod:`topo_data.retina.stimuli`, kept so existing imports still work."""

from topo_data.retina.stimuli import (
    CHIRP_SEGMENTS,
    as_video,
    chirp,
    chirp_segments,
    drifting_grating,
    full_field_flash,
    moving_bar,
    white_noise,
)

__all__ = [
    "CHIRP_SEGMENTS",
    "as_video",
    "chirp",
    "chirp_segments",
    "drifting_grating",
    "full_field_flash",
    "moving_bar",
    "white_noise",
]
