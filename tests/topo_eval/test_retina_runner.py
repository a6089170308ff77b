"""The retina runner: outputs equal ``Retina.run``, and a killed run resumes to the same bits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.topo_eval.conftest import compose_eval
from topo_data.retina.stimuli import white_noise
from topo_data.retina.video import ArraySource, IterableSource, NpySource
from topo_eval.retina.run_task import retina_from_config, run_retina_task, source_from_config
from topo_eval.retina.runner import (
    CHECKPOINT_FILE,
    RUN_FILE,
    RetinaRunner,
    read_outputs,
)
from topo_models import TopoError
from topo_models.retina import Retina

FRAMES, SIZE = 300, 20


class Killed(Exception):
    """Stands for a kill at a chunk boundary."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small retinas run fastest on one thread (and far faster on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    return white_noise(FRAMES / 1000, SIZE, SIZE, seed=3)  # (300, 20, 20), 10 ms frames


def _retina(**overrides: object) -> Retina:
    return Retina.from_preset("human.parvo", **overrides)


def _expected(movie: np.ndarray, **overrides: object) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = _retina(**overrides).run(torch.from_numpy(movie)[None, None], chunk=100)
    return {name: value.numpy() for name, value in outputs.items()}


def _kill_after(frames: int):
    def on_chunk(progress):
        if progress.frames_done >= frames:
            raise Killed

    return on_chunk


def _assert_same(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(outputs) == sorted(expected)
    for name, value in expected.items():
        assert outputs[name].shape == value.shape and np.array_equal(outputs[name], value), name


def test_runner_outputs_equal_retina_run_with_spikes_stored_as_bool(tmp_path, movie):
    summary = RetinaRunner(_retina(), ArraySource(movie), tmp_path, chunk=64, progress=False).run()
    outputs, expected = read_outputs(tmp_path), _expected(movie)
    _assert_same(outputs, expected)
    assert all(v.dtype == np.bool_ for v in outputs.values())
    assert expected["ganglion_spikes_ON"].sum() > 100  # the comparison covers real spikes
    assert summary.frames == FRAMES and summary.chunks == 5 and summary.finished
    for name, spikes in expected.items():
        assert summary.mean_rates_hz[name] == pytest.approx(spikes.mean() * 1000.0, rel=1e-12)
    assert sorted(p.name for p in tmp_path.glob("chunk_*.npz")) == [
        f"chunk_{i:06d}.npz" for i in range(5)
    ]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["frames"] == FRAMES and saved["mean_rates_hz"] == summary.mean_rates_hz
    reloaded = Retina()
    reloaded.load_parameters(tmp_path / "retina_parameters.json")
    assert reloaded.parameters_dict() == _retina().parameters_dict()


def test_runner_stores_ganglion_currents_as_float32_without_spikes(tmp_path, movie):
    RetinaRunner(
        _retina(spikes=False), ArraySource(movie), tmp_path, chunk=128, progress=False
    ).run()
    outputs = read_outputs(tmp_path)
    _assert_same(outputs, _expected(movie, spikes=False))
    assert outputs["ganglion_input_ON"].dtype == np.float32


def test_a_run_killed_between_chunks_resumes_to_the_uninterrupted_outputs(tmp_path, movie):
    source = NpySource(_save(tmp_path / "movie.npy", movie))
    out = tmp_path / "out"
    with pytest.raises(Killed):
        RetinaRunner(
            _retina(), source, out, chunk=40, progress=False, on_chunk=_kill_after(120)
        ).run()
    assert read_outputs(out)["ganglion_spikes_ON"].shape[2] == 120  # complete chunks only
    # a chunk written just before the kill, without its checkpoint, is computed again
    (out / "chunk_000003.npz").write_bytes(b"half-finished")
    fresh = _retina()  # a new process would start from a new retina
    summary = RetinaRunner(
        fresh, NpySource(tmp_path / "movie.npy"), out, chunk=40, progress=False
    ).run()
    assert summary.frames == FRAMES and summary.finished
    _assert_same(read_outputs(out), _expected(movie))


@pytest.mark.slow
def test_a_sigkilled_run_resumes_to_the_uninterrupted_outputs(tmp_path, movie):
    path = _save(tmp_path / "movie.npy", movie)
    out = tmp_path / "out"
    script = (
        "import sys, time\n"
        "from topo_data.retina.video import NpySource\n"
        "from topo_eval.retina.runner import RetinaRunner\n"
        "from topo_models.retina import Retina\n"
        "RetinaRunner(Retina.from_preset('human.parvo'), NpySource(sys.argv[1]), sys.argv[2],\n"
        "             chunk=20, progress=False, on_chunk=lambda p: time.sleep(0.3)).run()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(path), str(out)])
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("chunk_*.npz"))) < 3:
            assert child.poll() is None and time.monotonic() < deadline, "the child ended early"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    done = torch.load(out / CHECKPOINT_FILE, weights_only=True)["frames_done"]
    assert 0 < done < FRAMES
    RetinaRunner(_retina(), NpySource(path), out, chunk=20, progress=False).run()
    _assert_same(read_outputs(out), _expected(movie))


