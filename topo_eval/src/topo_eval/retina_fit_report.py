"""Old import path of :mod:`topo_eval.retina.fit_report`, kept so existing imports still work."""

from topo_eval.retina.fit_report import fit_table, plot_kernels, run_retina_fit

__all__ = ["fit_table", "plot_kernels", "run_retina_fit"]
