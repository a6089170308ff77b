"""Old import path of :mod:`topo_eval.predictive.task`, kept so existing imports still work."""

from topo_eval.predictive.task import predictive_loaders, run_predictive

__all__ = ["predictive_loaders", "run_predictive"]
