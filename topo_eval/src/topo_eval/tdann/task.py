"""``task=responses``: every layer's responses to one image, registered on the sheet, as a table
(layer, unit, x_mm, y_mm, response) and one figure per layer."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from topo_data import eval_transform
from topo_data.images import load_rgb_image, photo_path
from topo_eval.figure_files import write_figure
from topo_eval.model_loading import load_trained_model
from topo_eval.tdann.responses import plot_layer, registered_responses
from topo_models.atomic import atomic_write_bytes
from topo_models.positions import NetworkPositions
from topo_models.safe_load import read_torch_file

log = logging.getLogger("topo_eval")


def trained_input_size(checkpoint: Path) -> int:
    """The input size a topo ``model.pt`` was trained at (224 for TDANN checkpoints)."""
    saved = read_torch_file(checkpoint)
    config = saved.get("config_yaml", "{}") if isinstance(saved, dict) else "{}"
    return int(OmegaConf.select(OmegaConf.create(config), "data.image_size", default=224))


def run_responses(cfg: DictConfig, output_dir: Path) -> tuple[Path, dict[str, float]]:
    """Write responses.csv and figures/<layer>.png for one image; (the table's path, no metrics).

    Config keys: ``checkpoint``, ``positions`` (a directory of position files), ``image``
    (null: the astronaut photo), ``image_size`` (null: the trained size), ``layers`` (null: all).
    """
    model = load_trained_model(cfg.checkpoint)
    size = cfg.image_size or trained_input_size(Path(cfg.checkpoint))
    positions = NetworkPositions.load(cfg.positions)
    image_file = Path(cfg.image) if cfg.image else photo_path("astronaut")
    image = eval_transform(int(size))(load_rgb_image(str(image_file)))
    layers = list(cfg.layers) if cfg.layers else None
    table = registered_responses(model, positions, image, layers)
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "responses.csv"
    atomic_write_bytes(table.to_csv(index=False).encode(), csv_path)
    for layer in table.layer.unique():
        figure = plot_layer(table, layer, image_file.name)
        write_figure(figure, output_dir / "figures" / f"{layer}.png")
    log.info(
        "responses of %d units in %d layers → %s", len(table), table.layer.nunique(), output_dir
    )
    return csv_path, {}
