"""Retina models: stream movies through a retina (``runner``, ``task=retina_run``), score a
fitted LN model (``fit_report``, ``task=retina_fit``) and draw how a retina answers
(``figures``)."""

from topo_eval.retina.runner import RetinaRunner, read_outputs

__all__ = ["RetinaRunner", "read_outputs"]
