"""The regulariser benchmark: its grid (experiment + DVC pipeline), and its report on real runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, compose_config, tiny_overrides
from tests.topo_eval.conftest import compose_eval
from tests.topo_eval.test_topography_task import FAST, tiny_run
from topo_eval.__main__ import run_task
from topo_eval.topography.benchmark import method_positions
from topo_eval.topography.benchmark_figures import pareto_front
from topo_models.positions import NetworkPositions, channel_grid, tile_channels

PIPELINE = ROOT / "pipelines" / "regulariser_benchmark"
BLOCKS = [f"layer{stage}.{block}.conv2" for stage in range(1, 5) for block in range(2)]
REPORT = [
    *FAST,
    "topography.layers.v1=[layer2.0]",
    "topography.layers.category=[]",
    "topography.layers.correlation=[layer2.0,layer2.1]",
    "topography.layers.dimensionality=[layer2.0]",
    "topography.layers.wiring=[]",
]


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    x = np.array([0.1, 0.5, 0.4, 0.9, 0.2, np.nan])
    y = np.array([0.9, 0.5, 0.4, 0.1, 0.2, 5.0])
    assert pareto_front(x, y).tolist() == [0, 1, 3]  # (0.4, 0.4) and (0.2, 0.2) are beaten


@pytest.mark.parametrize(
    ("method", "level", "alpha", "target", "weight"),
    [
        ("none", "strong", 0.0, None, None),
        ("tdann", "weak", 0.25, None, None),
        ("topoloss", "strong", 0.0, "topo_models.losses.TopoLoss", 12.5),
        ("wiring_cost", "medium", 0.0, "topo_models.losses.WiringCost", 0.001),
        ("neighbour_cosine", "weak", 0.0, "topo_models.losses.NeighbourCosineLoss", 1.0),
        ("spatial_costs", "strong", 0.0, "topo_models.losses.ChannelSpatialCosts", 1.0),
    ],
)
def test_each_method_and_level_sets_its_own_term_and_nothing_else(
    compose_train, method, level, alpha, target, weight
):
    cfg = compose_train(
        [
            "experiment=regulariser_benchmark",
            f"benchmark.method={method}",
            f"benchmark.level={level}",
        ]
    )
    assert cfg.loss._target_.endswith("SupervisedObjective") and cfg.loss.alpha == alpha
    terms = OmegaConf.to_container(cfg.loss.regularisers, resolve=True)
    if target is None:
        assert terms == []
        return
    assert [term["_target_"] for term in terms] == [target]
    assert terms[0]["layer_weights"] == dict.fromkeys(BLOCKS, weight)


def _composed_experiment() -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base=None):
        composed = compose("train", overrides=["experiment=regulariser_benchmark"])
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(composed, resolve=False)


def test_pipeline_params_are_the_composed_experiment_with_its_interpolations(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TOPO_CACHE_DIR", raising=False)
    committed = yaml.safe_load((PIPELINE / "params.yaml").read_text())
    assert committed == _composed_experiment(), (
        f"{PIPELINE / 'params.yaml'} is stale: regenerate it from conf/ (compose train "
        "experiment=regulariser_benchmark, interpolations kept: resolve=False)"
    )
    grid = committed["benchmark"]["grid"]
    methods = set(committed["benchmark"]["strengths"]) - {"none"}
    assert sorted((run["method"], run["level"]) for run in grid.values()) == sorted(
        [("none", "medium")] + [(m, lv) for m in methods for lv in ("weak", "medium", "strong")]
    )
    stages = yaml.safe_load((PIPELINE / "dvc.yaml").read_text())["stages"]
    assert stages["train"]["foreach"] == "${benchmark.grid}"
    assert "runs/${key}" in stages["train"]["do"]["cmd"]
    shared = "positions_dir=dvc_runs/regulariser_benchmark/positions"  # one sheet for every run
    assert shared in stages["train"]["do"]["cmd"] and "task=positions" in stages["positions"]["cmd"]
    assert "task=regulariser_benchmark" in stages["report"]["cmd"]


def _train_stage(run_dir, method: str, level: str) -> None:
    """The pipeline's training stage for one run of the grid at a tiny size, in this process:
    its params.yaml composed as the stage's `--config-dir … --config-name params` composes it."""
    from topo_train import train

    overrides = [f"benchmark.method={method}", f"benchmark.level={level}"]
    overrides += [*tiny_overrides(run_dir.parent, run_dir.name), "trainer.max_steps=2"]
    train(compose_config(overrides, "params", config_dir=PIPELINE))


