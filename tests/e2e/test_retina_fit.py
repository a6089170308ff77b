"""experiment=retina_fit and its evaluation as their CLIs run them (in this process; the README
test runs both CLIs): LBFGS on the simulated default, tracked."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

from tests.topo_eval.conftest import compose_eval
from topo_eval.__main__ import evaluate
from topo_train import train

pytestmark = pytest.mark.slow


def test_the_default_fit_recovers_the_planted_cells_and_is_tracked(
    tmp_path, isolated_tracking, compose_train
):
    run_dir = tmp_path / "fit"
    overrides = ["experiment=retina_fit", f"run_dir={run_dir}", "trainer.max_steps=12"]
    train(compose_train([*overrides, "trainer.progress=false"]))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    final = [line for line in lines if "val/kernel_correlation" in line][-1]
    assert final["step"] == 12 and final["val/kernel_correlation"] > 0.9
    assert final["val/correlation"] > 0.4
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    assert saved["model"]["filter.spatial"].shape == (4, 1, 10, 10)  # 4 cells, 10×10 stimulus
    out = tmp_path / "eval"
    evaluate(
        compose_eval("task=retina_fit", f"checkpoint={run_dir / 'model.pt'}", f"output_dir={out}"),
        out,
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
