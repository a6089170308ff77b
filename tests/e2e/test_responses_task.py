"""`python -m topo_eval task=responses checkpoint=… positions=… image=…` on a TDANN checkpoint,
run as the CLI runs it but in this process (the README test runs the CLI on a topo run)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.topo_eval.conftest import compose_eval
from topo_eval.__main__ import evaluate
from topo_models import create_model
from topo_models.checkpoints import save_vissl_style_checkpoint
from topo_models.positions import UniformLayout

pytestmark = pytest.mark.slow


def test_responses_task_writes_table_figures_and_an_mlflow_run(tmp_path, isolated_tracking):
    torch.manual_seed(0)
    model = create_model("resnet18_spatial", head="projector").eval()
    checkpoint = save_vissl_style_checkpoint(model, tmp_path / "model_phase199.torch")
    UniformLayout(n_neighborhoods=50, seed=0).build(model, 32).save(tmp_path / "positions")
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    overrides = [f"checkpoint={checkpoint}", f"positions={tmp_path / 'positions'}"]
    overrides += [f"image={image}", "image_size=32", f"output_dir={out}"]
    evaluate(compose_eval("task=responses", *overrides, "tracking.enabled=true"), out)
    table = pd.read_csv(tmp_path / "out" / "responses.csv")
    assert table.layer.nunique() == 8 and len(table) == sum(
        np.prod(v.shape[1:]) for v in model(torch.zeros(1, 3, 32, 32))[1].values()
    )
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert figures == [f"{name}.png" for name in sorted(table.layer.unique())]
    client = mlflow.MlflowClient(isolated_tracking)
    [run] = client.search_runs([client.get_experiment_by_name("topo-eval").experiment_id])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "responses.csv",
        "figures",
        "config.yaml",
    }
