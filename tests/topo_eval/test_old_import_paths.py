"""Modules that moved into family folders keep their old import paths (user code, notebooks,
benchmarks and the README name them)."""

from __future__ import annotations

import importlib

import pytest

MOVED = {
    "topo_eval.responses": "topo_eval.tdann.responses",
    "topo_eval.predictive_report": "topo_eval.predictive.report",
    "topo_eval.predictive_figures": "topo_eval.predictive.figures",
    "topo_eval.predictive_task": "topo_eval.predictive.task",
    "topo_eval.submission": "topo_eval.predictive.submission",
    "topo_eval.retina_runner": "topo_eval.retina.runner",
    "topo_eval.retina_figures": "topo_eval.retina.figures",
    "topo_eval.retina_fit_report": "topo_eval.retina.fit_report",
    "topo_eval.retina_task": "topo_eval.retina.run_task",
}


@pytest.mark.parametrize(("old", "new"), MOVED.items())
def test_an_old_module_path_serves_the_same_objects_as_the_new_one(old, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    moved = [name for name in old_module.__all__ if name != "write_figure"]
    assert moved
    for name in moved:
        assert getattr(old_module, name) is getattr(new_module, name), name


def test_the_names_the_readme_and_the_cli_tests_use_still_import():
    from topo_eval.__main__ import with_training_data
    from topo_eval.data_loading import with_training_data as moved
    from topo_eval.figure_files import write_figure
    from topo_eval.model_loading import load_trained_model
    from topo_eval.predictive import correlation, correlation_to_average, explainable_variance, feve
    from topo_eval.predictive.metrics import correlation as metric
    from topo_eval.responses import write_figure as old_write_figure
    from topo_eval.retina_runner import read_outputs

    assert with_training_data is moved and old_write_figure is write_figure
    assert correlation is metric and callable(load_trained_model) and callable(read_outputs)
    assert all(map(callable, (correlation_to_average, explainable_variance, feve)))
