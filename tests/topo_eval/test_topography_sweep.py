"""``task=topography_sweep``: one report per run of a training sweep, metrics against α."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.topo_eval.conftest import compose_eval
from tests.topo_eval.test_topography_task import FAST, tiny_run
from topo_eval.__main__ import run_task
from topo_eval.topography import stimulus_responses as sr
from topo_eval.topography.sweep import swept_values
from topo_models import TopoError

ONLY_V1 = [
    *[override for override in FAST if not override.startswith("topography.gratings")],
    "topography.gratings.phases=1",
    "topography.layers.v1=[layer2.0]",
    "topography.layers.category=[]",
    "topography.layers.correlation=[layer2.0]",
    "topography.layers.dimensionality=[]",
    "topography.layers.wiring=[]",
]


def sweep_of_two(root):
    """A sweep directory as `python -m topo_train -m loss.alpha=0,2.5` leaves it."""
    for alpha in (0, 2.5):
        job = root / f"loss.alpha-{alpha}"
        tiny_run(job, alpha=alpha)
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(
            f"- loss.alpha={alpha}\n- trainer.max_steps=2\n"
        )
    return root


def test_a_sweep_report_tabulates_every_run_against_the_swept_alpha(tmp_path, monkeypatch):
    sweep = sweep_of_two(tmp_path / "sweep")
    cfg = compose_eval(
        "task=topography_sweep", f"sweep_dir={sweep}", f"output_dir={tmp_path / 'out'}", *ONLY_V1
    )
    table_path, metrics = run_task(cfg, tmp_path / "out")
    table = pd.read_csv(table_path)
    assert table.run.tolist() == ["loss.alpha-0", "loss.alpha-2.5"]
    assert table["loss.alpha"].tolist() == [0.0, 2.5]
    assert {"layer2.0/orientation_smoothness", "layer2.0/pinwheel_density"} <= set(table.columns)
    assert "loss.alpha-0/layer2.0/orientation_smoothness" in metrics
    out = tmp_path / "out"
    assert (out / "figures" / "orientation_maps.png").is_file()
    assert (out / "figures" / "metrics.png").is_file()
    page = (out / "index.html").read_text()
    for run in table.run:
        assert (out / run / "topography.csv").is_file() and f'href="{run}/index.html"' in page

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although every response was cached")

    monkeypatch.setattr(sr, "_compute", no_model)  # a second report reuses each run's cache
    again, _ = run_task(cfg, tmp_path / "again")
    assert pd.read_csv(again).run.tolist() == table.run.tolist()


def test_without_hydra_overrides_alpha_comes_from_each_runs_saved_config(tmp_path):
    runs = {name: tiny_run(tmp_path / name, alpha=a).parent for name, a in (("a", 1), ("b", 3))}
    values = swept_values(runs)
    assert values.to_dict("list") == {"run": ["a", "b"], "loss.alpha": [1.0, 3.0]}


def test_a_folder_without_finished_runs_is_refused(tmp_path):
    cfg = compose_eval("task=topography_sweep", f"sweep_dir={tmp_path}")
    with pytest.raises(TopoError, match="no finished training runs"):
        run_task(cfg, tmp_path / "out")


def test_an_mlflow_parent_run_id_finds_its_childrens_run_directories(tmp_path):
    """The sweep named by its MLflow parent run (as `python -m topo_train -m` logs it): each
    child's `run_dir` param leads to its run; a child without a model.pt is left out."""
    import mlflow

    from topo_eval.topography.sweep import sweep_runs

    sweep = sweep_of_two(tmp_path / "sweep")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("topo")
    parent = client.create_run(experiment, tags={"topo.sweep": "parent"}).info.run_id
    for run_dir in [*sorted(sweep.iterdir()), tmp_path / "unfinished"]:
        child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
        client.log_param(child, "run_dir", str(run_dir))
    client.create_run(experiment)  # another run of the experiment, not in the sweep
    found = sweep_runs(parent, uri)
    assert found == {p.name: p for p in sorted(sweep.iterdir())}
    with pytest.raises(TopoError, match="no sweep here"):
        sweep_runs("0" * 31, uri)
