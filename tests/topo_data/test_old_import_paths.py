"""Modules that moved into family folders keep their old import paths: user code, notebooks
and the configs saved inside checkpoints name them."""

from __future__ import annotations

import importlib

import pytest

MOVED = {
    "topo_data.embedded": "topo_data.images.embedded",
    "topo_data.image_folder": "topo_data.images.folder",
    "topo_data.stimuli": "topo_data.images.sine_gratings",
    "topo_data.retina_responses": "topo_data.retina.responses",
    "topo_data.retina_stimuli": "topo_data.retina.stimuli",
    "topo_data.retina_video": "topo_data.retina.video",
}


@pytest.mark.parametrize(("old", "new"), MOVED.items())
def test_an_old_module_path_serves_the_same_objects_as_the_new_one(old, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    assert old_module.__all__
    for name in old_module.__all__:
        assert getattr(old_module, name) is getattr(new_module, name), name


def test_the_public_names_named_in_docs_and_configs_still_resolve():
    from hydra.utils import get_class, get_method

    from topo_data.retina import RetinaResponseData

    assert get_class("topo_data.retina_responses.RetinaResponseData") is RetinaResponseData
    assert get_class("topo_data.EmbeddedImageData").__module__ == "topo_data.images.embedded"
    assert get_class("topo_data.ImageFolderData").__module__ == "topo_data.images.folder"
    assert get_method("topo_data.stimuli.sine_gratings").__module__ == (
        "topo_data.images.sine_gratings"
    )
    assert callable(get_method("topo_data.sensorium.static_loaders"))
    assert callable(get_method("topo_data.sensorium.simulate"))
