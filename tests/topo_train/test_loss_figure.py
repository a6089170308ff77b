"""The loss-curve figure: metrics grouped into panels by prefix, drawn from metrics.jsonl."""

from __future__ import annotations

import json

from topo_train.loss_figure import metric_groups, read_series, write_loss_figure


def test_keys_are_grouped_by_prefix_with_breakdowns_beside_their_total():
    keys = [
        "spatial/layer2_0", "loss/total", "loss/task", "val/accuracy", "val/accuracy/task0",
        "val/loss/total", "val/poisson", "accuracy",
    ]  # fmt: skip
    assert list(metric_groups(keys).items()) == list(
        {
            "loss": ["loss/total", "loss/task"],
            "val/loss": ["val/loss/total"],
            "spatial": ["spatial/layer2_0"],
            "val/accuracy": ["val/accuracy", "val/accuracy/task0"],
            "val": ["val/poisson"],
            "accuracy": ["accuracy"],
        }.items()
    )  # the loss panels first


def test_the_figure_is_drawn_from_the_metrics_file_without_bookkeeping_keys(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "loss/total": 1.0 / s, "lr": 0.1, "epoch": s / 10} for s in (1, 2, 3)]
    lines.append({"step": 3, "val/loss/total": 0.5, "val/accuracy": float("nan")})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    series = read_series(path)
    assert set(series) == {"loss/total", "val/loss/total", "val/accuracy"}
    assert series["loss/total"][0] == [1, 2, 3]
    figure = write_loss_figure(path, tmp_path / "figures" / "loss_curves.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "figures").glob(".*"))  # written atomically, nothing left over


def test_no_metrics_no_figure(tmp_path):
    assert write_loss_figure(tmp_path / "metrics.jsonl", tmp_path / "x.png") is None
    (tmp_path / "metrics.jsonl").write_text("")
    assert write_loss_figure(tmp_path / "metrics.jsonl", tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
