"""``python -m topo_eval task=responses checkpoint=… positions_dir=… [image=…]``."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from topo_data import eval_transform
from topo_data.embedded import photo_path
from topo_data.image_folder import load_rgb_image
from topo_eval.model_loading import load_trained_model
from topo_eval.responses import plot_layer, registered_responses, write_figure
from topo_models import TopoError
from topo_models.positions import NetworkPositions

log = logging.getLogger("topo_eval")
TASKS = ("responses",)


def run_responses(cfg: DictConfig, output_dir: Path) -> Path:
    """Write responses.csv and figures/<layer>.png for one image; return the table's path."""
    import torch

    model = load_trained_model(cfg.checkpoint)
    saved = torch.load(cfg.checkpoint, map_location="cpu", weights_only=True)
    trained = OmegaConf.create(saved.get("config_yaml", "{}"))
    size = cfg.image_size or OmegaConf.select(trained, "data.image_size", default=224)
    positions = NetworkPositions.load(cfg.positions_dir)
    image_file = Path(cfg.image) if cfg.image else photo_path("astronaut")
    image = eval_transform(int(size))(load_rgb_image(str(image_file)))
    layers = list(cfg.layers) if cfg.layers else None
    table = registered_responses(model, positions, image, layers)
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "responses.csv"
    temp = output_dir / ".responses.csv.tmp"
    table.to_csv(temp, index=False)
    temp.replace(csv_path)
    for layer in table.layer.unique():
        write_figure(plot_layer(table, layer), output_dir / "figures" / f"{layer}.png")
    log.info(
        "responses of %d units in %d layers → %s", len(table), table.layer.nunique(), output_dir
    )
    return csv_path


@hydra.main(version_base="1.3", config_path="../../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    if cfg.task not in TASKS:
        raise TopoError("unknown evaluation task", field="task", expected=TASKS, found=cfg.task)
    output_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    run_responses(cfg, output_dir)


if __name__ == "__main__":
    main()