@pytest.mark.slow
def test_the_report_scores_each_run_on_the_sheet_its_method_shapes(tmp_path):
    runs = tmp_path / "runs"
    _train_stage(runs / "topoloss-strong", "topoloss", "strong")
    trained = runs / "topoloss-strong"
    logged = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert any("topo_loss/layer2_0_conv2" in line for line in logged)
    accuracy = [line["val/accuracy"] for line in logged if "val/accuracy" in line][-1]
    # the control, as the same 32-px trunk left untrained (its own positions, no regularisers)
    control = tiny_run(runs / "control")
    saved = torch.load(control, weights_only=True)
    saved["config_yaml"] = "data: {image_size: 32}\nbenchmark: {method: none, level: medium}\n"
    torch.save(saved, control)
    (runs / "control" / "metrics.jsonl").write_text('{"step": 2, "val/accuracy": 0.25}\n')

    out = tmp_path / "report"
    sources = f"sweep_dir=[{runs / 'topoloss-strong'},{runs / 'control'}]"  # a list, as documented
    cfg = compose_eval("task=regulariser_benchmark", sources, *REPORT)
    table_path, metrics = run_task(cfg, out)
    table = pd.read_csv(table_path).set_index("run")
    assert table.loc["topoloss-strong", ["method", "level"]].tolist() == ["topoloss", "strong"]
    assert table.loc["topoloss-strong", "strength"] == 12.5
    assert table.loc["topoloss-strong", "accuracy"] == pytest.approx(accuracy)
    assert table.loc["control", "method"] == "none" and table.loc["control", "accuracy"] == 0.25
    layer_report = pd.read_csv(out / "control" / "topography.csv")
    near = layer_report[layer_report.metric == "correlation_near"]
    assert table.loc["control", "correlation_near above chance"] == pytest.approx(
        (near.value - near.chance).mean()
    )
    # TopoLoss's run is measured on its channel sheets, tiled over each block's map
    own = NetworkPositions.load(trained / "positions")
    measured = NetworkPositions.load(out / "sheets" / "topoloss")  # one per method's layout
    for layer in ("layer2.0", "layer4.1"):
        expected = tile_channels(own[layer], channel_grid(own[layer].dims[0])).coordinates
        assert np.allclose(measured[layer].coordinates, expected)
    assert sorted(p.name for p in (out / "sheets").iterdir()) == ["topoloss"]  # none of its own
    # ... and is scored on the TopoLoss sheet too: a method's topography is its excess over it
    on_sheet = table.loc["control on the topoloss sheet"]
    assert (on_sheet.method, on_sheet.sheet, table.loc["control", "sheet"]) == (
        "none",
        "topoloss",
        "tdann",
    )
    excess = table["correlation_near above chance"]
    assert table.loc["topoloss-strong", "topography over control"] == pytest.approx(
        excess["topoloss-strong"] - excess["control on the topoloss sheet"]
    )
    assert table.loc["control", "topography over control"] == 0
    for figure in ("pareto.png", "by_strength.png", "maps.png"):
        assert (out / "figures" / figure).is_file()
    assert metrics["topoloss-strong/accuracy"] == pytest.approx(accuracy)


def test_spatial_costs_runs_are_scored_on_the_channel_positions_each_run_learned(tmp_path):
    runs = tmp_path / "runs"
    _train_stage(runs / "spatial_costs-medium", "spatial_costs", "medium")
    checkpoint = runs / "spatial_costs-medium" / "model.pt"
    made: dict = {}
    sheet = method_positions(checkpoint, tmp_path / "sheets", "spatial_costs", made)
    assert sheet == tmp_path / "sheets" / "spatial_costs-medium"  # one sheet per run
    objective = torch.load(checkpoint.parent / "last.pt", weights_only=True)["objective"]
    own = NetworkPositions.load(checkpoint.parent / "positions")
    measured = NetworkPositions.load(sheet)
    for index, layer in ((2, "layer2.0"), (7, "layer4.1")):
        learned = objective[f"regularisers.0.positions.{index}"].double().numpy()
        expected = tile_channels(own[layer], learned).coordinates
        assert np.allclose(measured[layer].coordinates, expected)
    assert not np.allclose(measured["layer1.0"].coordinates, own["layer1.0"].coordinates)


def test_a_run_that_is_not_part_of_the_benchmark_is_named(tmp_path):
    tiny_run(tmp_path / "runs" / "a")
    cfg = compose_eval("task=regulariser_benchmark", f"sweep_dir={tmp_path / 'runs'}", *REPORT)
    with pytest.raises(Exception, match="not a run of the regulariser benchmark"):
        run_task(cfg, tmp_path / "out")
