"""Stimulus–response recordings for fitting retina models: format, windows, simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_data.errors import TopoDataError
from topo_data.retina.responses import (
    RetinaResponseData,
    causal_drive,
    planted_kernels,
    read_recording,
    simulate_recording,
    write_recording,
)


def _recording(tmp_path, frames=500, cells=3, size=4, **extra):
    rng = np.random.default_rng(0)
    arrays = {
        "stimulus": rng.random((frames, size, size)).astype(np.float32),
        "responses": rng.poisson(0.5, (frames, cells)).astype(np.float32),
        **extra,
    }
    return write_recording(arrays, tmp_path / "rec.npz"), arrays


def test_windows_hold_the_history_then_the_scored_frames(tmp_path):
    path, arrays = _recording(tmp_path)
    data = RetinaResponseData(str(path), history=5, window=50, batch_size=3, val_fraction=0.2)
    assert data.model_config_values() == {"height": 4, "width": 4, "cells": 3}
    assert data.objective_kwargs() == {"history": 5}
    assert data.ground_truth() is None
    # train: scored windows start at 5, 55, … while they end by frame 400
    np.testing.assert_array_equal(data.train_starts, np.arange(5, 351, 50))
    np.testing.assert_array_equal(data.val_starts, [400, 450])
    batch = next(iter(data.val_loader()))
    assert batch.video.shape == (2, 1, 55, 4, 4) and batch.responses.shape == (2, 3, 50)
    np.testing.assert_array_equal(batch.video[1, 0].numpy(), arrays["stimulus"][445:500])
    np.testing.assert_array_equal(batch.responses[1].numpy(), arrays["responses"][450:500].T)


def test_epoch_order_is_a_seeded_permutation_and_full_batch_is_fixed(tmp_path):
    path, _ = _recording(tmp_path, frames=2000)
    shuffled = RetinaResponseData(str(path), history=0, window=40, batch_size=7, seed=3)
    first = [b.video[:, 0, 0, 0, 0] for b in shuffled.train_loader(0)]
    again = [b.video[:, 0, 0, 0, 0] for b in shuffled.train_loader(0)]
    other = [b.video[:, 0, 0, 0, 0] for b in shuffled.train_loader(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert len(first) == shuffled.steps_per_epoch == 6  # 40 windows, batches of 7
    resumed = [b.video[:, 0, 0, 0, 0] for b in shuffled.train_loader(0, start_batch=2)]
    assert all(torch.equal(a, b) for a, b in zip(first[2:], resumed, strict=True))
    full = RetinaResponseData(str(path), history=0, window=40, batch_size=None)
    (only,) = list(full.train_loader(5))
    assert full.steps_per_epoch == 1 and only.video.shape[0] == 40


def test_replicas_take_disjoint_windows(tmp_path):
    path, _ = _recording(tmp_path, frames=1000)
    starts = []
    for rank in range(2):
        data = RetinaResponseData(str(path), window=50, batch_size=None, rank=rank, world_size=2)
        (batch,) = list(data.train_loader(0))
        starts.append({float(v) for v in batch.video[:, 0, -1].flatten(1).sum(1)})
    assert starts[0] and starts[1] and not starts[0] & starts[1]


def test_causal_drive_matches_the_sum_over_lags():
    rng = np.random.default_rng(1)
    stimulus = rng.normal(size=(30, 3, 2))
    kernels = rng.normal(size=(2, 4, 3, 2))
    expected = np.zeros((30, 2))
    for t in range(30):
        for lag in range(4):
            if t - lag >= 0:
                expected[t] += (kernels[:, lag] * stimulus[t - lag]).sum(axis=(1, 2))
    np.testing.assert_allclose(causal_drive(stimulus, kernels), expected, atol=1e-12)


def test_simulation_is_seeded_and_counts_follow_the_planted_rates():
    a = simulate_recording(frames=3000, height=6, width=6, cells=2, kernel_frames=5, seed=4)
    b = simulate_recording(frames=3000, height=6, width=6, cells=2, kernel_frames=5, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    np.testing.assert_allclose(
        np.linalg.norm(a["true_kernels"].reshape(2, -1), axis=1), 1.0, rtol=1e-6
    )
    assert set(np.unique(a["stimulus"])) == {0.25, 0.75}
    drive = causal_drive(a["stimulus"].astype(np.float64), a["true_kernels"].astype(np.float64))
    rates = np.logaddexp(0.0, a["true_gain"] * drive + a["true_offset"])
    # Poisson counts: mean equals the rate, so counts − rate average ~0 (σ/√T)
    residual = (a["responses"] - rates).mean(axis=0)
    assert np.all(np.abs(residual) < 4 * np.sqrt(rates.mean(axis=0) / 3000))
    on, off = planted_kernels(2, 5, 6, 6, seed=4)
    peak = lambda k: k.flat[np.abs(k).argmax()]  # noqa: E731 — the centre's strongest tap
    assert peak(off) < 0 < peak(on)


def test_the_simulated_default_is_written_once(tmp_path):
    data = RetinaResponseData(
        root=str(tmp_path), simulation={"frames": 1200, "height": 5, "width": 5}
    )
    assert data.path.parent == tmp_path and data.ground_truth()["true_kernels"].shape == (
        4,
        12,
        5,
        5,
    )
    stamp = data.path.stat().st_mtime_ns
    again = RetinaResponseData(
        root=str(tmp_path), simulation={"frames": 1200, "height": 5, "width": 5}
    )
    assert again.path == data.path and again.path.stat().st_mtime_ns == stamp


def test_bad_recordings_name_the_file_and_field(tmp_path):
    with pytest.raises(TopoDataError, match="not found"):
        read_recording(tmp_path / "missing.npz")
    np.savez(tmp_path / "a.npz", stimulus=np.zeros((10, 2, 2)))
    with pytest.raises(TopoDataError, match="responses") as error:
        read_recording(tmp_path / "a.npz")
    assert "a.npz" in str(error.value)
    np.savez(tmp_path / "b.npz", stimulus=np.zeros((10, 4)), responses=np.zeros((10, 1)))
    with pytest.raises(TopoDataError, match="stimulus"):
        read_recording(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", stimulus=np.zeros((10, 2, 2)), responses=-np.ones((10, 1)))
    with pytest.raises(TopoDataError, match="negative"):
        read_recording(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", stimulus=np.zeros((10, 2, 2)), responses=np.zeros((9, 1)))
    with pytest.raises(TopoDataError, match="responses"):
        read_recording(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", stimulus=np.zeros((10, 2, 2)), responses=np.zeros(10))
    assert read_recording(tmp_path / "e.npz")["responses"].shape == (10, 1)  # one cell
    with pytest.raises(TopoDataError, match="too short"):
        RetinaResponseData(str(tmp_path / "e.npz"), history=2, window=50)