def test_resuming_a_finished_run_changes_nothing(tmp_path, movie):
    first = RetinaRunner(_retina(), ArraySource(movie), tmp_path, chunk=100, progress=False).run()
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("chunk_*.npz")}
    again = RetinaRunner(_retina(), ArraySource(movie), tmp_path, chunk=100, progress=False).run()
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("chunk_*.npz")} == stamps


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"retina": {"opl_sigma_center": 0.07}}, "retina.parameters.opl.sigma_center"),
        ({"retina": {"seed": 5}}, "retina.seeds.off"),
        ({"retina": {"spikes": False}}, "retina.spikes"),
        ({"movie_seed": 4}, "source.first_frame_blake2b"),
        ({"chunk": 50}, "chunk"),
    ],
)
def test_resume_refuses_another_retina_source_or_chunk_naming_the_field(
    tmp_path, movie, change, field
):
    source = ArraySource(movie)
    with pytest.raises(Killed):
        RetinaRunner(
            _retina(), source, tmp_path, chunk=40, progress=False, on_chunk=_kill_after(40)
        ).run()
    other = (
        white_noise(FRAMES / 1000, SIZE, SIZE, seed=change["movie_seed"])
        if "movie_seed" in change
        else movie
    )
    runner = RetinaRunner(
        _retina(**change.get("retina", {})),
        ArraySource(other),
        tmp_path,
        chunk=change.get("chunk", 40),
        progress=False,
    )
    with pytest.raises(TopoError, match="another retina configuration or source") as error:
        runner.run()
    assert error.value.file == str(tmp_path / RUN_FILE) and error.value.field == field


def test_resume_false_refuses_a_directory_that_holds_a_run(tmp_path, movie):
    RetinaRunner(_retina(), ArraySource(movie[:50]), tmp_path, chunk=40, progress=False).run()
    with pytest.raises(TopoError, match="already holds a retina run") as error:
        RetinaRunner(
            _retina(), ArraySource(movie[:50]), tmp_path, resume=False, progress=False
        ).run()
    assert error.value.field == "resume"


def test_a_background_run_reports_progress_and_can_be_stopped_and_resumed(tmp_path, movie):
    runner = RetinaRunner(_retina(), ArraySource(movie), tmp_path, chunk=30, progress=False)
    runner.on_chunk = lambda progress: runner.stop() if progress.frames_done >= 90 else None
    runner.start()
    stopped = runner.wait(timeout=120)
    assert stopped is not None and stopped.frames == 90 and not stopped.finished
    assert runner.progress.frames_done == 90 and not runner.progress.running
    assert runner.progress.n_frames == FRAMES and runner.progress.frames_per_second > 0
    runner.on_chunk = None
    runner.start()
    summary = runner.wait(timeout=120)
    assert summary.finished and runner.progress.finished
    _assert_same(read_outputs(tmp_path), _expected(movie))


