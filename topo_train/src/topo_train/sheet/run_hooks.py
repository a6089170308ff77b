"""Units on a fixed cortical sheet: the run hooks of ``positions=`` (see ``contracts.RunHooks``).

Before training, the positions come from ``run_dir/positions`` (a resumed run keeps its sheet),
else ``positions_dir`` (a positions stage's output or TDANN's released files), else the
configured layout; they go to the objective as ``positions``. After training, a figure of the
responses on the sheet is written and the positions are logged (their files once per distinct
set in the MLflow store, see ``MLflowTracker.log_positions``).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from topo_models import TopoError
from topo_models.positions import NetworkPositions, layer_dims
from topo_train.contracts import DataModule
from topo_train.run_checkpoints import TEMP_SUFFIX
from topo_train.sheet.figure import save_sheet_figure

log = logging.getLogger(__name__)

POSITIONS_DIR = "positions"
FIGURE = Path("figures") / "responses_on_sheet.png"


def input_size(data: Any) -> int:
    """The side of the square images the sheet's layers see."""
    return int(data.image_size)


def build_layout(layout_cfg: DictConfig, run_dir: Path) -> Any:
    """The configured layout. One that keeps finished layers (``cache_dir``, a swap) keeps
    them in ``<run_dir>_swap`` unless told otherwise, so a killed build resumes."""
    layout = OmegaConf.to_container(layout_cfg, resolve=True)
    if "cache_dir" in layout and layout["cache_dir"] is None:
        layout["cache_dir"] = f"{run_dir}_swap"
    try:
        return instantiate(layout)
    except InstantiationException as error:  # the layout's own message, not Hydra's wrapping
        if isinstance(error.__cause__, TopoError):
            raise error.__cause__ from None
        raise


class SheetRunHooks:
    """Positions for a run (before training) and their figure and artifact (after).

    Args:
        layout: the ``positions`` config group (a layout with ``build(model, input_size)``).
        positions_dir: a directory of ``<layer>.npz`` to use instead of building them.
        figure_layers: layers drawn in ``figures/responses_on_sheet.png`` at the end.
    """

    def __init__(
        self, layout: DictConfig, positions_dir: str | None, figure_layers: list[str]
    ) -> None:
        self.layout = layout
        self.positions_dir = positions_dir
        self.figure_layers = list(figure_layers)
        self.positions: NetworkPositions | None = None

    def start(self, model: nn.Module, data: DataModule, run_dir: Path, context: Any) -> dict:
        """Rank 0 builds (and writes whole) the positions; replicas then load what it wrote."""
        if context.is_main:
            self.positions = self.build(model, data, run_dir, is_main=True)
        context.barrier()
        if not context.is_main:
            self.positions = self.build(model, data, run_dir, is_main=False)
        return {"positions": self.positions}

    def build(self, model: nn.Module, data: Any, run_dir: Path, is_main: bool) -> NetworkPositions:
        """The run's positions, whatever their source checked against the model's layers."""
        own = run_dir / POSITIONS_DIR
        dims = layer_dims(model, input_size(data))
        if own.is_dir() and _holds_every_layer(own, dims):
            source = own
            positions = NetworkPositions.load(own)
        elif self.positions_dir:
            source = Path(self.positions_dir)
            positions = NetworkPositions.load(source)
        else:
            source = None
            positions = build_layout(self.layout, run_dir).build(model, input_size(data))
        positions.check_dims(dims, None if source is None else str(source))
        if source != own and is_main:
            save_positions_whole(positions, own)
        return positions

    def finish(self, model: nn.Module, data: Any, run_dir: Path, tracker: Any) -> None:
        """The responses-on-sheet figure of one image, and the positions as an artifact."""
        layers = [layer for layer in self.figure_layers if layer in self.positions]
        if layers:
            path = run_dir / FIGURE
            save_sheet_figure(model, self.positions, data.sample_images(1)[0], layers, path)
            tracker.log_artifact(path, "figures")
        tracker.log_positions(run_dir / POSITIONS_DIR)  # once per distinct set in the store


def _holds_every_layer(directory: Path, dims: dict[str, tuple[int, ...]]) -> bool:
    """False for a directory an interrupted write left without some layers (older topo wrote
    layer by layer); such a directory is rebuilt, never trusted."""
    missing = [name for name in dims if not (directory / f"{name}.npz").is_file()]
    if missing and any(directory.glob("*.npz")):
        log.warning("%s lacks layers %s (an interrupted write); rebuilding it", directory, missing)
    return not missing


def save_positions_whole(positions: NetworkPositions, directory: Path) -> None:
    """Write every layer into a temp directory, then rename it into place: a kill at any
    instant leaves either no ``directory`` or a complete one."""
    temp = directory.with_name(f".{directory.name}{TEMP_SUFFIX}")
    shutil.rmtree(temp, ignore_errors=True)
    positions.save(temp)
    if directory.exists():  # an incomplete directory (see _holds_every_layer)
        shutil.rmtree(directory)
    os.replace(temp, directory)


def write_positions(layout_cfg: DictConfig | None, model: nn.Module, data: Any, out: Path) -> Path:
    """``task=positions``: build the layout's positions for ``model`` and write them whole to
    ``out`` (TDANN's npz layout) — the positions stage of a pipeline."""
    if layout_cfg is None:
        raise TopoError(
            "this config has no positions to write", field="positions", expected="a layout"
        )
    positions = build_layout(layout_cfg, out).build(model, input_size(data))
    others = [p for p in out.iterdir() if p.suffix not in (".npz", ".json")] if out.is_dir() else []
    if others:  # a directory holding other files (Hydra's run directory) is never replaced
        positions.save(out)
    else:
        save_positions_whole(positions, out)
    log.info("wrote positions of %d layers to %s", len(positions), out)
    return out
