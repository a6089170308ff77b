"""topo_eval: analyses of trained topographic models (imports topo_models and topo_data only).

One sub-package per family of models: ``tdann`` (responses registered on the sheet),
``predictive`` (Sensorium scores and submissions), ``multitask`` (record, split, score, plot)
and ``retina`` (streamed runs, fitted LN models); shared beside them: ``model_loading``,
``data_loading``, ``figure_files`` and ``tracking`` (MLflow). ``python -m topo_eval`` runs one
task of the ``task`` config group (``conf/`` in this package). ``responses``,
``predictive_report``, ``predictive_figures``, ``predictive_task``, ``submission`` and the
``retina_*`` modules are the old import paths of modules that moved into those folders.
"""

from topo_eval.model_loading import load_trained_model
from topo_eval.tdann.responses import plot_layer, registered_responses

__all__ = ["load_trained_model", "plot_layer", "registered_responses"]
