"""`python -m topo_eval task=retina_run …`: a SIGKILLed run resumes by rerunning the command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
import torch

from tests.topo_eval.conftest import compose_eval
from topo_data.retina_stimuli import full_field_flash
from topo_eval.__main__ import evaluate
from topo_eval.retina_runner import CHECKPOINT_FILE, read_outputs
from topo_models.retina import Retina

pytestmark = pytest.mark.slow
FRAMES = 4000


def _command(*overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "topo_eval",
        "task=retina_run",
        "retina.progress=false",
        *overrides,
    ]


def _expected(video: np.ndarray, **kwargs: object) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = Retina.from_preset("human.parvo", **kwargs).run(
            torch.from_numpy(video)[None, None]
        )
    return {name: value.numpy() for name, value in outputs.items()}


def test_a_killed_cli_run_resumes_to_the_uninterrupted_outputs(tmp_path, isolated_tracking):
    movie = np.random.default_rng(0).integers(0, 256, (FRAMES, 20, 20), np.uint8)
    np.save(tmp_path / "movie.npy", movie)
    out = tmp_path / "out"
    command = _command(
        f"retina.input={tmp_path / 'movie.npy'}", f"output_dir={out}", "retina.chunk=10"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("chunk_*.npz"))) < 5:
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert 0 < torch.load(out / CHECKPOINT_FILE, weights_only=True)["frames_done"] < FRAMES
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    luminance = (movie.astype(np.float64) / 255).astype(np.float32)
    outputs, expected = read_outputs(out), _expected(luminance)
    assert sorted(outputs) == sorted(expected)
    assert all(np.array_equal(outputs[k], expected[k]) for k in expected)
    assert mlflow.MlflowClient(isolated_tracking).get_experiment_by_name("topo-eval") is None
    # the resumed run ends with a summary naming what it made, and the figure it names exists
    said = result.stdout + result.stderr
    assert "task=retina_run finished" in said and f"table:   {out / 'summary.json'}" in said
    assert "figures: figures/output.png" in said and "MLflow:  not tracked" in said
    assert (out / "figures" / "output.png").read_bytes().startswith(b"\x89PNG")


def test_a_generated_stimulus_run_logs_its_summary_to_mlflow_when_enabled(
    tmp_path, isolated_tracking, caplog
):
    """As the CLI runs it, in this process (the kill test above runs the CLI)."""
    args = {"duration_s": 0.4, "on_s": 0.1, "off_s": 0.25, "height": 8, "width": 8}
    stimulus = "{name: full_field_flash, " + ", ".join(f"{k}: {v}" for k, v in args.items()) + "}"
    out = tmp_path / "out"
    cfg = compose_eval(
        "task=retina_run",
        "retina.progress=false",
        f"++retina.stimulus={stimulus}",
        "retina.spikes=false",
        f"output_dir={out}",
        "tracking.enabled=true",
    )
    caplog.set_level(logging.INFO, logger="topo_eval")
    _, metrics, run_id = evaluate(cfg, out)
    outputs, expected = (
        read_outputs(tmp_path / "out"),
        _expected(full_field_flash(**args), spikes=False),
    )
    assert all(np.array_equal(outputs[k], expected[k]) for k in expected)
    client = mlflow.MlflowClient(isolated_tracking)
    [run] = client.search_runs([client.get_experiment_by_name("topo-eval").experiment_id])
    assert run_id == run.info.run_id and metrics["frames"] == run.data.metrics["frames"] == 400
    assert run.data.metrics["ganglion_input_ON_mean_hz"] == pytest.approx(
        float(expected["ganglion_input_ON"].astype(np.float64).mean()), rel=1e-9
    )
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "summary.json",
        "config.yaml",
        "figures",
    }
    assert [a.path for a in client.list_artifacts(run.info.run_id, "figures")] == [
        "figures/output.png"
    ]
    assert f"run {run.info.run_id} in experiment topo-eval" in caplog.text
