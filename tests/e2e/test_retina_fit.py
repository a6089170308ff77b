"""experiment=retina_fit through the real CLI: LBFGS on the simulated default, tracked."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from tests.e2e.test_spatial_multitask import cli

pytestmark = pytest.mark.slow


def test_the_default_fit_recovers_the_planted_cells_and_is_tracked(tmp_path, isolated_tracking):
    run_dir = tmp_path / "fit"
    cli(
        "topo_train",
        [
            "experiment=retina_fit",
            f"run_dir={run_dir}",
            "trainer.max_steps=12",
            "trainer.progress=false",
        ],
        tmp_path,
    )
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    final = [line for line in lines if "val/kernel_correlation" in line][-1]
    assert final["step"] == 12 and final["val/kernel_correlation"] > 0.9
    assert final["val/correlation"] > 0.4
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    assert saved["model"]["filter.spatial"].shape == (4, 1, 10, 10)  # 4 cells, 10×10 stimulus
    out = tmp_path / "eval"
    cli(
        "topo_eval",
        ["task=retina_fit", f"checkpoint={run_dir / 'model.pt'}", f"output_dir={out}"],
        tmp_path,
    )
    assert (out / "figures" / "kernels.png").stat().st_size > 5000
    client = mlflow.MlflowClient(isolated_tracking)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trained = next(r for r in runs if "val/kernel_correlation" in r.data.metrics)
    assert trained.data.metrics["val/kernel_correlation"] == pytest.approx(
        final["val/kernel_correlation"]
    )
    assert trained.data.params.get("optim._target_") == "torch.optim.LBFGS"
    scored = next(r for r in runs if "kernel_correlation" in r.data.metrics)  # on by default
    assert scored.data.metrics["kernel_correlation"] == pytest.approx(
        final["val/kernel_correlation"]
    )