def test_a_background_error_is_raised_by_wait(tmp_path, movie):
    runner = RetinaRunner(
        _retina(), ArraySource(movie), tmp_path, chunk=50, progress=False, on_chunk=_kill_after(50)
    )
    runner.start()
    with pytest.raises(Killed):
        runner.wait(timeout=120)
    assert runner.progress.error.startswith("Killed") and not runner.progress.running


def test_generated_chunks_from_a_restartable_generator_stream_and_resume(tmp_path, movie):
    def pieces():
        for start in range(0, FRAMES, 70):  # pieces of another length than the chunks
            yield movie[start : start + 70]

    with pytest.raises(Killed):
        RetinaRunner(
            _retina(),
            IterableSource(pieces, name="noise"),
            tmp_path,
            chunk=50,
            progress=False,
            on_chunk=_kill_after(100),
        ).run()
    RetinaRunner(
        _retina(), IterableSource(pieces, name="noise"), tmp_path, chunk=50, progress=False
    ).run()
    _assert_same(read_outputs(tmp_path), _expected(movie))


def _eval_config(*overrides: str):
    return compose_eval("task=retina_run", *overrides)


def test_retina_run_task_builds_retina_and_source_from_the_eval_config(tmp_path, movie):
    path = _save(tmp_path / "movie.npy", movie[:120])
    cfg = _eval_config(
        "retina.preset=human.magno",
        "retina.seed=2",
        f"retina.input={path}",
        "retina.chunk=50",
        "retina.progress=false",
    )
    table, metrics = run_retina_task(cfg, tmp_path / "out")
    with torch.no_grad():
        magno = Retina.from_preset("human.magno", seed=2)
        expected = magno.run(torch.from_numpy(movie[:120])[None, None], chunk=120)
    _assert_same(read_outputs(tmp_path / "out"), {k: v.numpy() for k, v in expected.items()})
    assert table == tmp_path / "out" / "summary.json" and metrics["frames"] == 120.0
    assert set(metrics) == {"frames", "ganglion_spikes_ON_mean_hz", "ganglion_spikes_OFF_mean_hz"}
    saved = json.loads((tmp_path / "out" / RUN_FILE).read_text())
    assert saved["config"]["retina"]["preset"] == "human.magno"
    figure = tmp_path / "out" / "figures" / "output.png"  # drawn from the chunks afterwards
    assert figure.read_bytes().startswith(b"\x89PNG")


def _save(path: Path, values: np.ndarray) -> Path:
    np.save(path, values)
    return path


def test_the_default_input_is_the_chirp_at_the_retinas_frame_rate():
    cfg = _eval_config("retina.resolution.steps_per_second=100")
    settings = OmegaConf.to_container(cfg.retina)
    source = source_from_config(settings, retina_from_config(settings))
    assert source.describe()["name"] == "chirp" and source.n_frames == 3000  # 30 s at 100 Hz
    assert source.frame_shape == (1, 1, 20, 20)


def test_a_steady_state_start_is_part_of_the_run(tmp_path, movie):
    path = _save(tmp_path / "movie.npy", movie[:100])
    overrides = [f"retina.input={path}", "retina.spikes=false", "retina.progress=false"]
    run_retina_task(_eval_config(*overrides, "retina.steady_state_luminance=0.5"), tmp_path)
    retina = _retina(spikes=False)
    retina.initialize_steady_state(0.5, SIZE, SIZE)
    with torch.no_grad():
        expected = retina.run(torch.from_numpy(movie[:100])[None, None])
    _assert_same(read_outputs(tmp_path), {k: v.numpy() for k, v in expected.items()})
    with pytest.raises(TopoError) as error:  # resuming it from a cold start is another run
        run_retina_task(_eval_config(*overrides), tmp_path)
    assert error.value.field == "settings.steady_state_luminance"
