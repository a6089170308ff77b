"""The spatial costs as one compiled C loop per cost (CPU, float32): value and gradient in one pass.

Why: a training step of the default spatial MLP takes ~2.4 ms on a 2-core CPU, and every torch
kernel launch costs 4–15 µs there, so even the fused torch kernels (``spatial_cost_kernels``,
~35 launches a cost) add ~60 % to a step; the costs must add at most 10 %. Here each cost is one
call into a small C library that walks every pair of every layer once (vectorised by the
compiler), writing the value and the closed-form gradient of reference/spatialnets.md §1.4:

* proximity ``P = mean_ij exp(-r_ij)``: ``dP/dp_i = (2/N²) Σ_{j≠i} e^{-r_ij}/r_ij · (p_j − p_i)``;
* transport ``T = mean_ij r_ij g(w_ij)``: ``dT/dw = r g'(w)/(NM)``,
  ``dT/dp_i = Σ_j g/r (p_i − q_j)/(NM)``, ``dT/dq_j = Σ_i g/r (q_j − p_i)/(NM)``,

with ``r = sqrt(d² + eps)`` and distances clamped at 80 inside the exponential (exp(−80) is
below any sum's resolution; further out float32 would go denormal, which is slow). Backward only
scales the saved gradients by the upstream gradient (another C call).

``NativeSpatialCosts`` (what ``SpatialCosts`` and so a spatial multi-task run use) does both
costs of every layer in one call: the gradient of the weighted total is final in forward, so
backward hands it over, and the layers run as tasks on torch's OpenMP threads (the library is
built with ``-fopenmp`` when torch's libgomp is loaded, and shares it), summed in a fixed order.

The library is compiled on first use with the system C compiler (``$CC`` or ``cc``; about a
second) into ``$TOPO_CACHE_DIR/native`` (default ``~/.cache/topo/native``), keyed by the
source, the flags and the CPU, and written atomically. Without a compiler, on other devices or
dtypes, or with ``TOPO_NATIVE_COSTS=0``, the loss objects use the fused torch kernels; both are
tested to agree.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from topo_models.losses.native_costs_network_source import NETWORK_SOURCE
from topo_models.losses.native_costs_source import PAIR_SOURCE

C_SOURCE = PAIR_SOURCE + NETWORK_SOURCE

log = logging.getLogger(__name__)


# Compiled with -ffast-math (vector exp/sqrt, reassociated sums) but linked without it, so the
# library does not switch the whole process to flush-to-zero arithmetic (crtfastmath.o).
COMPILE_FLAGS = ("-O3", "-ffast-math", "-march=native", "-fPIC", "-std=c99")
LINK_FLAGS = ("-shared",)
MAX_OWNERS = 64  # the C code's fixed table of position tensors
MAX_TASKS = 128  # ... and of layers (proximity and transport together) in one spatial_costs call
OPENMP_FLAGS = ("-fopenmp",)


def cache_directory() -> Path:
    root = os.environ.get("TOPO_CACHE_DIR") or Path.home() / ".cache" / "topo"
    return Path(root) / "native"


def _cpu_signature() -> str:
    try:
        flags = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        flags = platform.processor()
    return f"{platform.machine()}|{flags}"


def torch_uses_libgomp() -> bool:
    """Whether this process runs torch's threads on GNU OpenMP (libgomp.so.1 is mapped).

    Only then is the library built with OpenMP: the dynamic loader resolves its libgomp.so.1
    to the copy torch loaded (same soname), so ``spatial_costs`` runs on torch's own thread
    team, with torch's thread count, instead of a second team competing for the cores.
    """
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return False
    # exactly that soname: a renamed copy (libgomp-<hash>.so.1) would not be the one resolved
    return any(line.endswith("/libgomp.so.1") for line in maps)


def _build(compiler: str, target: Path, extra: tuple[str, ...]) -> None:
    """Compile the library into ``target`` atomically (a temp directory beside it, renamed);
    ``extra`` flags go to both the compiler and the linker."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as build:
        source, obj, lib = (Path(build) / name for name in ("costs.c", "costs.o", "costs.so"))
        source.write_text(C_SOURCE)
        for command in (
            [compiler, *COMPILE_FLAGS, *extra, "-c", str(source), "-o", str(obj)],
            [compiler, *LINK_FLAGS, *extra, str(obj), "-o", str(lib), "-lm"],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=120)
        os.replace(lib, target)


