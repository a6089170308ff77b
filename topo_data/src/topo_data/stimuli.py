"""Old import path of :mod:`topo_data.images.sine_gratings`, kept so existing imports still
work."""

from topo_data.images.sine_gratings import (
    COLORS,
    DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE,
    METADATA_COLUMNS,
    parse_sine_grating_name,
    sine_grating_name,
    sine_gratings,
    write_sine_grating_folder,
)

__all__ = [
    "COLORS",
    "DEFAULT_FREQUENCIES_CYCLES_PER_IMAGE",
    "METADATA_COLUMNS",
    "parse_sine_grating_name",
    "sine_grating_name",
    "sine_gratings",
    "write_sine_grating_folder",
]
