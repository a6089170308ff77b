"""topo_data: data sets, transforms and samplers for topographic models, with no downloads.

Image folders (torchvision ``ImageFolder``) with SimCLR or supervised views, an embedded default
data set cut from the photos inside the scikit-image wheel, and samplers that make every batch
a pure function of (seed, epoch, index) so runs reproduce and resume exactly; multi-task
MNIST-family data (``topo_data.multitask``) for spatial multi-task networks.
"""

from topo_data.embedded import EMBEDDED_PHOTOS, EmbeddedImageData, write_embedded_image_folder
from topo_data.errors import TopoDataError
from topo_data.image_folder import ImageFolderData, load_image_folder
from topo_data.multitask import MultiTaskData
from topo_data.sampling import EpochSampler, SeededSamples
from topo_data.stimuli import parse_sine_grating_name, sine_gratings, write_sine_grating_folder
from topo_data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TwoViews,
    eval_transform,
    simclr_transform,
    supervised_transform,
)

__all__ = [
    "EMBEDDED_PHOTOS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EmbeddedImageData",
    "EpochSampler",
    "ImageFolderData",
    "MultiTaskData",
    "SeededSamples",
    "TopoDataError",
    "TwoViews",
    "eval_transform",
    "load_image_folder",
    "simclr_transform",
    "supervised_transform",
    "write_embedded_image_folder",
    "parse_sine_grating_name",
    "sine_gratings",
    "write_sine_grating_folder",
]
