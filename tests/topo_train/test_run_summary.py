"""What a run and a sweep say when they end, and the command each objective suggests next."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class

from tests.conftest import CONF, ROOT
from topo_train.objectives.base import BaseObjective
from topo_train.run_summary import best_values, metric_lines, run_summary, sweep_table

EVAL_TASKS = ROOT / "topo_eval" / "src" / "topo_eval" / "conf" / "task"


def write_metrics(run_dir: Path, records: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


RECORDS = [
    {"step": 10, "loss/total": 2.0, "spatial/layer2_0": 0.5},
    {"step": 20, "loss/total": 1.5, "val/accuracy": 0.4, "val/accuracy/task0": 0.5},
    {"step": 30, "loss/total": 1.25, "val/accuracy": 0.3, "val/loss/total": 1.9},
    {"step": 40, "loss/total": 1.125, "val/accuracy": 0.35, "val/loss/total": 1.7},
]


def test_metrics_are_grouped_by_prefix_and_rounded():
    lines = metric_lines({"loss/total": 1.234567, "spatial/layer2_0": 0.5, "val/accuracy": 0.25})
    assert lines[0].split() == ["loss", "total", "1.235"]
    assert [line.split()[0] for line in lines] == ["loss", "spatial", "val"]


def test_best_validation_values_know_lower_and_higher_is_better(tmp_path):
    best = best_values(write_metrics(tmp_path, RECORDS))
    # per-task breakdowns and single validations are left out
    assert best == {"val/accuracy": (0.4, 20), "val/loss/total": (1.7, 40)}


def test_the_summary_says_what_the_run_made_and_how_to_see_and_evaluate_it(tmp_path):
    run_dir = tmp_path / "runs" / "topo_train" / "default"
    write_metrics(run_dir, RECORDS)
    (run_dir / "model.pt").write_bytes(b"")
    (run_dir / "positions").mkdir()
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "loss_curves.png").write_bytes(b"")
    text = run_summary(
        run_dir,
        {"loss/total": 1.125, "val/accuracy": 0.35},
        "sqlite:///mlflow.db",
        "abc123",
        BaseObjective().evaluation_command(run_dir),
    )
    assert "(step 40)" in text and "val/accuracy 0.4 at step 20" in text
    assert "model.pt · metrics.jsonl · positions/ · figures/loss_curves.png" in text
    uri = f"sqlite:///{Path('mlflow.db').resolve()}"
    assert f"MLflow run abc123 in {uri}" in text
    assert f"mlflow ui --backend-store-uri {uri}" in text
    assert text.splitlines()[-1].strip() == (
        f"python -m topo_eval checkpoint={run_dir}/model.pt positions={run_dir}/positions"
    )


def test_a_run_tracked_on_an_mlflow_server_is_browsed_at_its_address(tmp_path):
    text = run_summary(tmp_path, {}, "http://127.0.0.1:5000", "abc123", None)
    assert "browse it:  http://127.0.0.1:5000" in text and "mlflow ui" not in text


def loss_targets() -> list[str]:
    return sorted({yaml.safe_load(p.read_text())["_target_"] for p in (CONF / "loss").glob("*")})


@pytest.mark.parametrize("target", loss_targets())
def test_every_objective_suggests_a_topo_eval_command_that_parses(target, tmp_path):
    run_dir = tmp_path / "runs" / "topo_train" / "experiment-x__trainer.max_epochs-2"
    (run_dir / "positions").mkdir(parents=True)
    cls = get_class(target)
    command = cls.evaluation_command(cls.__new__(cls), run_dir)  # uses nothing of the object
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "topo_eval"]
    parsed = {
        o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(words[3:])
    }
    assert parsed["checkpoint"] == f"{run_dir}/model.pt"
    assert (EVAL_TASKS / f"{parsed.get('task', 'responses')}.yaml").is_file()


def test_without_positions_the_default_objective_suggests_nothing(tmp_path):
    assert BaseObjective().evaluation_command(tmp_path) is None


def test_the_sweep_table_lists_each_job_its_status_and_key_metrics(tmp_path):
    write_metrics(tmp_path / "loss.alpha-0.5", RECORDS)
    (tmp_path / "loss.alpha-0.5" / "model.pt").write_bytes(b"")
    write_metrics(tmp_path / "loss.alpha--1", [])
    (tmp_path / ".failures").mkdir()
    table = sweep_table(tmp_path, failed=[str(tmp_path / "loss.alpha--1")])
    rows = {line.split()[0]: line.split(maxsplit=2)[1:] for line in table.splitlines()[2:]}
    assert rows == {
        "loss.alpha--1": ["failed", "-"],
        "loss.alpha-0.5": ["finished", "loss/total 1.125 · val/accuracy 0.35"],
    }
