"""Sensorium 2022 static data: the published file tree, its normalisation and fast loaders.

``write_static_session`` writes the exact published layout (used by the simulator and the tests);
``SensoriumSession`` opens and validates a zip or folder; ``static_loaders`` builds the
``{tier: {data_key: DataLoader}}`` of the 2022 baseline, served from a memory-mapped cache of
pre-normalised, pre-downscaled arrays.
"""

from topo_data.sensorium.cache import TierCache, default_cache_dir, open_tier_cache
from topo_data.sensorium.dataset import StaticBatch, StaticTierDataset
from topo_data.sensorium.layout import (
    DATA_FIELDS,
    TIERS,
    data_key_from_path,
    default_cache_root,
    session_name,
    unpack_session_zip,
)
from topo_data.sensorium.loaders import static_loader, static_loaders
from topo_data.sensorium.normalization import ImagePipeline, StaticNormalizer, response_precision
from topo_data.sensorium.session import NeuronInfo, SensoriumSession
from topo_data.sensorium.simulate import simulate
from topo_data.sensorium.writer import write_static_session

__all__ = [
    "DATA_FIELDS",
    "TIERS",
    "ImagePipeline",
    "NeuronInfo",
    "SensoriumSession",
    "StaticBatch",
    "StaticNormalizer",
    "StaticTierDataset",
    "TierCache",
    "data_key_from_path",
    "default_cache_dir",
    "default_cache_root",
    "open_tier_cache",
    "response_precision",
    "session_name",
    "simulate",
    "static_loader",
    "static_loaders",
    "unpack_session_zip",
    "write_static_session",
]
