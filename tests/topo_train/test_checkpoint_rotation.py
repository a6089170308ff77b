"""save_checkpoint: a complete checkpoint is readable at every instant of a write.

The write hook snapshots the run directory at each instant of the rotation — exactly what a
SIGKILL there would leave — and every snapshot must resume from a complete checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from topo_train import run_checkpoints as checkpoint
from topo_train.run_checkpoints import latest_checkpoint, remove_stale_temp_files, save_checkpoint


@pytest.fixture
def snapshots(tmp_path, monkeypatch):
    taken: dict[str, Path] = {}

    def hook(phase: str) -> None:
        shutil.copytree(tmp_path / "run", tmp_path / phase, dirs_exist_ok=True)
        taken[phase] = tmp_path / phase

    monkeypatch.setattr(checkpoint, "write_hook", hook)
    return taken


def test_every_instant_of_a_save_leaves_a_complete_checkpoint(tmp_path, snapshots):
    run_dir = tmp_path / "run"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, run_dir)
    first = dict(snapshots)  # the first save: no checkpoint before it
    assert (
        latest_checkpoint(first["written"]) is None and latest_checkpoint(first["rotated"]) is None
    )
    save_checkpoint({"step": 2, "w": torch.full((3,), 2.0)}, run_dir)
    for phase in ("written", "rotated"):  # "rotated": last.pt gone, the new one not yet in place
        path, state = latest_checkpoint(snapshots[phase])
        assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3)), phase
    assert not (snapshots["rotated"] / "last.pt").exists()
    path, state = latest_checkpoint(run_dir)
    assert path.name == "last.pt" and state["step"] == 2
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.prev.pt", "last.pt"]


def test_temp_files_of_an_interrupted_write_are_removed_on_start(tmp_path, snapshots):
    save_checkpoint({"step": 1}, tmp_path / "run")
    stale = [p.name for p in snapshots["written"].iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1  # the complete new file, not yet renamed
    removed = remove_stale_temp_files(snapshots["written"])
    assert [p.name for p in removed] == stale
    assert not any(p.name.endswith(".tmp") for p in snapshots["written"].iterdir())