@cache
def native_library() -> ctypes.CDLL | None:
    """The compiled cost library, building it on first use; None if it cannot be had."""
    if os.environ.get("TOPO_NATIVE_COSTS", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler found: the spatial costs use the (slower) torch kernels")
        return None
    variants = [OPENMP_FLAGS, ()] if torch_uses_libgomp() else [()]
    for extra in variants:  # a compiler without OpenMP still builds the serial library
        library = _load(compiler, extra)
        if library is not None:
            _declare(library)
            return library
    return None


def _load(compiler: str, extra: tuple[str, ...]) -> ctypes.CDLL | None:
    """The library built with ``extra`` flags, from the cache or compiled now; None (logged)
    if it cannot be built or loaded."""
    key = hashlib.sha256(
        "\n".join((C_SOURCE, *COMPILE_FLAGS, *LINK_FLAGS, *extra, _cpu_signature())).encode()
    ).hexdigest()[:16]
    target = cache_directory() / f"spatial_costs_{key}.so"
    try:
        if not target.is_file():
            _build(compiler, target, extra)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        log.warning(
            "could not build the native spatial costs with flags %s (%s %s)",
            extra or "(none)",
            error,
            detail.decode(errors="replace")[-500:],
        )
        return None


def _declare(library: ctypes.CDLL) -> None:
    long, pointer = ctypes.c_long, ctypes.c_void_p
    library.proximity.argtypes = [long, pointer, pointer, long, ctypes.c_float] + [pointer] * 3
    library.scale_rows.argtypes = [long, pointer, long, pointer, pointer]
    library.transport.argtypes = [
        long,
        long,
        pointer,
        pointer,
        long,
        pointer,
        pointer,
        pointer,
        pointer,
        ctypes.c_int,
        ctypes.c_float,
    ] + [pointer] * 5
    library.transport_backward.argtypes = [long, long, pointer, long] + [pointer] * 8
    library.spatial_costs.argtypes = [pointer] * 5
    library.spatial_costs_work.argtypes = [pointer]
    library.spatial_costs_work.restype = long
    for name in (
        "proximity",
        "scale_rows",
        "transport",
        "transport_backward",
        "spatial_costs",
    ):
        getattr(library, name).restype = None


def native_applies(tensors: Sequence[torch.Tensor], owners: int = 1) -> bool:
    """Whether the C kernels take these tensors: CPU, float32, contiguous, few owners."""
    return (
        owners <= MAX_OWNERS
        and all(
            t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
            for t in tensors
        )
        and native_library() is not None
    )


def _pointers(tensors: Sequence[torch.Tensor]) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


def _longs(values: Sequence[int]) -> ctypes.Array:
    return (ctypes.c_long * len(values))(*values)


def _claim(ctx) -> None:
    """Backward scales the saved gradients in place (a copy per tensor would cost more than
    the kernel), so it may run once per forward."""
    if getattr(ctx, "claimed", False):
        raise RuntimeError(
            "the native spatial costs support one backward per forward (no retain_graph reuse)"
        )
    ctx.claimed = True


class NativeProximity(torch.autograd.Function):
    """(L,) proximity costs of L position tensors ``(N_l, dim)`` (float32, CPU)."""

    @staticmethod
    def forward(ctx, eps: float, *positions: torch.Tensor) -> torch.Tensor:
        library = native_library()
        sizes = [p.shape[0] for p in positions]
        dim, total = positions[0].shape[1], sum(sizes)
        values = torch.empty(len(positions))
        grad = torch.empty(total, dim)
        work = torch.empty(2 * dim * total + 2 * max(sizes))
        library.proximity(
            len(positions),
            _pointers(positions),
            _longs(sizes),
            dim,
            eps,
            grad.data_ptr(),
            work.data_ptr(),
            values.data_ptr(),
        )
        ctx.save_for_backward(grad)
        ctx.sizes = sizes
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, upstream: torch.Tensor):
        (grad,) = ctx.saved_tensors
        _claim(ctx)
        upstream = upstream.float().contiguous()
        native_library().scale_rows(
            len(ctx.sizes),
            _longs(ctx.sizes),
            grad.shape[1],
            upstream.data_ptr(),
            grad.data_ptr(),
        )
        return (None, *grad.split(ctx.sizes))


class NativeTransport(torch.autograd.Function):
    """(L,) transport costs; ``tensors`` = U position tensors then L weights (float32, CPU).

    ``post[l]`` / ``pre[l]`` index the position tensors of layer l and of its predecessor.
    """

    @staticmethod
    def forward(ctx, post, pre, norm: str, eps: float, n_positions: int, *tensors):
        library = native_library()
        positions, weights = tensors[:n_positions], tensors[n_positions:]
        sizes = [p.shape[0] for p in positions]
        dim, total = positions[0].shape[1], sum(sizes)
        kernel = [w[0, 0].numel() for w in weights]
        sum_n = sum(sizes[k] for k in post)
        sum_m = sum(sizes[k] for k in pre)
        values = torch.empty(len(weights))
        pgrad, qgrad = torch.empty(dim, sum_n), torch.empty(dim, sum_m)
        wgrad = [torch.empty_like(w) for w in weights]
        work = torch.empty(dim * total + 3 * max(sizes[k] for k in pre))
        library.transport(
            len(weights),
            n_positions,
            _pointers(positions),
            _longs(sizes),
            dim,
            _longs(post),
            _longs(pre),
            _pointers(weights),
            _longs(kernel),
            1 if norm == "l1" else 2,
            eps,
            pgrad.data_ptr(),
            qgrad.data_ptr(),
            _pointers(wgrad),
            work.data_ptr(),
            values.data_ptr(),
        )
        ctx.save_for_backward(pgrad, qgrad, *wgrad)
        ctx.layout = (sizes, list(post), list(pre), dim, n_positions)
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, upstream: torch.Tensor):
        pgrad, qgrad, *wgrad = ctx.saved_tensors
        sizes, post, pre, dim, n_positions = ctx.layout
        _claim(ctx)
        out = torch.empty(sum(sizes), dim)
        upstream = upstream.float().contiguous()
        native_library().transport_backward(
            len(wgrad),
            n_positions,
            _longs(sizes),
            dim,
            _longs(post),
            _longs(pre),
            _longs([w.numel() for w in wgrad]),
            upstream.data_ptr(),
            pgrad.data_ptr(),
            qgrad.data_ptr(),
            _pointers(wgrad),
            out.data_ptr(),
        )
        return (None, None, None, None, None, *out.split(sizes), *wgrad)
