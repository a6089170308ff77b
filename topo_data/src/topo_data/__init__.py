"""topo_data: data sets, transforms and samplers for topographic models, with no downloads.

Image folders (torchvision ``ImageFolder``) with SimCLR or supervised views, an embedded default
data set cut from the photos inside the scikit-image wheel, and samplers that make every batch
a pure function of (seed, epoch, index) so runs reproduce and resume exactly; multi-task
MNIST-family data (``topo_data.multitask``) for spatial multi-task networks.

One sub-package per family of data: ``images`` (image folders, the embedded photo set, sine
gratings), ``sensorium`` (mouse V1 recordings), ``multitask`` (MNIST-family tasks) and
``retina`` (responses to fit, stimuli, movies); the machinery they share (``transforms``,
``sampling``, ``errors``, ``catalog``) sits beside them. ``embedded``, ``image_folder``,
``stimuli``, ``retina_responses``, ``retina_stimuli`` and ``retina_video`` are the old import
paths of modules that moved into those folders.
"""

from topo_data.errors import TopoDataError
from topo_data.images import (
    EMBEDDED_PHOTOS,
    EmbeddedImageData,
    ImageFolderData,
    load_image_folder,
    parse_sine_grating_name,
    sine_gratings,
    write_embedded_image_folder,
    write_sine_grating_folder,
)
from topo_data.multitask import MultiTaskData
from topo_data.sampling import EpochSampler, SeededSamples
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
