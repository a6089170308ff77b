"""Device choice, seeding and distributed setup: the environment a run executes in."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from topo_models import TopoError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when present, else CPU. ``cuda`` without a GPU is an error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise TopoError("unknown device", field="trainer.device", expected=DEVICES, found=name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TopoError(
                "CUDA was requested but no GPU is visible",
                field="trainer.device",
                expected="auto or cpu on this machine",
                found=name,
            )
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every RNG a run touches; on CPU (and with ``deterministic``) numbers then repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems


def tune_cpu_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the system.

    A training step frees and re-allocates the same large tensors (activations, gradients);
    with glibc's defaults each comes back as fresh pages that fault on first touch — about
    10,000 page faults per step for ResNet-18 at 112 px, several percent of the step. Raising
    the mmap and trim thresholds keeps those pages mapped (the process keeps its peak memory).
    Returns False where there is no glibc (macOS, Windows, musl), leaving the allocator alone.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(
        mallopt(option, value) == 1
        for option, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
            (_M_TRIM_THRESHOLD, 1 << 30),
            (_M_TOP_PAD, 64 << 20),
        )
    )


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a (possibly single-process) DDP job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every replica (no-op in a single process)."""
        if self.enabled:
            dist.barrier()


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group described by torchrun/submitit env vars (RANK, WORLD_SIZE, …).

    One process per GPU with NCCL, or gloo on CPU. Without those variables: a single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def close_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def export_submitit_environment() -> None:
    """Under a submitit SLURM task, export RANK/WORLD_SIZE/MASTER_* for ``init_distributed``."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "RANK" in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
