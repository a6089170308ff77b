"""Old import path of :mod:`topo_data.images.folder`, kept so existing imports still work."""

from topo_data.images.folder import (
    CHECK_IMAGES_AUTO_MAX,
    VIEWS,
    ImageFolderData,
    check_image_files,
    load_image_folder,
    load_rgb_image,
)

__all__ = [
    "CHECK_IMAGES_AUTO_MAX",
    "VIEWS",
    "ImageFolderData",
    "check_image_files",
    "load_image_folder",
    "load_rgb_image",
]
