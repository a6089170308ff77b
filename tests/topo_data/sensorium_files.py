"""Small Sensorium sessions written with the real layout writer, plus the arrays behind them.

Tests compute expected numbers from ``SessionArrays`` (the raw arrays) with plain numpy, never
from the files the code under test reads.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topo_data.sensorium import write_static_session

DATA_KEY = "27204-5-13"


@dataclass
class SessionArrays:
    path: Path
    images: np.ndarray
    responses: np.ndarray
    behavior: np.ndarray
    pupil_center: np.ndarray
    tiers: np.ndarray
    frame_image_id: np.ndarray
    frame_image_class: np.ndarray
    unit_ids: np.ndarray
    area: np.ndarray
    layer: np.ndarray

    def train(self, field: str) -> np.ndarray:
        return getattr(self, field)[self.tiers == "train"].astype(np.float64)


def default_tiers(n_trials: int, final_test: bool = False) -> np.ndarray:
    """60 % train, then validation, test (and final_test) in equal parts, interleaved order."""
    n_train = int(n_trials * 0.6)
    rest = ["validation", "test"] + (["final_test"] if final_test else [])
    tail = [rest[i % len(rest)] for i in range(n_trials - n_train)]
    tiers = np.array(["train"] * n_train + tail)
    return tiers[np.random.default_rng(3).permutation(n_trials)]


def make_session(
    root: Path,
    n_trials: int = 40,
    n_neurons: int = 12,
    image_shape: tuple[int, int, int] = (1, 16, 32),
    seed: int = 0,
    zip: bool = True,
    animal: int = 27204,
    session: int = 5,
    scan: int = 13,
    final_test: bool = False,
    silent_neurons: int = 1,
) -> SessionArrays:
    """A session with gamma responses (the first ``silent_neurons`` nearly silent, to hit the
    precision threshold), uint8-range images, behaviour and pupil, written under ``root``."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n_trials, *image_shape)) * 255).astype(np.float32)
    scale = rng.uniform(0.5, 3.0, n_neurons)
    scale[:silent_neurons] = 1e-6
    responses = (rng.gamma(1.5, size=(n_trials, n_neurons)) * scale).astype(np.float32)
    behavior = np.stack(
        [rng.normal(20, 5, n_trials), rng.normal(0, 1, n_trials), rng.gamma(2, 3, n_trials)], 1
    )
    pupil = rng.normal([300.0, 200.0], [20.0, 10.0], (n_trials, 2))
    tiers = default_tiers(n_trials, final_test)
    frame_image_id = rng.permutation(n_trials) + 1000
    image_class = np.where(np.arange(n_trials) % 4 == 0, "cond_a", "imagenet")
    unit_ids = rng.permutation(np.arange(n_neurons) * 7 + 3)
    area = np.array(["V1", "LM"])[np.arange(n_neurons) % 2]
    layer = np.array(["L2/3", "L4"])[(np.arange(n_neurons) // 2) % 2]
    root.mkdir(parents=True, exist_ok=True)
    path = write_static_session(
        root,
        images,
        responses,
        behavior,
        pupil,
        tiers,
        frame_image_id,
        neurons={
            "unit_ids": unit_ids,
            "cell_motor_coordinates": rng.uniform(0, 500, (n_neurons, 3)),
            "area": area,
            "layer": layer,
            "animal_ids": np.full(n_neurons, animal),
            "sessions": np.full(n_neurons, session),
            "scan_idx": np.full(n_neurons, scan),
        },
        trials={"frame_image_class": image_class},
        zip=zip,
    )
    return SessionArrays(
        path, images, responses, behavior, pupil, tiers, frame_image_id, image_class,
        unit_ids, area, layer,
    )  # fmt: skip


def expected_precision(train_responses: np.ndarray) -> np.ndarray:
    """Published response precision, computed from the raw train responses."""
    std = train_responses.std(axis=0)
    threshold = 0.01 * std.mean()
    return np.where(std > threshold, 1 / std, 1 / threshold)


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and mtime (to prove nothing was written)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@contextmanager
def read_only(folder: Path):
    """Clear the write bits of ``folder`` for the duration (restored after)."""
    mode = folder.stat().st_mode
    os.chmod(folder, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield folder
    finally:
        os.chmod(folder, mode)
