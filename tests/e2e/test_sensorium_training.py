"""The Sensorium baseline through the one training loop, on simulated mice.

The recovery test is the point of the simulator: fitted on data whose answer is known, the
baseline must find every neuron's receptive-field centre from its cortical position (r ≥ 0.95)
and the direction in which the eye moves all receptive fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

import topo_train.__main__  # noqa: F401  (registers the run-directory resolver)
from topo_data.sensorium import StaticBatch, static_loaders
from topo_data.sensorium.data_module import SensoriumData
from topo_data.sensorium.response_model import pixels_to_grid
from topo_data.sensorium.simulate import load_ground_truth
from topo_eval.model_loading import load_trained_model
from topo_models import create_model
from topo_models.predictive import load_checkpoint, sensorium_cnn
from topo_train import trainer as trainer_module
from topo_train.objectives.predictive import PoissonObjective
from topo_train.train import train

pytestmark = pytest.mark.slow

SMALL_SIMULATION = (
    "+data.simulation={n_neurons:40,n_train:192,n_validation:48,n_test_images:8,repeats:4,"
    "image_size:[72,128]}"
)


PLUS = ("data.include_behavior=true", "data.include_eye_position=true", "model.shifter=true")


def small_run(tmp_path: Path, run: str, *extra: str) -> list[str]:
    """A few-second run: 40 neurons, 72×128 images at scale 0.5 (→ 36×64, the baseline input)."""
    return [
        "experiment=sensorium_baseline",
        f"run_dir={tmp_path / run}",
        f"data.root={tmp_path / 'sensorium'}",
        SMALL_SIMULATION,
        "data.scale=0.5",
        "data.batch_size=32",
        "trainer.max_epochs=3",
        "trainer.checkpoint_every=2",
        "trainer.log_every=2",
        "trainer.progress=false",
        *extra,
    ]


def session_path(root: Path) -> str:
    return json.loads(next(root.glob("sim-*/session.json")).read_text())["path"]


def _batch(rng: np.random.Generator, trials: int, neurons: int) -> StaticBatch:
    images = torch.from_numpy(rng.normal(size=(trials, 1, 36, 64)).astype(np.float32))
    responses = torch.from_numpy(rng.poisson(2.0, (trials, neurons)).astype(np.float32))
    return StaticBatch(images, responses, None, None, torch.arange(trials))


class _Tier:
    """A data module with one tier: ``loaders(tier)`` → {data_key: list of batches}."""

    def __init__(self, batches: dict[str, list[StaticBatch]]) -> None:
        self.batches = batches

    def loaders(self, tier: str) -> dict[str, list[StaticBatch]]:
        return self.batches


@pytest.mark.parametrize("avg_loss", [False, True])
def test_the_per_neuron_poisson_metric_is_the_plain_sum_over_neurons_and_trials(avg_loss):
    """``loss/poisson`` is summed and scaled by √(N/B); ``…/poisson_per_neuron_trial`` is
    Σ (r̂ − r log r̂) over every neuron and trial of the step (or tier), divided by their
    count — recomputed here from the model's rates, one session at a time."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    neurons = {"a": 7, "b": 5}
    model = create_model(
        "sensorium_cnn",
        n_neurons=neurons,
        cortex_coordinates={k: rng.normal(size=(n, 2)) for k, n in neurons.items()},
        input_channels=1,
    ).eval()  # no readout sampling: the objective's rates and these are the same
    objective = PoissonObjective(trials_in_file={"a": 400, "b": 90}, avg_loss=avg_loss)
    step = {"a": _batch(rng, 6, 7), "b": _batch(rng, 4, 5)}
    tier = {k: [_batch(rng, 3, n), _batch(rng, 2, n)] for k, n in neurons.items()}

    def plain_sum(key: str, batch: StaticBatch) -> float:
        with torch.no_grad():
            rates = model(batch.images, data_key=key).double()
        return float((rates - batch.responses.double() * torch.log(rates + 1e-12)).sum())

    with torch.no_grad():
        _, metrics = objective(model, step)
    expected = sum(plain_sum(k, b) for k, b in step.items()) / (6 * 7 + 4 * 5)
    assert float(metrics["loss/poisson_per_neuron_trial"]) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["loss/poisson"]) != pytest.approx(expected, rel=1e-2)  # the sum
    assert metrics[objective.progress_metric] is metrics["loss/poisson_per_neuron_trial"]  # shown

    evaluated = objective.evaluate(model, _Tier(tier), torch.device("cpu"))
    total = sum(plain_sum(k, b) for k, batches in tier.items() for b in batches)
    assert evaluated["val/poisson_per_neuron_trial"] == pytest.approx(
        total / (5 * 7 + 5 * 5), rel=1e-5
    )
    assert evaluated["val/poisson_per_trial"] == pytest.approx(total / 10, rel=1e-5)


