"""Old import path of :mod:`topo_eval.retina.run_task`, kept so existing imports still work."""

from topo_eval.retina.run_task import retina_from_config, run_retina_task, source_from_config

__all__ = ["retina_from_config", "run_retina_task", "source_from_config"]
