"""Still images for TDANN-style networks: image folders, the embedded photo set, sine gratings.

``ImageFolderData`` serves ImageNet-style folders (``root/<class>/<image>``) with SimCLR or
supervised views; ``EmbeddedImageData`` is the default data set, crops of the photos inside the
scikit-image wheel (no download); ``sine_gratings`` generates TDANN's 640 grating stimuli;
``write_category_set`` / ``load_category_set`` give labelled category folders (fLoc's layout;
a built-in stand-in).
"""

from topo_data.images.category_set import (
    CategorySet,
    load_category_set,
    write_category_set,
)
from topo_data.images.embedded import (
    EMBEDDED_PHOTOS,
    EmbeddedImageData,
    photo_path,
    write_embedded_image_folder,
)
from topo_data.images.folder import ImageFolderData, load_image_folder, load_rgb_image
from topo_data.images.sine_gratings import (
    parse_sine_grating_name,
    sine_gratings,
    write_sine_grating_folder,
)

__all__ = [
    "EMBEDDED_PHOTOS",
    "CategorySet",
    "EmbeddedImageData",
    "ImageFolderData",
    "load_category_set",
    "load_image_folder",
    "load_rgb_image",
    "parse_sine_grating_name",
    "photo_path",
    "sine_gratings",
    "write_category_set",
    "write_embedded_image_folder",
    "write_sine_grating_folder",
]