class Killed(Exception):
    """Stands for the process being killed between two steps."""


def test_a_killed_sensorium_run_resumes_to_the_same_weights(tmp_path, compose_train):
    straight = train(compose_train(small_run(tmp_path, "straight", *PLUS)))

    calls = {"n": 0}
    original = trainer_module.Trainer.train_step

    def dies_at_step_9(self, batch):
        calls["n"] += 1
        if calls["n"] == 9:  # after the checkpoint of step 8, in the middle of epoch 2
            raise Killed
        return original(self, batch)

    cfg = compose_train(small_run(tmp_path, "killed", *PLUS))
    trainer_module.Trainer.train_step = dies_at_step_9
    try:
        with pytest.raises(Killed):
            train(cfg)
    finally:
        trainer_module.Trainer.train_step = original
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["step"] == 8
    resumed = train(cfg)

    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test/correlation"] == straight["test/correlation"]
    assert "shifter.99999-1-1.mlp.4.weight" in a  # SENSORIUM+: the shifter was trained


def test_sensorium_run_logs_to_mlflow_and_its_model_loads_for_evaluation(
    tmp_path, compose_train, isolated_tracking
):
    metrics = train(compose_train(small_run(tmp_path, "run", "tracking=mlflow")))
    assert {"val/correlation", "best/val/correlation", "test/correlation"} <= set(metrics)
    assert metrics["best/val/correlation"] >= max(
        json.loads(line).get("val/correlation", -1.0)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    )
    client = mlflow.MlflowClient(isolated_tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("topo").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model._target_"] == "topo_models.predictive.sensorium_cnn"
    assert run.data.params["trainer.early_stopping.patience"] == "5"
    assert "test/correlation" in run.data.metrics and "loss/poisson" in run.data.metrics
    # model.pt rebuilds from its weights, for topo_eval and for load_checkpoint alike
    model = load_trained_model(tmp_path / "run" / "model.pt")
    again = load_checkpoint(tmp_path / "run" / "model.pt")
    images = torch.randn(3, 1, 36, 64)
    assert torch.equal(model(images, data_key="99999-1-1"), again(images, data_key="99999-1-1"))


FIT_SCALE = 0.125  # the images' scale in the recovery fit (published: 0.25)


@pytest.fixture(scope="module")
def default_mouse(tmp_path_factory) -> Path:
    """The root holding the default simulated mouse, written once for this module's tests."""
    return tmp_path_factory.mktemp("default_mouse") / "sensorium"


def test_every_seeds_readout_starts_on_the_receptive_fields_of_the_default_mouse(default_mouse):
    """``position_start=data`` (the default): for five model seeds the readout of the default
    mouse starts at RF correlations ≥ 0.95 per axis, where the published random start of the
    same seeds puts them anywhere (seed 0: x mirrored)."""
    data = SensoriumData(
        root=str(default_mouse),
        include_behavior=True,
        include_eye_position=True,
        seed=0,
    )
    kwargs = data.model_kwargs()
    truth = load_ground_truth(data.paths[0])
    true = pixels_to_grid(truth["rf_center_px"], tuple(truth["image_size"]), scale=0.25, crop=4)

    def rf_r(position_start: str, seed: int) -> list[float]:
        model = sensorium_cnn(**kwargs, shifter=True, seed=seed, position_start=position_start)
        (key,) = model.data_keys
        fitted = model.positions(key).detach().numpy()
        return [np.corrcoef(fitted[:, axis], true[:, axis])[0, 1] for axis in (0, 1)]

    started = {seed: rf_r("data", seed) for seed in range(5)}
    published = {seed: rf_r("random", seed) for seed in range(5)}
    assert all(min(r) >= 0.95 for r in started.values()), started
    assert sum(min(r) < 0.9 for r in published.values()) >= 3, published


def test_fitting_the_baseline_recovers_receptive_fields_and_the_pupil_shift(
    tmp_path, compose_train, default_mouse
):
    """Published settings (batch 128, Adam 0.009, the baseline core and readout) on the default
    simulated mouse with behaviour and eye position (experiment=sensorium_plus), model seed 0,
    with the images at half the published scale (0.125: 18×32 from 144×256) for 14 epochs,
    about 1.5 minutes on one core. At the published 0.25 the core costs 6-7 times as much a
    step and 6 epochs (5.5 minutes) reach test correlation 0.47 where these reach 0.63.

    From the published random start, seed 0 stalls on this mouse (after 4 epochs at 0.25
    validation correlation 0.17, RF correlations −0.98 / −0.42: a mirrored map); the default
    start at the fields estimated from the data recovers (docs/predictive.md).
    """
    root = default_mouse
    cfg = compose_train(
        [
            "experiment=sensorium_plus",
            f"run_dir={tmp_path / 'fit'}",
            f"data.root={root}",
            f"data.scale={FIT_SCALE}",
            "trainer.max_epochs=14",
            "trainer.progress=false",
            "seed=0",
        ]
    )
    metrics = train(cfg)
    lines = [json.loads(line) for line in (tmp_path / "fit" / "metrics.jsonl").open()]
    untrained = lines[0]["val/correlation"]  # evaluated before the first step
    assert metrics["best/val/correlation"] > untrained + 0.4
    assert metrics["test/correlation"] > 0.5  # 0.63, still rising

    model = load_checkpoint(tmp_path / "fit" / "model.pt")
    session = session_path(root)
    truth = load_ground_truth(session)
    (key,) = model.data_keys
    fitted = model.positions(key).detach().numpy()  # (x, y) on the core's output grid
    true = pixels_to_grid(
        truth["rf_center_px"], tuple(truth["image_size"]), scale=FIT_SCALE, crop=4
    )
    for axis in (0, 1):
        assert np.corrcoef(fitted[:, axis], true[:, axis])[0, 1] >= 0.95

    # The shifter moves all fields by one translation per trial. Fitted linearly over the
    # validation trials, the map pupil centre → shift must point where the true one does, for
    # each pupil axis, in the same (core-grid) units
    loaders = static_loaders(
        [session],
        128,
        tier="validation",
        scale=FIT_SCALE,
        include_behavior=True,
        include_eye_position=True,
    )
    dataset = loaders["validation"][key].dataset
    batch = dataset[np.arange(len(dataset))]
    with torch.no_grad():
        predicted = model.shifter[key](batch.pupil_center).numpy().astype(np.float64)
    size = tuple(truth["image_size"])
    true_shift = pixels_to_grid(truth["shift_px"][batch.trial_id.numpy()], size, FIT_SCALE, 4)
    true_shift -= pixels_to_grid(np.zeros(2), size, FIT_SCALE, 4)
    pupil = batch.pupil_center.numpy().astype(np.float64)
    pupil -= pupil.mean(axis=0)
    fitted_map = np.linalg.lstsq(pupil, predicted - predicted.mean(axis=0), rcond=None)[0]
    true_map = np.linalg.lstsq(pupil, true_shift - true_shift.mean(axis=0), rcond=None)[0]
    for pupil_axis in (0, 1):
        u, v = fitted_map[pupil_axis], true_map[pupil_axis]
        assert u @ v / (np.linalg.norm(u) * np.linalg.norm(v)) > 0.9
    assert np.corrcoef(predicted[:, 0], true_shift[:, 0])[0, 1] > 0.9
