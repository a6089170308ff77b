"""task=retina_fit: per-cell scores and kernel figures of a fitted LN retina model."""

from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.topo_train.test_retina_fit import _overrides
from topo_eval.data_loading import with_training_data
from topo_eval.retina.fit_report import run_retina_fit
from topo_models import TopoError
from topo_train.train import train


def test_the_eval_report_scores_each_cell_and_draws_the_kernels(tmp_path, compose_train):
    cfg = compose_train(_overrides(tmp_path))
    metrics = train(cfg)
    eval_cfg = OmegaConf.create({"checkpoint": str(tmp_path / "run" / "model.pt"), "data": None})
    path, logged = run_retina_fit(with_training_data(eval_cfg), tmp_path / "eval")
    table = pd.read_csv(path)
    assert list(table.cell) == [0, 1]
    # the same numbers as the training run's last validation
    assert table.kernel_correlation.mean() == pytest.approx(metrics["val/kernel_correlation"])
    assert table.correlation.mean() == pytest.approx(metrics["val/correlation"])
    assert logged["kernel_correlation"] == pytest.approx(table.kernel_correlation.mean())
    assert (table.predicted_mean / table.observed_mean).between(0.8, 1.25).all()
    assert (tmp_path / "eval" / "figures" / "kernels.png").stat().st_size > 5000


def test_a_model_that_is_not_an_ln_fit_is_refused(tmp_path):
    from tests.test_files_are_data import spatial_checkpoint

    path = spatial_checkpoint(tmp_path / "model.pt")
    cfg = OmegaConf.create({"checkpoint": str(path), "data": None})
    with pytest.raises(TopoError, match="LN model"):
        run_retina_fit(cfg, tmp_path / "eval")
