"""DDP, proven: two gloo replicas with B images each train the weights one process trains on 2B.

One ``torchrun`` job of two CPU processes runs the real training loop (``topo_train.train``)
three times — supervised and SimCLR at α = 0, SimCLR with the spatial loss at α = 0.25 — and
the test process runs the single-process references in-process. The trunk is ResNet-18 without
BatchNorm: on CPU (gloo) PyTorch has no SyncBatchNorm, so replicas would normalise over B
images where one process normalises over 2B (see docs/distributed.md). Each replica also
records what it opened for writing, the neighbourhoods it drew and the samples it trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import CONF, ROOT
from topo_models import ResNet18Spatial
from topo_models.losses import nt_xent_loss
from topo_train.objectives import SimCLRObjective

pytestmark = pytest.mark.slow

MODULE = "tests.e2e.test_ddp_equivalence"
B = 4  # images per replica and step; the reference takes 2B
STEPS = 2  # 10 training images, 8 per global step: one step per epoch, 2 images left over


def resnet18_without_batchnorm(**kwargs: Any) -> ResNet18Spatial:
    """TDANN's trunk with every BatchNorm an identity: replicas then compute what one process
    computes on their union (BatchNorm statistics would be over B images, not 2B)."""
    model = ResNet18Spatial(**kwargs)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


class HalfBatchSpatialSimCLR(SimCLRObjective):
    """The single-process reference of DDP with the spatial loss: NT-Xent over the whole 2B
    batch (the replicas gather their negatives), the spatial loss on each replica's half —
    rows ``r::2`` of the batch, as ``EpochSampler`` deals them — with the same neighbourhoods,
    the two halves' losses averaged (DDP averages their gradients)."""

    def forward(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        views, _ = batch
        size = views.shape[0]
        output, features = model(torch.cat([views[:, 0], views[:, 1]]))
        task = nt_xent_loss(output[:size], output[size:], self.temperature)
        state = self.spatial.generator.get_state()
        halves = []
        for rank in range(2):
            rows = torch.arange(rank, size, 2)
            rows = torch.cat([rows, rows + size])  # this replica's images, both views
            self.spatial.generator.set_state(state)  # each replica draws the same rows
            total, _ = self.spatial({name: f[rows] for name, f in features.items()})
            halves.append(total)
        loss = task + (halves[0] + halves[1]) / 2
        return loss, {"loss/total": loss.detach()}


def job_overrides(runs: Path, job: str, batch_size: int, reference: bool) -> list[str]:
    """A 32 px run of STEPS steps on 10 images (no validation) for ``job``, in ``runs``.
    References reuse the replicas' photo cache and positions (the same, built once)."""
    loss = {"supervised": "supervised", "simclr": "simclr", "spatial": "spatial_simclr"}[job]
    main = reference is False and job == "supervised"  # also tracks and draws the sheet
    overrides = [
        f"run_dir={runs / ('reference' if reference else 'ddp') / job}",
        f"data.root={runs / 'cache'}",
        "data.image_size=32",
        f"data.batch_size={batch_size}",
        "data.train_per_class=1",
        "data.val_per_class=0",
        "positions.n_neighborhoods=100",
        f"loss={loss}",
        f"model._target_={MODULE}.resnet18_without_batchnorm",
        "optim.lr=0.05",
        "trainer.device=cpu",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every=1",
        f"trainer.checkpoint_every={STEPS}",
        "trainer.val_every=0",
        "trainer.progress=false",
        f"trainer.figure_layers={'[layer2.0]' if main else '[]'}",
        f"tracking={'mlflow' if main else 'none'}",
    ]
    if reference:
        overrides.append(f"positions_dir={runs / 'ddp' / job / 'positions'}")
    if job == "spatial" and reference:
        overrides.append(f"loss._target_={MODULE}.HalfBatchSpatialSimCLR")
    return overrides


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def digest(rows: list[torch.Tensor]) -> str:
    """A short fingerprint of one step's neighbourhood draws."""
    joined = torch.cat([r.flatten() for r in rows]).numpy().tobytes()
    return hashlib.sha1(joined).hexdigest()


def record_draws_and_samples(patch: Callable[[Any, str, Any], None]) -> dict[str, list]:
    """Record each neighbourhood draw of the spatial loss and each training ticket the sampler
    deals; ``patch(owner, name, value)`` installs a wrapper (monkeypatch.setattr or setattr)."""
    from topo_data import EpochSampler
    from topo_models.losses.spatial_loss import SpatialCorrelationLoss

    records: dict[str, list] = {"draws": [], "tickets": []}
    draw, deal = SpatialCorrelationLoss._draw_rows, EpochSampler.__iter__

    def recorded_draw(self):
        rows = draw(self)
        records["draws"].append(digest(rows))
        return rows

    def recorded_deal(self):
        for ticket in deal(self):
            if self.shuffle:  # training order (validation loaders are not shuffled)
                records["tickets"].append(ticket)
            yield ticket

    patch(SpatialCorrelationLoss, "_draw_rows", recorded_draw)
    patch(EpochSampler, "__iter__", recorded_deal)
    return records


def replica_main(tmp_path: Path) -> None:
    """One replica of the torchrun job: the three runs, each recorded to ``<job>.rank<r>.json``
    — every path it opened for writing under ``tmp_path`` (an audit hook sees ``open``, ``os.open``
    and SQLite), its neighbourhood draws and its training tickets."""
    import torch.distributed as dist

    from topo_train.train import train

    rank = int(os.environ["RANK"])
    written: list[str] = []
    root = str(tmp_path)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
            writes = (
                any(c in mode for c in "wax+")
                if isinstance(mode, str)
                else bool(flags & write_flags)
            )
            if writes and path.startswith(root) and "/cache/" not in path:
                written.append(path)
        elif event == "sqlite3.connect":
            written.append(f"sqlite:{args[0]}")
        elif event in ("os.rename", "os.mkdir", "shutil.rmtree", "os.remove"):
            if os.fsdecode(args[0]).startswith(root):
                written.append(f"{event}:{os.fsdecode(args[0])}")

    sys.addaudithook(audit)
    records = record_draws_and_samples(setattr)
    # One process group for the three runs: a group re-created at once can meet the other
    # replica's old one in the store; between runs the replicas wait for each other instead.
    dist.init_process_group("gloo")
    sys.modules["topo_train.train"].close_distributed = lambda context: dist.barrier()
    for job in ("supervised", "simclr", "spatial"):
        written.clear()
        records["draws"].clear()
        records["tickets"].clear()
        train(compose(job_overrides(tmp_path, job, B, reference=False)))
        out = {**records, "written": sorted(set(written))}
        (tmp_path / f"{job}.rank{rank}.json").write_text(json.dumps(out))
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three DDP runs: one torchrun job of two gloo processes, one thread each."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TOPO_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29541",
        "-m",
        MODULE,
        str(tmp_path),
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    (tmp_path / "stderr.txt").write_text(result.stderr)
    errors = [line for line in result.stderr.splitlines() if "]: " in line]  # the replicas'
    assert result.returncode == 0, "\n".join(errors[-40:]) or result.stderr[-4000:]
    return tmp_path


def reference_run(
    runs: Path, job: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, list], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One process, batch 2B, in ``runs/reference``: (records, initial and final weights)."""
    from topo_train.train import train
    from topo_train.trainer import Trainer

    records = record_draws_and_samples(monkeypatch.setattr)
    initial: dict[str, torch.Tensor] = {}
    fit = Trainer.fit

    def fit_noting_start(self):
        initial.update({k: v.clone() for k, v in self.bare_model.state_dict().items()})
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", fit_noting_start)
    train(compose(job_overrides(runs, job, 2 * B, reference=True)))
    final = torch.load(runs / "reference" / job / "model.pt", weights_only=True)["model"]
    return records, initial, final


def epochs(run_dir: Path) -> list[float]:
    """The epoch of each logged training step in ``run_dir``'s metrics.jsonl."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["epoch"] for line in lines if "loss/total" in line]


def replica_records(ddp_runs: Path, job: str) -> list[dict[str, list]]:
    return [json.loads((ddp_runs / f"{job}.rank{r}.json").read_text()) for r in range(2)]


def assert_same_weights(ddp_runs: Path, job: str, initial: dict, reference: dict) -> None:
    """The replicas' final weights equal the reference's up to float rounding: in every tensor
    the largest difference is under 1% of the largest change training made (a wrong gradient —
    a dropped half of the batch, negatives without gradient — changes the steps themselves)."""
    ddp = torch.load(ddp_runs / "ddp" / job / "model.pt", weights_only=True)["model"]
    assert ddp.keys() == reference.keys()
    ratios = {}
    for name, value in reference.items():
        moved = float((value - initial[name]).abs().max())
        assert moved > 1e-5, name  # every weight trained
        ratios[name] = float((ddp[name] - value).abs().max()) / moved
    worst = max(ratios, key=ratios.__getitem__)
    assert ratios[worst] < 1e-2, (worst, ratios[worst])


@pytest.mark.parametrize("job", ["supervised", "simclr"])
def test_two_replicas_of_b_train_the_weights_of_one_process_of_2b(
    ddp_runs: Path, monkeypatch: pytest.MonkeyPatch, job: str
) -> None:
    """α = 0: supervised cross-entropy is a mean over samples; SimCLR gathers the negatives of
    both replicas with gradient, so the averaged DDP gradient is the 2B batch's."""
    records, initial, reference = reference_run(ddp_runs, job, monkeypatch)
    replicas = replica_records(ddp_runs, job)
    # every step the replicas' batches are, together, exactly the single process's batch
    single = [sorted(records["tickets"][i : i + 2 * B]) for i in range(0, STEPS * 2 * B, 2 * B)]
    shards = [r["tickets"] for r in replicas]
    together = [sorted(shards[0][i : i + B] + shards[1][i : i + B]) for i in range(0, STEPS * B, B)]
    assert len(records["tickets"]) == 2 * len(shards[0]) == 2 * len(shards[1]) == STEPS * 2 * B
    assert together == single
    # an epoch counts the shards' steps as the single process counts its own (B of 10 images
    # a replica is one step of 2B, not two of B)
    assert epochs(ddp_runs / "ddp" / job) == epochs(ddp_runs / "reference" / job)
    assert_same_weights(ddp_runs, job, initial, reference)


def test_with_the_spatial_loss_each_replica_takes_its_own_half(
    ddp_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """α > 0: each replica's spatial loss is on its local B images, with the neighbourhoods
    every replica draws alike; DDP averages the gradients — the reference does just that."""
    records, initial, reference = reference_run(ddp_runs, "spatial", monkeypatch)
    replicas = replica_records(ddp_runs, "spatial")
    draws = [r["draws"] for r in replicas]
    assert len(draws[0]) == STEPS and draws[0] == draws[1]  # the same neighbourhoods
    assert len(set(draws[0])) == STEPS  # and new ones each step
    assert records["draws"] == [d for d in draws[0] for _ in range(2)]  # each half's draw
    assert_same_weights(ddp_runs, "spatial", initial, reference)


def test_rank_zero_alone_writes(ddp_runs: Path) -> None:
    """Checkpoints, positions, metrics, figures and MLflow records come from rank 0 only."""
    for job in ("supervised", "simclr", "spatial"):
        zero, one = (set(r["written"]) for r in replica_records(ddp_runs, job))
        assert one == set(), (job, sorted(one))
        run = str(ddp_runs / "ddp" / job)
        for name in ("last.pt", "model.pt", "metrics.jsonl", "positions", "figures"):
            assert any(name in path and run in path for path in zero), (job, name, sorted(zero))
        last = torch.load(Path(run) / "last.pt", weights_only=True)["model"]
        assert not any(name.startswith("module.") for name in last), job  # the bare model's
    zero = replica_records(ddp_runs, "supervised")[0]["written"]
    assert any(path.startswith("sqlite:") for path in zero)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{ddp_runs / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1  # one MLflow run for the two replicas
    history = client.get_metric_history(runs[0].info.run_id, "loss/total")
    assert [m.step for m in history] == list(range(1, STEPS + 1))
    lines = (ddp_runs / "ddp" / "supervised" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if "loss/total" in line] == [1, 2]


if __name__ == "__main__":
    replica_main(Path(sys.argv[1]))
