"""Old import path of :mod:`topo_data.images.embedded`, kept so existing imports still work."""

from topo_data.images.embedded import (
    EMBEDDED_PHOTOS,
    EmbeddedImageData,
    photo_path,
    write_embedded_image_folder,
)

__all__ = ["EMBEDDED_PHOTOS", "EmbeddedImageData", "photo_path", "write_embedded_image_folder"]
