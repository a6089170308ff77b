"""The data modules a saved config may name: what evaluation rebuilds from a checkpoint.

A ``model.pt`` carries its training config, whose ``data`` section says how to rebuild the data
the model was trained on. Only the ``_target_`` paths below (those of ``conf/data/*.yaml``, and
the paths older checkpoints saved before a module moved) are ever built from such a file; see
``topo_models.rebuild.build_from_config``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def data_module_constructors() -> dict[str, Callable[..., Any]]:
    """``_target_`` → data module class, for every data module topo ships."""
    from topo_data.images import EmbeddedImageData, ImageFolderData
    from topo_data.multitask import MultiTaskData
    from topo_data.retina import RetinaResponseData
    from topo_data.sensorium.data_module import SensoriumData

    return {
        "topo_data.EmbeddedImageData": EmbeddedImageData,
        "topo_data.ImageFolderData": ImageFolderData,
        "topo_data.multitask.MultiTaskData": MultiTaskData,
        "topo_data.retina.RetinaResponseData": RetinaResponseData,
        "topo_data.sensorium.data_module.SensoriumData": SensoriumData,
        # saved in checkpoints before the retina modules moved into topo_data/retina/
        "topo_data.retina_responses.RetinaResponseData": RetinaResponseData,
    }
