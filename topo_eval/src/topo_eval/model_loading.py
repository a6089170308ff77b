"""Rebuild a trained model (kept here for ``from topo_eval.model_loading import …``; the loader
lives in :mod:`topo_models.trained` so that ``topo_train`` uses the same one), and find the
positions a run wrote beside it."""

from pathlib import Path

from topo_models import TopoError
from topo_models.trained import load_trained_model

__all__ = ["load_trained_model", "positions_beside"]


def positions_beside(checkpoint: str | Path) -> Path:
    """The ``positions/`` folder a topo run writes beside its ``model.pt``."""
    directory = Path(checkpoint).parent / "positions"
    if not directory.is_dir():
        raise TopoError(
            "this checkpoint has no positions beside it; pass positions=<directory>",
            file=directory,
            field="positions",
            expected="a run directory's positions/ beside model.pt, or positions=…",
        )
    return directory
