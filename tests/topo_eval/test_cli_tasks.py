"""``python -m topo_eval task=<name>``: one file of the ``task`` group per task, each naming the
function it runs, whether it is tracked by default and what MLflow logs of it."""

from __future__ import annotations

import inspect
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import mlflow
import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from tests.topo_eval.conftest import EVAL_CONF, compose_eval
from topo_eval.__main__ import run_task, task_summary
from topo_eval.tracking import log_to_mlflow

ROOT = Path(__file__).resolve().parents[2]
TASKS = sorted(path.stem for path in (EVAL_CONF / "task").glob("*.yaml"))
# What each task logged as MLflow params before the task group existed (besides `task`).
LOGGED = {
    "responses": ["checkpoint", "positions", "image", "image_size"],
    "predictive": ["checkpoint", "tier", "fev_threshold"],
    **{
        name: ["checkpoint", "sweep_dir", "multitask"]
        for name in ("record", "split", "score", "plot", "multitask", "multitask_sweep")
    },
    "retina_run": ["output_dir", "retina"],
    "retina_fit": ["checkpoint"],
    "topography": ["checkpoint", "positions", "topography"],
    "topography_sweep": ["sweep_dir", "topography"],
    "regulariser_benchmark": ["sweep_dir", "topography"],
    "positions": ["positions", "checkpoint"],
    "retina_report": ["output_dir", "retina", "retina_report"],
}


def test_every_task_of_the_cli_has_its_file():
    assert TASKS == sorted(LOGGED)


@pytest.mark.parametrize("name", TASKS)
def test_each_task_file_names_a_function_of_the_config_and_the_output_directory(name):
    cfg = compose_eval(f"task={name}")
    assert cfg.task.name == name
    run = get_method(cfg.task._target_)
    assert list(inspect.signature(run).parameters)[:2] == ["cfg", "output_dir"]
    assert isinstance(cfg.task.tracked, bool)
    assert list(cfg.task.params) == LOGGED[name]
    assert {*cfg.task.params, cfg.task.run_name_from} <= set(cfg.keys())


def test_scores_are_tracked_by_default_and_inspections_are_not():
    tracked = {name for name in TASKS if compose_eval(f"task={name}").task.tracked}
    assert tracked == {
        "score",
        "multitask",
        "multitask_sweep",
        "retina_fit",
        "topography",
        "topography_sweep",
        "regulariser_benchmark",
    }


def test_the_default_task_is_responses():
    assert compose_eval().task.name == "responses"


def fake_task(cfg, output_dir):
    """A task for the dispatch test: writes its table and returns a metric."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "table.csv").write_text(f"{cfg.task.name}\n")
    return output_dir / "table.csv", {"answer": 42.0}


def test_run_task_calls_what_the_task_file_names(tmp_path):
    cfg = compose_eval("task=responses")
    cfg.task._target_ = f"{__name__}.fake_task"
    table, metrics = run_task(cfg, tmp_path)
    assert table.read_text() == "responses\n" and metrics == {"answer": 42.0}


def test_a_task_in_the_users_conf_folder_is_found_and_a_missing_folder_is_harmless(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert compose_eval("task=split").task.name == "split"  # no conf/topo_eval here
    mine = tmp_path / "conf" / "topo_eval" / "task" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text(
        f"_target_: {__name__}.fake_task\nname: mine\ntracked: true\n"
        "params: [checkpoint]\nrun_name_from: output_dir\n"
    )
    cfg = compose_eval("task=mine", "checkpoint=m.pt")
    assert run_task(cfg, tmp_path / "out")[1] == {"answer": 42.0}


@pytest.mark.parametrize(
    ("name", "overrides", "run_name"),
    [
        ("multitask_sweep", ["sweep_dir=/runs/sweeps/one"], "multitask_sweep one"),
        ("retina_run", [], "retina_run out"),
        ("predictive", ["checkpoint=/runs/a/model.pt"], "predictive model.pt"),
    ],
)
def test_mlflow_logs_the_task_name_and_the_keys_its_file_lists(
    tmp_path, isolated_tracking, name, overrides, run_name
):
    cfg = compose_eval(f"task={name}", *overrides)
    table = tmp_path / "out" / "table.csv"
    table.parent.mkdir()
    table.write_text("x\n")
    run_id = log_to_mlflow(cfg, tmp_path / "out", table, {"m": 1.0})
    run = mlflow.MlflowClient(isolated_tracking).get_run(run_id)
    config = OmegaConf.to_container(cfg, resolve=True)
    assert run.data.params == {
        "task": name,
        **{key: str(config.get(key)) for key in LOGGED[name]},
    }
    assert run.info.run_name == run_name and run.data.metrics == {"m": 1.0}


def test_every_packaged_config_file_is_package_data():
    project = tomllib.loads((ROOT / "topo_eval" / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["topo_eval"]
    package = EVAL_CONF.parent
    files = [path.relative_to(package).as_posix() for path in EVAL_CONF.rglob("*.yaml")]
    assert files and all(any(fnmatch(f, p) for p in patterns) for f in files)


def test_the_summary_names_what_was_written_the_metrics_the_mlflow_run_and_what_next(tmp_path):
    cfg = compose_eval("task=split", "checkpoint=/runs/a/model.pt")
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    table = out / "assignment.csv"
    table.write_text("x\n")
    (out / "figures" / "positions.png").write_bytes(b"png")
    metrics = {f"m{i}": i + 0.123456 for i in range(10)} | {"frames": 30000.0}
    text = task_summary(cfg, out, table, metrics, "abc123")
    assert f"task=split finished: 2 files in {out}" in text
    assert f"table:   {table}" in text and "figures: figures/positions.png" in text
    assert "m0=0.1235, m1=1.123" in text and "(and 3 more)" in text  # 8 named, 3 counted
    assert "run abc123 in experiment topo-eval" in text
    # the task file's next step, pasteable: the checkpoint and this output filled in
    assert (
        f"python -m topo_eval task=score checkpoint=/runs/a/model.pt multitask.split_dir={out}"
        in text
    )
    untracked = task_summary(cfg, out, table, {"frames": 30000.0}, None)
    assert "frames=30000" in untracked and "MLflow:  not tracked" in untracked


@pytest.mark.parametrize("name", TASKS)
def test_every_task_file_says_what_to_look_at_next(name):
    assert len(compose_eval(f"task={name}").task.next) > 20
